"""The emulator's loader on its own: headers, Doris's value rules, CSV/JSON bodies, bench counting."""
from __future__ import annotations

import gzip
import json

import pytest

from tests.doris_emulator import loader as L
from tests.doris_emulator.schema import Column, TableDef


def col(name, type_str, base, nullable=True, default=None, length=None, precision=None, scale=None):
    return Column(name=name, type_str=type_str, base=base, length=length, precision=precision, scale=scale,
                  nullable=nullable, default=default)


def table(*cols):
    return TableDef(db="d", name="t", columns=list(cols), keys_type="DUPLICATE", key_columns=[cols[0].name],
                    ddl="", properties={})


ALL = table(
    col("id", "bigint", "BIGINT", nullable=False),
    col("k_tiny", "tinyint", "TINYINT"),
    col("k_large", "largeint", "LARGEINT"),
    col("flag", "boolean", "BOOLEAN"),
    col("f", "float", "FLOAT"),
    col("amount", "decimal(6,2)", "DECIMAL", precision=6, scale=2),
    col("code", "char(4)", "CHAR", length=4),
    col("name", "varchar(6)", "VARCHAR", length=6),
    col("note", "text", "STRING"),
    col("day", "date", "DATE"),
    col("ts", "datetime(3)", "DATETIME", scale=3),
    col("payload", "json", "JSON"),
    col("status", "varchar(8)", "VARCHAR", nullable=False, default="new", length=8),
)


def load(body, tbl=ALL, **headers):
    spec = L.parse_spec({k.lower(): v for k, v in headers.items()})
    return L.run(spec, L.plan(spec, tbl), body.encode() if isinstance(body, str) else body)


def one(value, c, strict=True):
    """Convert one CSV value into column c (after an id column, so an empty value is not an empty line)."""
    out = load(f"1\t{value}\n", table(col("id", "int", "INT"), c), strict_mode="true" if strict else "false")
    if out.filtered:
        return ("filtered", out.errors[0][0])
    return out.rows[0][1]


# ------------------------------------------------------------------------------------------ headers

def test_hex_and_escaped_separators():
    assert L.parse_spec({"column_separator": "\\x01", "line_delimiter": "\\x02"}).column_separator == "\x01"
    assert L.parse_spec({"line_delimiter": "\\x0102"}).line_delimiter == "\x01\x02"
    assert L.parse_spec({"column_separator": "\\t"}).column_separator == "\t"
    assert L.parse_spec({"column_separator": ","}).column_separator == ","
    assert L.parse_spec({}).line_delimiter == "\n"


@pytest.mark.parametrize("headers, needle", [
    ({"label": "bad label!"}, "Label format error"),
    ({"label": "x" * 129}, "Label format error"),
    ({"label": "ok", "group_commit": "async_mode"}, "label and group_commit"),
    ({"group_commit": "fast"}, "group_commit can only be"),
    ({"format": "parquet"}, "unknown data format"),
    ({"columns": "a, b=a+1"}, "plain column names"),
    ({"strict_mode": "maybe"}, "strict_mode"),
    ({"max_filter_ratio": "2"}, "max_filter_ratio"),
    ({"jsonpaths": "not json"}, "jsonpaths"),
    ({"enclose": "ab"}, "single character"),
    ({"timezone": "Mars/Olympus"}, "time zone"),
    ({"timezone": "+24:00"}, "time zone"),
])
def test_bad_headers_fail_the_load(headers, needle):
    with pytest.raises(L.LoadError, match=needle):
        L.parse_spec(headers)


def test_label_charset_and_length_accepted():
    assert L.parse_spec({"label": "a-b_c:D9" + "x" * 120}).label.startswith("a-b_c:D9")


def test_group_commit_and_2pc_fall_back_to_a_normal_load():
    assert L.parse_spec({"group_commit": "sync_mode"}).group_commit == "sync_mode"
    assert L.parse_spec({"group_commit": "sync_mode", "two_phase_commit": "true"}).group_commit is None


def test_unknown_column_and_missing_not_null_fail_at_plan():
    spec = L.parse_spec({"columns": "id,nope"})
    with pytest.raises(L.LoadError, match="unknown column 'nope'"):
        L.plan(spec, ALL)
    t = table(col("id", "int", "INT", nullable=False), col("must", "int", "INT", nullable=False))
    with pytest.raises(L.LoadError, match="no default value. column: must"):
        L.plan(L.parse_spec({"columns": "id"}), t)


# ------------------------------------------------------------------------------------------ values

@pytest.mark.parametrize("base, value, expected", [
    ("TINYINT", "127", 127), ("TINYINT", "-128", -128), ("TINYINT", "128", None), ("SMALLINT", "32768", None),
    ("INT", "2147483647", 2147483647), ("INT", "2147483648", None), ("INT", "12.7", 12), ("INT", "many", None),
    ("INT", "", None), ("BIGINT", "-9223372036854775808", -(2 ** 63)), ("BIGINT", "9223372036854775808", None),
    ("LARGEINT", str(2 ** 127 - 1), 2 ** 127 - 1), ("LARGEINT", str(2 ** 127), None),
    ("BOOLEAN", "TRUE", 1), ("BOOLEAN", "false", 0), ("BOOLEAN", "1", 1), ("BOOLEAN", "0", 0), ("BOOLEAN", "yes", None),
    ("DOUBLE", "1.5e3", 1500.0), ("DOUBLE", "-0.25", -0.25), ("DOUBLE", "x", None), ("FLOAT", "1e39", None),
])
def test_scalar_values(base, value, expected):
    got = one(value, col("c", base.lower(), base), strict=True)
    if expected is None:
        assert got[0] == "filtered" and "column(c)" in got[1]
    else:
        assert got == expected


@pytest.mark.parametrize("value, expected", [
    ("12.345", "12.35"), ("12.344", "12.34"), ("-12.345", "-12.35"), ("7", "7.00"), ("0007.1", "7.10"),
    ("9999.99", "9999.99"), ("9999.995", None), ("10000", None), ("1e2", "100.00"), ("-0.001", "0.00"),
    ("abc", None), ("NaN", None),
])
def test_decimal_exact_rounding_and_range(value, expected):
    got = one(value, col("c", "decimal(6,2)", "DECIMAL", precision=6, scale=2))
    assert got == expected if expected else got[0] == "filtered"


def test_varchar_length_counts_utf8_bytes_and_always_filters():
    c = col("name", "varchar(6)", "VARCHAR", length=6)
    assert one("abcdef", c) == "abcdef"
    assert one("中文", c) == "中文"                       # 6 bytes
    got = one("中文x", c, strict=False)                  # 7 bytes: filtered even when not strict
    assert got[0] == "filtered" and "column_name[name], the length of input is too long than schema" in got[1]


def test_string_limit_one_megabyte():
    c = col("note", "text", "STRING")
    assert one("x" * 1048576, c) == "x" * 1048576
    assert one("x" * 1048577, c)[0] == "filtered"


@pytest.mark.parametrize("base, scale, value, expected", [
    ("DATE", None, "2024-02-29", "2024-02-29"), ("DATE", None, "2024-02-30", None), ("DATE", None, "2024-13-01", None),
    ("DATE", None, "20240105", "2024-01-05"), ("DATE", None, "2024-1-5", "2024-01-05"), ("DATE", None, "x", None),
    ("DATETIME", 0, "2024-03-01 12:00:05", "2024-03-01 12:00:05"),
    ("DATETIME", 3, "2024-03-01 12:00:05", "2024-03-01 12:00:05.000"),
    ("DATETIME", 3, "2024-03-01 12:00:05.1234", "2024-03-01 12:00:05.123"),
    ("DATETIME", 3, "2024-03-01 23:59:59.9996", "2024-03-02 00:00:00.000"),
    ("DATETIME", 6, "2024-03-01T12:00:05.5", "2024-03-01 12:00:05.500000"),
    ("DATETIME", 0, "2024-03-01 24:00:00", None), ("DATETIME", 0, "2024-02-30 00:00:00", None),
])
def test_dates_and_datetimes(base, scale, value, expected):
    got = one(value, col("c", base.lower(), base, scale=scale))
    assert got == expected if expected else got[0] == "filtered"


def test_datetime_with_offset_converts_to_the_load_time_zone():
    t = table(col("ts", "datetime", "DATETIME", scale=0))
    out = load("2024-03-01 00:00:00Z\n", t, timezone="Asia/Shanghai")
    assert out.rows == [("2024-03-01 08:00:00",)]
    out = load("2024-03-01 00:00:00+08:00\n", t, timezone="UTC")
    assert out.rows == [("2024-02-29 16:00:00",)]


@pytest.mark.parametrize("offset", ["+24:00", "-24:00", "+30:00", "+05:60"])
def test_a_datetime_with_an_offset_no_zone_has_is_not_a_datetime(offset):
    """Not a crash of the load (the emulator's BE once dropped the connection on these)."""
    assert one(f"2024-01-01 00:00:00{offset}", col("ts", "datetime", "DATETIME", scale=0))[0] == \
        "filtered"


def test_json_column_is_validated_and_compacted():
    c = col("payload", "json", "JSON")
    assert one('{"a": [1, 2], "b": "x/y"}', c) == '{"a":[1,2],"b":"x/y"}'
    assert one('{"a": ', c)[0] == "filtered"
    assert one("NaN", c)[0] == "filtered"


# ------------------------------------------------------------------------------------------ CSV bodies

def row_of(**values):
    return tuple(values.get(c.name) for c in ALL.columns)


GOOD = "1\t-5\t170141183460469231731687303715884105727\ttrue\t0.5\t12.5\tC001\tbob\tnote\t2024-01-02\t" \
       "2024-01-02 03:04:05.678\t{\"k\": 1}\tseen"


def test_csv_good_row_and_nulls():
    out = load(GOOD + "\n" + "2" + "\t\\N" * 11 + "\tnew\n")
    assert (out.total, out.filtered) == (2, 0)
    assert out.rows[0] == (1, -5, 2 ** 127 - 1, 1, 0.5, "12.50", "C001", "bob", "note", "2024-01-02",
                           "2024-01-02 03:04:05.678", '{"k":1}', "seen")
    assert out.rows[1] == (2,) + (None,) * 11 + ("new",)


def test_csv_wrong_column_count_is_filtered_with_the_raw_line():
    out = load("1\tx\n" + GOOD + "\textra\n" + GOOD + "\n")
    assert (out.total, out.filtered, len(out.rows)) == (3, 2, 1)
    assert "less than schema column number" in out.errors[0][0] and out.errors[0][1] == "1\tx"
    assert "more than schema column number" in out.errors[1][0]


def test_csv_hex_separators_and_no_trailing_delimiter():
    body = "1\x01a\x022\x01\\N"
    t = table(col("id", "int", "INT"), col("s", "varchar(5)", "VARCHAR", length=5))
    out = load(body, t, column_separator="\\x01", line_delimiter="\\x02")
    assert out.rows == [(1, "a"), (2, None)]


def test_csv_empty_lines_are_skipped_and_empty_string_stays():
    t = table(col("id", "int", "INT"), col("s", "varchar(5)", "VARCHAR", length=5))
    out = load("1,\n\n2,x\n", t, column_separator=",")
    assert out.rows == [(1, ""), (2, "x")] and out.total == 2


def test_csv_enclose_and_escape():
    t = table(col("id", "int", "INT"), col("s", "varchar(40)", "VARCHAR", length=40), col("n", "int", "INT"))
    body = '1,"a,b",3\n2,"multi\nline \\"q\\" back\\\\slash",4\n3,plain,5\n4,"\\N",6\n5,"",7\n'
    out = load(body, t, column_separator=",", enclose='"', escape="\\", trim_double_quotes="true")
    assert out.filtered == 0, out.errors
    assert out.rows == [(1, "a,b", 3), (2, 'multi\nline "q" back\\slash', 4), (3, "plain", 5), (4, None, 6),
                        (5, "", 7)]
    # no escape: nothing in Doris's reader turns "" into one quote (escape_string needs an escape)
    out = load('1,"say ""hi""",2\n', t, column_separator=",", enclose='"', trim_double_quotes="true")
    assert out.rows == [(1, 'say ""hi""', 2)]


def test_csv_enclose_double_quote_is_kept_without_trim_double_quotes():
    """Doris 2.1/3.0 csv_reader.cpp: _not_trim_enclose = !trim_double_quotes && enclose == '"', and
    then the field splitter leaves the quotes in the value (escapes are still removed)."""
    t = table(col("id", "int", "INT"), col("s", "varchar(40)", "VARCHAR", length=40))
    out = load('1,"a,b"\n2,"x\\"y"\n', t, column_separator=",", enclose='"', escape="\\")
    assert out.rows == [(1, '"a,b"'), (2, '"x"y"')], out.errors
    out = load("1,'a,b'\n", t, column_separator=",", enclose="'", escape="\\")     # other enclose: trimmed
    assert out.rows == [(1, "a,b")]


def test_csv_null_is_decided_before_escapes_are_removed():
    """csv_reader.cpp deserialize_nullable_string compares the field with \\N before the string
    serde removes escapes (DataTypeStringSerDe::deserialize_one_cell_from_json): an escaped
    backslash is the text \\N, a bare or enclosed \\N is NULL."""
    t = table(col("id", "int", "INT"), col("s", "varchar(40)", "VARCHAR", length=40))
    body = '1,"\\\\N"\n2,"\\N"\n3,\\N\n4,\\\\N\n'
    out = load(body, t, column_separator=",", enclose='"', escape="\\", trim_double_quotes="true")
    assert out.rows == [(1, "\\N"), (2, None), (3, None), (4, "\\N")], out.errors
    out = load("1,\\\\N\n2,\\N\n", t, column_separator=",", escape="\\")         # no enclose in the body
    assert out.rows == [(1, "\\N"), (2, None)]


def test_csv_with_names_skips_the_header_line():
    t = table(col("id", "int", "INT"), col("s", "varchar(5)", "VARCHAR", length=5))
    out = load("id,s\n1,a\n", t, column_separator=",", format="csv_with_names")
    assert out.rows == [(1, "a")]


def test_csv_columns_header_reorders_and_defaults_fill_the_rest():
    out = load("x\t7\n", columns="name,id")
    assert out.rows == [row_of(id=7, name="x", status="new")]


def test_not_null_column_filters_a_null():
    out = load("\\N\t" + "\t".join(GOOD.split("\t")[1:]) + "\n")
    assert out.filtered == 1 and "column(id) values is null while columns is not nullable" in out.errors[0][0]


def test_strict_mode_filters_bad_values_non_strict_makes_them_null():
    bad = GOOD.replace("\t-5\t", "\tmany\t").replace("2024-01-02\t", "2024-02-30\t")
    strict = load(bad + "\n", strict_mode="true")
    assert strict.filtered == 1 and "column(k_tiny)" in strict.errors[0][0]
    loose = load(bad + "\n", strict_mode="false")
    assert loose.filtered == 0 and loose.rows[0][1] is None and loose.rows[0][9] is None
    # a bad value in a NOT NULL column becomes NULL, then the NOT NULL rule filters it
    t = table(col("id", "int", "INT", nullable=False))
    assert load("abc\n", t, strict_mode="false").filtered == 1


def test_gzip_body():
    t = table(col("id", "int", "INT"))
    spec = L.parse_spec({"compress_type": "gz"})
    assert L.run(spec, L.plan(spec, t), gzip.compress(b"1\n2\n")).rows == [(1,), (2,)]


# ------------------------------------------------------------------------------------------ JSON bodies

def test_json_text_into_string_columns_is_kept_as_written():
    """Doris's simdjson reader hands a string column simdjson::to_json_string(value): the number
    as written (1.10 stays 1.10, not the double 1.1), an object or array as sent, true/false as
    1/0 (new_json_reader.cpp _simdjson_write_data_to_column; simdjson serialization-inl.h)."""
    t = table(col("id", "int", "INT"), col("a", "varchar(20)", "VARCHAR", length=20),
              col("b", "string", "STRING"), col("c", "varchar(20)", "VARCHAR", length=20),
              col("d", "decimal(20,2)", "DECIMAL", precision=20, scale=2))
    body = ('{"id": 1, "a": 1.10, "b": {"x" : [1, 2.50]}, "c": true, "d": 12345678901234567.25}\n'
            '{"id": 2, "a": -0, "b": 1e3, "c": 12345678901234567890}\n'
            '{"id": 3, "a": "1.10", "b": [ ], "c": false}\n')
    out = load(body, t, format="json", read_json_by_line="true")
    assert out.rows == [(1, "1.10", '{"x" : [1, 2.50]}', "1", "12345678901234567.25"),
                        (2, "-0", "1e3", "12345678901234567890", None),
                        (3, "1.10", "[ ]", "0", None)], out.errors


def test_json_by_line_types_missing_keys_and_nested_values():
    lines = [
        {"id": 1, "k_tiny": "12", "k_large": 2 ** 100, "flag": True, "f": 1.5, "amount": 3.25, "code": "C1",
         "name": [1, 2], "note": 42, "day": "2024-05-06", "ts": "2024-05-06 07:08:09",
         "payload": {"a": [1, {"b": None}]}, "unknown": "ignored"},
        {"id": 2},
        {"id": 3, "k_tiny": None, "status": None},
    ]
    body = "\n".join(json.dumps(x) for x in lines) + "\n"
    out = load(body, format="json", read_json_by_line="true")
    assert out.total == 3 and out.filtered == 1
    # a string column gets an array as written ("[1, 2]": json.dumps spacing), see test_json_text_...
    assert out.rows[0] == (1, 12, 2 ** 100, 1, 1.5, "3.25", "C1", "[1, 2]", "42", "2024-05-06",
                           "2024-05-06 07:08:09.000", '{"a":[1,{"b":null}]}', "new")
    assert out.rows[1] == row_of(id=2, status="new")
    assert "column(status)" in out.errors[0][0] and out.errors[0][1] == json.dumps(lines[2])


def test_json_string_number_into_int_and_bad_string():
    out = load('{"id": 1, "k_tiny": "many"}\n', format="json", read_json_by_line="true", strict_mode="true")
    assert out.filtered == 1 and "column(k_tiny)" in out.errors[0][0]
    out = load('{"id": 1, "k_tiny": "many"}\n', format="json", read_json_by_line="true")
    assert out.rows[0][1] is None


def test_json_lone_surrogate_escape_is_a_parse_error_of_its_row():
    body = ('{"id": 1, "code": "\\ud800"}\n{"id": 2, "code": "\\ud83d\\ude00"}\n'
            '{"id": 3, "code": "\\uDFFF x"}\n')
    out = load(body, format="json", read_json_by_line="true")
    assert out.total == 3 and out.filtered == 2
    assert [r[0] for r in out.rows] == [2] and out.rows[0][6] == "\U0001F600"   # a pair is fine
    assert all("STRING_ERROR" in reason for reason, _ in out.errors)
    assert [src for _, src in out.errors] == [body.splitlines()[0], body.splitlines()[2]]


def test_json_nan_or_infinity_anywhere_is_a_parse_error_of_its_row():
    t = table(col("id", "bigint", "BIGINT"), col("j", "json", "JSON"), col("s", "varchar(32)", "VARCHAR"))
    body = ('{"id": 1, "j": {"x": NaN}}\n{"id": 2, "j": [Infinity]}\n{"id": 3, "s": "NaN"}\n'
            '{"id": 4, "j": {"Infinity": -1}}\n')
    out = load(body, t, format="json", read_json_by_line="true")
    assert out.filtered == 2 and all("Parse json data" in reason for reason, _ in out.errors)
    assert out.rows == [(3, None, "NaN"), (4, '{"Infinity":-1}', None)]   # in strings: text


def test_json_decimal_keeps_all_digits():
    t = table(col("a", "decimal(38,10)", "DECIMAL", precision=38, scale=10))
    out = load('{"a": 12345678901234567.1234567891}\n{"a": 0.25}\n', t, format="json", read_json_by_line="true")
    assert out.rows == [("12345678901234567.1234567891",), ("0.2500000000",)]


def test_json_strip_outer_array_and_its_errors():
    body = json.dumps([{"id": 1}, {"id": 2}, "junk"])
    out = load(body, format="json", strip_outer_array="true")
    assert [r[0] for r in out.rows] == [1, 2] and out.filtered == 1
    out = load(body, format="json")
    assert out.filtered == 1 and "strip_outer_array" in out.errors[0][0]
    out = load("{not json\n", format="json", read_json_by_line="true")
    assert out.filtered == 1 and "Parse json data" in out.errors[0][0] and out.errors[0][1] == "{not json"


def test_jsonpaths_map_nested_fields():
    body = '{"user": {"id": 5, "names": ["ann", "bo"]}, "meta": {"ts": "2024-01-01 00:00:00"}}\n'
    out = load(body, format="json", read_json_by_line="true", columns="id,name,ts",
               jsonpaths='["$.user.id", "$.user.names[1]", "$.meta.ts"]')
    assert out.rows == [row_of(id=5, name="bo", ts="2024-01-01 00:00:00.000", status="new")]


# ------------------------------------------------------------------------------------------ bench mode

def test_bench_count_checks_columns_without_converting():
    spec = L.parse_spec({})
    p = L.plan(spec, ALL)
    good = (GOOD + "\n") * 3
    out = L.count(spec, p, good.encode())
    assert (out.total, out.filtered, out.rows) == (3, 0, [])
    out = L.count(spec, p, (good + "1\t2\n").encode())
    assert (out.total, out.filtered) == (4, 1)
    js = L.parse_spec({"format": "json", "read_json_by_line": "true"})
    out = L.count(js, L.plan(js, ALL), b'{"id": 1}\n{"id": 2}\n')
    assert (out.total, out.filtered) == (2, 0)


TRICKY = [
    # (headers, body): enclosed fields holding separators, line delimiters, escapes, doubled quotes
    ({"enclose": '"', "escape": "\\"}, '1,"a,b",3\n2,"multi\nline \\"q\\", x\\\\",4\n3,plain,5\n'),
    ({"enclose": '"', "escape": "\\"}, '1,"",3\n"2","\n\n",4\n\n3,"x\\\n,y",5'),
    ({"enclose": '"', "escape": "\\"}, '1,a"b,3\n2,"c"junk,4\n3,"d"",e",5\n'),    # quotes not at a field start
    ({"enclose": '"'}, '1,"say ""hi"", ok",2\n2,"""",3\n3,"a\nb",4\n'),           # no escape: "" is a quote
    ({"enclose": "'", "escape": "\\"}, "1,'x,y',2\n2,'z\\'s,\n',3\n"),
    ({"enclose": '"', "escape": "\\", "line_delimiter": "\\x02", "column_separator": "\\x01"},
     '1\x01"a\x01b"\x013\x022\x01"c\x02d"\x014\x02'),
    ({"enclose": '"', "escape": "\\"}, '1,"unterminated,3\n2,b,4\n'),             # runs to the end: one row
    ({"enclose": '"', "escape": "\\", "format": "csv_with_names"}, 'id,s,n\n1,"a\nb",2\n'),
    ({"enclose": '"', "escape": "\\"}, '1,"a,b",3,4\n2,"c",5\n3,"d\ne",5\n'),     # one field too many
    ({"enclose": '"', "escape": "\\"}, '1,"a,b"\n\n2,"c\n",5\n'),                  # one too few
    ({"enclose": '"', "escape": "\\"}, '1,"a",3\n2,"end\\'),                       # escape as the last byte
    ({"enclose": '"', "escape": "\\"}, '"1","a,\n",3\n"2",b,"4"'),                  # enclosed at the very start
]


@pytest.mark.parametrize("headers,body", TRICKY)
def test_bench_count_honours_enclose_and_escape_like_the_parser(headers, body, monkeypatch):
    t = table(col("id", "int", "INT"), col("s", "string", "STRING"), col("n", "int", "INT"))
    spec = L.parse_spec({"column_separator": ",", **headers})
    p = L.plan(spec, t)
    full = L.run(spec, p, body.encode())
    out = L.count(spec, p, body.encode())
    assert (out.total, out.filtered, out.errors, out.rows) == (full.total, full.filtered, full.errors, [])
    if not full.filtered:
        monkeypatch.setattr(L, "run", lambda *a: pytest.fail("bench count parsed the whole body"))
        again = L.count(spec, p, body.encode())
        assert (again.total, again.filtered) == (full.total, 0)
