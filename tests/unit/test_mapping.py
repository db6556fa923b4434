"""lib/mapping.py: every type's good and bad values, CSV encoding, NULL/missing/default/zero,
paths, Kafka metadata, exact DECIMALs, json passthrough, dead letters, headers, compile-once.

Every single-record check also asserts that the generated fast path and the general (reference)
path agree, so a fast-path shortcut can never change a line.
"""
from __future__ import annotations

import json
from collections import namedtuple

import pytest

from sinker_lib.config import ColumnSource, MappingConfig, config_from_dict
from sinker_lib.dead_letter import DeadLetter, category
from sinker_lib.errors import ConfigError
from sinker_lib.mapping import Bad, Mapper
from sinker_lib.doris_types import Column, DorisType

Rec = namedtuple("Rec", "topic partition offset timestamp key value")

MINIMAL = {"kafka": {"brokers": ["k1:9092"], "topics": ["events"]}, "doris": {"database": "demo", "table": "events"}}
TS = 1_714_567_890_123          # 2024-05-01 12:51:30.123 UTC


def T(raw: str) -> DorisType:
    """Build DorisType by hand (lib.schema.parse_type is someone else's work)."""
    name, _, args = raw.partition("(")
    base = name.upper()
    nums = [int(x) for x in args.rstrip(")").split(",")] if args else []
    if base in ("CHAR", "VARCHAR"):
        return DorisType(raw, base, nums[0] if nums else None)
    if base == "DECIMAL":
        return DorisType(raw, base, None, nums[0], nums[1] if len(nums) > 1 else 0)
    if base == "DATETIME":
        return DorisType(raw, base, None, None, nums[0] if nums else 0)
    return DorisType(raw, base)


def col(name, raw, nullable=True, default=None):
    return Column(name, T(raw), nullable, default)


def rec(value, offset=0, key=None, ts=TS, topic="events", partition=3):
    if isinstance(value, (dict, list)):
        value = json.dumps(value).encode()
    elif isinstance(value, str):
        value = value.encode()
    return Rec(topic, partition, offset, ts, key, value)


def make(columns, fmt="csv", sources=(), missing="default", tz="UTC", **kw):
    return Mapper(columns, MappingConfig(format=fmt, columns=tuple(sources), missing=missing, **kw),
                  timezone=tz)


def run(m, r):
    """Map one record; returns (line bytes or None, DeadLetter or None). Checks fast == general."""
    out, dead = [], []
    n = m.map_records([r], out, dead)
    assert len(out) + len(dead) == 1
    assert n == sum(len(x) for x in out)
    if m.format == "csv":
        try:
            ref = m._general(r)
        except Bad as b:
            assert dead and dead[0].reason == b.reason and dead[0].column == b.column
        else:
            assert out == [ref], f"fast path {out} != general path {ref}"
    assert m.line_for(r) == (out[0] if out else None)
    return (out[0] if out else None), (dead[0] if dead else None)


def field(raw_type, value, **kw):
    """The CSV text one column of type raw_type gets for a JSON value, or the DeadLetter."""
    m = make([col("c", raw_type, **kw)])
    line, dead = run(m, rec({"c": value}))
    if dead:
        return dead
    assert line.endswith(b"\n")
    return line[:-1].decode()


# ------------------------------------------------------------------ per-type good values

GOOD = [
    ("tinyint", 127, "127"), ("tinyint", -128, "-128"),
    ("smallint", 3.0, "3"), ("smallint", " 12 ", "12"), ("smallint", "-7", "-7"),
    ("int", 2147483647, "2147483647"), ("int", "+5", "5"), ("int", 1e3, "1000"),
    ("bigint", 1.5e1, "15"),
    ("bigint", -9223372036854775808, "-9223372036854775808"),
    ("bigint", 9223372036854775807, "9223372036854775807"),
    ("largeint", 2**100, str(2**100)), ("largeint", -(2**100), str(-(2**100))),
    ("largeint", 2**127 - 1, str(2**127 - 1)), ("largeint", str(2**120), str(2**120)),
    ("boolean", True, "1"), ("boolean", False, "0"), ("boolean", 1, "1"), ("boolean", 0, "0"),
    ("boolean", "TRUE", "1"), ("boolean", "false", "0"), ("boolean", "1", "1"), ("boolean", " 0 ", "0"),
    ("double", 1.5, "1.5"), ("double", 3, "3"), ("double", "2.25", "2.25"), ("double", "1e3", "1000.0"),
    ("double", 1e300, "1e+300"), ("double", 0.1, "0.1"), ("float", 1.25, "1.25"),
    ("decimal(10,2)", "12.345", "12.35"), ("decimal(10,2)", "12.344", "12.34"),
    ("decimal(10,2)", "-12.345", "-12.35"), ("decimal(10,2)", 7, "7.00"), ("decimal(10,2)", 0.25, "0.25"),
    ("decimal(10,2)", 1234.5678, "1234.57"), ("decimal(10,2)", "1e3", "1000.00"),
    ("decimal(10,2)", "12.30", "12.30"), ("decimal(5,0)", "99999.4", "99999"),
    ("decimal(20,4)", "12345678901234.5678", "12345678901234.5678"),
    ("decimal(20,4)", 0.25, "0.2500"), ("decimal(10,2)", "1e-999999999", "0.00"), ("decimal(4,4)", "0.12345", "0.1235"),
    ("decimal(38,10)", "1234567890123456789012345678.0123456789",
     "1234567890123456789012345678.0123456789"),
    ("varchar(8)", "abc", "abc"), ("varchar(8)", "", ""), ("varchar(8)", 12, "12"),
    ("varchar(8)", 1.5, "1.5"), ("varchar(8)", True, "true"), ("char(2)", "US", "US"),
    ("varchar(6)", "日本", "日本"),                                  # 6 bytes
    ("string", "x" * 1000, "x" * 1000), ("string", [1, 2], "[1,2]"),
    ("date", "2024-02-29", "2024-02-29"), ("date", "2024-05-01 23:59:59", "2024-05-01"),
    ("date", "2024-5-1", "2024-05-01"), ("date", 0, "1970-01-01"), ("date", TS, "2024-05-01"),
    ("date", 1714567890, "2024-05-01"),
    ("datetime", "2024-05-01 12:34:56", "2024-05-01 12:34:56"),
    ("datetime", "2024-05-01 12:34:56.789", "2024-05-01 12:34:57"),      # Doris rounds
    ("datetime", "2024-05-01 12:34:56.489", "2024-05-01 12:34:56"),
    ("datetime", "2024-05-01", "2024-05-01 00:00:00"),
    ("datetime", "2024-05-01T12:34:56Z", "2024-05-01 12:34:56"),
    ("datetime", "2024-05-01T12:34:56+02:00", "2024-05-01 10:34:56"),
    ("datetime", TS, "2024-05-01 12:51:30"), ("datetime", 1714567890, "2024-05-01 12:51:30"),
    ("datetime(3)", "2024-05-01 12:34:56.789", "2024-05-01 12:34:56.789"),
    ("datetime(3)", "2024-05-01 12:34:56", "2024-05-01 12:34:56.000"),
    ("datetime(3)", "2024-05-01 12:34:56.789123", "2024-05-01 12:34:56.789"),
    ("datetime(6)", "2024-05-01 12:34:56.7", "2024-05-01 12:34:56.700000"),
    ("datetime(3)", "2024-05-01T12:34:56.5Z", "2024-05-01 12:34:56.500"),
    ("datetime(3)", TS, "2024-05-01 12:51:30.123"),
    ("datetime(3)", 1714567890.5, "2024-05-01 12:51:30.500"),
    ("json", {"a": [1, "x/y"]}, '"{\\"a\\":[1,\\"x/y\\"]}"'),
    ("json", '{"a": 1}', '"{\\"a\\": 1}"'), ("json", "[1,2]", "[1,2]"),
    ("json", "plain", '"\\"plain\\""'), ("json", 5, "5"), ("json", True, "true"),
    ("variant", {"k": "é"}, '"{\\"k\\":\\"é\\"}"'), ("array", [1, 2], "[1,2]"),
    ("map", {}, "{}"), ("ipv4", "10.0.0.1", "10.0.0.1"),
]


@pytest.mark.parametrize("raw,value,expected", GOOD)
def test_good_values(raw, value, expected):
    assert field(raw, value) == expected


# ------------------------------------------------------------------ per-type bad values

BAD = [
    ("tinyint", 128, "out_of_range"), ("tinyint", -129, "out_of_range"),
    ("smallint", 40000, "out_of_range"), ("int", 2**31, "out_of_range"),
    ("bigint", 2**63, "out_of_range"), ("largeint", 2**127, "out_of_range"),
    ("largeint", -(2**127) - 1, "out_of_range"),
    ("int", "many", "conversion"), ("int", 1.5, "conversion"), ("int", "1.0", "conversion"),
    ("int", {"a": 1}, "conversion"), ("int", [], "conversion"),
    ("tinyint", True, "conversion"), ("int", False, "conversion"), ("bigint", 1e19, "out_of_range"),
    ("double", True, "conversion"), ("float", False, "conversion"),
    ("boolean", "yes", "conversion"), ("boolean", 2, "conversion"),
    ("double", "abc", "conversion"), ("double", "NaN", "conversion"), ("double", "1e999", "out_of_range"),
    ("double", 10**400, "out_of_range"), ("float", 1e39, "out_of_range"), ("double", {}, "conversion"),
    ("decimal(10,2)", "abc", "conversion"), ("decimal(10,2)", "123456789", "out_of_range"),
    ("decimal(10,2)", "99999999.995", "out_of_range"), ("decimal(10,2)", "1_000", "conversion"),
    ("decimal(10,2)", "Infinity", "conversion"), ("decimal(10,2)", True, "conversion"),
    ("decimal(10,2)", "1e999999999", "out_of_range"),
    ("varchar(8)", "123456789", "too_long"), ("varchar(5)", "日本", "too_long"),
    ("char(2)", "USA", "too_long"), ("string", "x" * 1048577, "too_long"),
    ("date", "2024-02-30", "invalid_date"), ("date", "2023-02-29", "invalid_date"),
    ("date", "hello", "conversion"), ("date", True, "conversion"), ("date", {}, "conversion"),
    ("datetime", "2024-05-01 24:00:00", "invalid_date"), ("datetime", "2024-13-01 00:00:00", "invalid_date"),
    ("datetime", "2024-05-01 12:60:00", "invalid_date"), ("datetime", "yesterday", "conversion"),
    ("datetime", 10**20, "out_of_range"),
    ("hll", "abc", "conversion"), ("bitmap", 1, "conversion"),
]


@pytest.mark.parametrize("raw,value,cat", BAD)
def test_bad_values(raw, value, cat):
    dead = field(raw, value)
    assert isinstance(dead, DeadLetter), dead
    assert category(dead.reason) == cat, dead.reason
    assert dead.column == "c"
    assert dead.reason.startswith(f"{cat}: column c: ")


def test_bool_as_int_loads_booleans_into_number_columns():
    cols = [col("i", "tinyint"), col("f", "double"), col("d", "decimal(5,2)"), col("b", "boolean")]
    m = make(cols, bool_as_int=True)
    assert run(m, rec({"i": True, "f": False, "d": True, "b": True}))[0] == b"1\t0\t1.00\t1\n"
    dead = run(make(cols), rec({"i": True}))[1]
    assert dead.reason == ("conversion: column i: true is a boolean, not a TINYINT "
                           "(set mapping.bool_as_int: true to load true/false as 1/0)")
    assert run(make(cols), rec({"b": False}))[0] == b"\\N\t\\N\t\\N\t0\n"   # BOOLEAN itself


def test_bool_as_int_is_a_checked_mapping_option():
    assert config_from_dict({**MINIMAL, "mapping": {"bool_as_int": True}}, env={}).mapping.bool_as_int
    assert config_from_dict(MINIMAL, env={}).mapping.bool_as_int is False
    with pytest.raises(ConfigError, match="mapping.bool_as_int: expected true or false"):
        config_from_dict({**MINIMAL, "mapping": {"bool_as_int": "yes"}}, env={})


def test_integer_columns_take_integral_numbers_exactly():
    m = make([col("c", "bigint")])
    # the exact decimal the producer wrote, not the nearest double (123456789012345664)
    assert run(m, rec(b'{"c": 1.2345678901234567e17}'))[0] == b"123456789012345670\n"
    assert run(m, rec(b'{"c": 2.50e1}'))[0] == b"25\n"
    assert run(m, rec(b'{"c": -0.0}'))[0] == b"0\n"
    for text, cat in [(b"1.5", "conversion"), (b"1.0000000000000001", "conversion"),
                      (b"0.99999999999999999", "conversion"), (b"1e19", "out_of_range"),
                      (b"1e999999999", "out_of_range"), (b"-1e400", "out_of_range"),
                      (b"NaN", "conversion"), (b"Infinity", "conversion")]:
        dead = run(m, rec(b'{"c": %s}' % text))[1]
        assert dead is not None and category(dead.reason) == cat, (text, dead)
        assert dead.column == "c" and text.decode() in dead.reason, dead.reason


def test_reason_texts():
    assert field("int", "many").reason == "conversion: column c: 'many' is not an INT"
    assert field("varchar(8)", "x" * 13).reason == "too_long: column c: 13 bytes, VARCHAR(8) holds 8"
    assert field("date", "2024-02-30").reason == \
        "invalid_date: column c: '2024-02-30' is not a valid DATE"
    assert field("hll", "x").reason.startswith("conversion: column c: cannot load hll from JSON")


def test_nan_and_infinity_never_reach_a_json_column():
    """Python's and ujson's decoders accept NaN/Infinity; JSON (and Doris) do not."""
    m = make([col("j", "json"), col("s", "string")])
    for text in (b'{"j": NaN}', b'{"j": {"a": NaN}}', b'{"j": [1, -Infinity]}', b'{"j": Infinity}'):
        _, dead = run(m, rec(text))
        assert category(dead.reason) == "conversion" and dead.column == "j", text
    for text in (b'{"j": "{\\"a\\": NaN}"}',):       # a string holding NaN is a string, not JSON
        line, _ = run(m, rec(text))
        assert json.loads(parse_csv_line(line)[0]) == '{"a": NaN}'
    line, _ = run(m, rec(b'{"j": {"a": "NaN"}}'))        # the text NaN is fine
    assert json.loads(parse_csv_line(line)[0]) == {"a": "NaN"}
    _, dead = run(m, rec(b'{"s": NaN}'))
    assert dead.reason == "conversion: column s: NaN is not JSON (send null or a string)"


def test_numbers_into_string_columns_keep_their_text():
    m = make([col("s", "varchar(40)"), col("t", "string"), col("c", "char(8)")])
    line, _ = run(m, rec(b'{"s": 1.10, "t": 1E+2, "c": -0.0}'))
    assert line == b"1.10\t1E+2\t-0.0\n"
    line, _ = run(m, rec(b'{"s": 12345678901234567890.123456789, "t": 1e999}'))
    assert line == b"12345678901234567890.123456789\t1e999\t\\N\n"


def test_json_format_keeps_number_text_where_it_writes_the_row_again():
    """Doris gives a string column a JSON number as written (new_json_reader.cpp
    _simdjson_write_data_to_column: simdjson::to_json_string), so the passthrough keeps 1.10; the
    rows sinker writes again (a raw control character, a path source, a key the config fills)
    must keep it too."""
    m = make([col("s", "varchar(10)"), col("n", "string")], fmt="json")
    line, _ = run(m, rec(b'{"s": 1.10, "n": 2.50e1}'))
    assert line == b'{"s": 1.10, "n": 2.50e1}\n'                       # passthrough: the bytes
    line, _ = run(m, rec(b'{"s": 1.10,\n "n": "a\tb"}'))                 # raw TAB in a string
    assert json.loads(line, parse_float=str) == {"s": "1.10", "n": "a\tb"} and b"1.10" in line
    m = make([col("s", "varchar(10)"), col("p", "string"), col("o", "bigint")], fmt="json",
             sources=[ColumnSource("p", ("x", "price")), ColumnSource("o", kafka="offset")])
    for value in (b'{"s": 1.10, "x": {"price": 1.10}}', b'{"s": 1.10, "p": 0, "x": {"price": 1.10}}'):
        line, _ = run(m, rec(value, offset=7))
        assert json.loads(line, parse_float=str) == {"s": "1.10", "x": {"price": "1.10"}, "p": "1.10", "o": 7}
    _, dead = run(m, rec(b'{"s": 1, "x": {"price": NaN}}'))
    assert category(dead.reason) == "conversion" and "NaN" in dead.reason


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_key_written_twice_is_a_dead_letter_in_both_formats(fmt):
    """ujson keeps the last value, Doris's JSON reader the first (new_json_reader.cpp,
    _simdjson_set_column_value skips a column it has seen): no value would be the one sent."""
    m = make([col("a", "int"), col("s", "varchar(5)"), col("j", "json")], fmt=fmt)
    cases = {b'{"a": 1, "s": "x", "a": 2}': "'a'", b'{"a": 1.5, "a": 3, "s": 1.50}': "'a'",
             b'{"a":1,"j":{"k":1,"k":[2]}}': "'j.k'", b'{"a":1,"j":[{"x":1},{"y":2,"y":2}]}': "'j.1.y'",
             b'{"a" :1, "s":"x", "a" :2}': "'a'",                        # space before the colon
             b'{"a":1,"a":1}': "'a'", b'{"u":{"v":1},"u":{"w":1}}': "'u'"}   # same value, unmapped key
    for value, key in cases.items():
        line, dead = run(m, rec(value))
        assert line is None and category(dead.reason) == "duplicate_key", value
        assert dead.reason.startswith(f"duplicate_key: key {key} appears twice in one object"), dead.reason
    _, dead = run(m, rec(b'{"a": 1, "s": "x", "a": 2}'))
    assert dead.reason.endswith("(1 and 2): JSON readers disagree on which one counts (ujson takes the "
                                "last, Doris the first); send each key once")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_texts_that_look_like_keys_are_not_duplicates(fmt):
    """The cheap count sees colons after quotes and whitespace; strings holding them (times,
    escaped quotes, "a : b") and the same key in two objects must still load."""
    m = make([col("a", "int"), col("s", "varchar(40)"), col("j", "json")], fmt=fmt)
    for value in (b'{"a":1,"s":"12:30:00","j":{"a":1,"s":{"a":2}}}', b'{"a":1,"s":"say \\":\\" : x"}',
                  b'{"a" : 1 , "s" : "b :c"}', b'{"a":1,"j":[{"k":1},{"k":1}]}', b'{"a":1,"\\":":2}'):
        line, dead = run(m, rec(value))
        assert dead is None, (value, dead.reason)


def test_one_duplicate_in_a_slice_is_the_only_dead_letter():
    for fmt in ("csv", "json"):
        m = make([col("a", "int"), col("t", "varchar(40)")], fmt=fmt)
        values = [b'{"a":%d,"t":"2024-01-01T00:00:0%dZ","n":{"x":1}}' % (i, i) for i in range(5)]
        values[3] = b'{"a":3,"t":"x","n":{"x":1,"x":2}}'
        out, dead = [], []
        m.map_records([rec(v, offset=i) for i, v in enumerate(values)], out, dead)
        assert [d.offset for d in dead] == [3] and len(out) == 4, fmt
        assert dead[0].reason.startswith("duplicate_key: key 'n.x' appears twice")


LENIENT = [b"-", b"01", b"-01", b"00", b"1.", b"-1.", b"1.e5", b"-.5", b"[1, 01]", b'{"x": -}']


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("raw", ["int", "largeint", "double", "decimal(10,2)", "varchar(8)", "json"])
def test_a_number_json_does_not_allow_is_a_dead_letter_not_a_made_up_value(fmt, raw):
    """ujson reads `-` as 0, `01` as 1 and `1.` as 1.0: loading those would load values nobody
    sent. Alone, in a slice, beside an integer beyond 64 bits (which only ujson reads exactly)."""
    m = make([col("k", "int"), col("a", raw), col("big", "largeint")], fmt=fmt)
    for text in LENIENT:
        value = b'{"k": 1, "a": ' + text + b'}'
        _, dead = run(m, rec(value))
        assert dead is not None and category(dead.reason) == "invalid_json", (text, dead)
        assert "JSON number" in dead.reason and dead.value == value
        good = [b'{"k": 1, "a": null}', b'{"k": 2, "a": null, "big": 123456789012345678901234567}']
        for bad in (value, value[:-1] + b', "big": 123456789012345678901234567}'):
            out, dead = [], []
            m.map_records([rec(v, offset=i) for i, v in enumerate([good[0], bad, good[1]])], out, dead)
            assert [d.offset for d in dead] == [1] and category(dead[0].reason) == "invalid_json", bad
            assert len(out) == 2 and (fmt == "json" or out[1] == b"2\t\\N\t123456789012345678901234567\n")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_number_json_forbids_is_found_at_any_depth_the_decoders_read(fmt):
    """The standard library's reader stops short of the 1,024 levels orjson and ujson read; the
    number check does not recurse, so depth hides nothing."""
    m = make([col("k", "int"), col("j", "json"), col("a", "int")], fmt=fmt)
    for depth in (1, 990, 1020):
        nest = b"[" * depth + b"0" + b"]" * depth
        for value in (b'{"k": 1, "j": ' + nest + b', "a": -}',
                      b'{"k": 1, "j": ' + nest.replace(b"0", b"-") + b', "a": 1}'):
            out, dead = [], []
            m.map_records([rec(value)], out, dead)
            assert out == [] and dead[0].reason.startswith("invalid_json: '-' is not a JSON number")


def test_integers_at_and_beyond_64_bits_load_exactly():
    """orjson, the first decoder, reads an integer beyond -2**63 .. 2**64-1 as a float; the text
    decides which messages ujson reads instead, so none of them changes."""
    m = make([col("l", "largeint"), col("s", "string"), col("j", "json")])
    for n in (2**64 - 1, 2**64, -2**63, -2**63 - 1, 1714567890123456789, -(10**30), 10**37):
        line, dead = run(m, rec(b'{"l": %d, "s": %d, "j": [[%d]]}' % (n, n, n)))
        assert dead is None and line == b"%d\t%d\t[[%d]]\n" % (n, n, n), n


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_number_like_text_in_strings_and_valid_numbers_load(fmt):
    """What looks like those numbers inside a string, and every form JSON allows, is no dead
    letter (the strict reader decides, not a text search)."""
    m = make([col("k", "int"), col("s", "varchar(40)"), col("d", "double"), col("j", "json")], fmt=fmt)
    values = [b'{"k": 1, "s": "a - b, 01: 1. x", "d": -0.5e-07, "j": [0, -0, 10, 1E+2]}',
              b'{"k": 2, "s": "2024-05-01 00:00:01", "d": 0, "j": {"x": -1.5}}',
              b'{"k" : -0, "s":":-.5]", "d":1e5,"j":[ 0 ]}',
              b'{"k": 3, "s": "[00, -]", "d": 123456789012345678901234, "j": null}']
    out, dead = [], []
    m.map_records([rec(v, offset=i) for i, v in enumerate(values)], out, dead)
    assert dead == [] and len(out) == 4
    if fmt == "csv":
        assert out[3] == b"3\t[00, -]\t123456789012345678901234\t\\N\n"


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_invalid_utf8_is_a_dead_letter_in_both_formats(fmt):
    m = make([col("a", "varchar(10)")], fmt=fmt)
    for value in (b'{"a": "\xff"}', b'{"a": "ok"}\xc3', b'{"a": "\xc3("}'):
        _, dead = run(m, rec(value))
        assert category(dead.reason) == "invalid_json" and "UTF-8" in dead.reason, value
    # a surrogate encoded as UTF-8 bytes (ujson decodes it): csv names the column it reached;
    # json, which sends the bytes themselves, refuses the message
    _, dead = run(m, rec(b'{"a": "\xed\xa0\x80"}'))
    if fmt == "csv":
        assert category(dead.reason) == "conversion" and dead.column == "a"
    else:
        assert category(dead.reason) == "invalid_json" and "UTF-8" in dead.reason
    assert run(m, rec('{"a": "한국"}'))[0] is not None               # Hangul: ED 95 9C is UTF-8
    if fmt == "json":                  # and a slice of it is sent as written
        values = ['{"a": "한국"}'.encode(), '{"a": "힣"}'.encode()]
        out = []
        assert m.map_slice([rec(v, offset=i) for i, v in enumerate(values)], out, [])[1]
        assert out == [v + b"\n" for v in values]


def test_lone_surrogates():
    """csv: a dead letter naming the column. json: passed through as written (valid UTF-8 bytes,
    an escape Doris's reader refuses; the writer dead-letters the row Doris rejects)."""
    for raw in ("varchar(10)", "string", "json", "char(4)"):
        m = make([col("c", raw)])
        for text in (b'{"c": "\\ud800"}', b'{"c": "x\\udc00y"}', b'{"c": ["\\udbff"]}'):
            _, dead = run(m, rec(text))
            assert category(dead.reason) == "conversion" and dead.column == "c", (raw, text)
    m = make([col("c", "string")])
    assert run(m, rec(b'{"c": "\\ud83d\\ude00"}'))[0] == "\U0001F600\n".encode()   # a pair is fine
    m = make([col("c", "string")], fmt="json")
    assert run(m, rec(b'{"c": "\\ud800"}'))[0] == b'{"c": "\\ud800"}\n'


def test_string_longer_than_doris_limit_names_the_setting():
    assert field("string", "x" * 1048577).reason == (
        "too_long: column c: 1048577 bytes, STRING (Doris's string_type_length_soft_limit_bytes) "
        "holds 1048576")
    assert field("string", "é" * 524288) == "é" * 524288                      # exactly 1 MB
    assert category(field("string", "é" * 524288 + "x").reason) == "too_long"


def test_double_nan_and_inf_from_json_numbers():
    m = make([col("c", "double")])
    for text in (b'{"c": NaN}', b'{"c": Infinity}', b'{"c": -Infinity}'):
        _, dead = run(m, rec(text))
        assert category(dead.reason) == "conversion"


# ------------------------------------------------------------------ CSV encoding


def parse_csv_line(line: bytes) -> list[str | None]:
    """The emulator's rule: TAB-separated; enclosed in "..." with \\x meaning x; bare \\N is NULL."""
    text = line.decode()
    assert text.endswith("\n")
    text = text[:-1]
    fields, i = [], 0
    while True:
        if text[i:i + 1] == '"':
            i += 1
            buf = []
            while text[i] != '"':
                if text[i] == "\\":
                    i += 1
                buf.append(text[i])
                i += 1
            i += 1
            fields.append("".join(buf))
        else:
            j = text.find("\t", i)
            j = len(text) if j < 0 else j
            raw = text[i:j]
            assert not any(ch in raw for ch in '\n\r"'), raw
            fields.append(None if raw == "\\N" else raw)
            i = j
        if i >= len(text):
            return fields
        assert text[i] == "\t"
        i += 1


TRICKY = [
    ("tab", "a\tb", '"a\tb"'), ("newline", "a\nb", '"a\nb"'), ("cr", "a\rb", '"a\rb"'),
    ("quote", 'say "hi"', '"say \\"hi\\""'), ("backslash", "c:\\dir", '"c:\\\\dir"'),
    ("null_text", "\\N", '"\\\\N"'), ("unicode", "héllo 日本 🎉", "héllo 日本 🎉"),
    ("ctrl", "a\x01b", "a\x01b"), ("space", " padded ", " padded "), ("empty", "", ""),
    ("all", '\t\n\r"\\', '"\t\n\r\\"\\\\"'),
]


@pytest.mark.parametrize("name,value,expected", TRICKY, ids=[t[0] for t in TRICKY])
def test_tricky_strings_exact_text_and_round_trip(name, value, expected):
    m = make([col("a", "int"), col("s", "string"), col("b", "int")])
    line, _ = run(m, rec({"a": 1, "s": value, "b": 2}))
    assert line == f"1\t{expected}\t2\n".encode()
    assert parse_csv_line(line) == ["1", value, "2"]


def test_null_is_bare_and_text_null_is_enclosed():
    m = make([col("s", "varchar(10)"), col("t", "varchar(10)")])
    line, _ = run(m, rec({"s": None, "t": "\\N"}))
    assert line == b'\\N\t"\\\\N"\n'
    assert parse_csv_line(line) == [None, "\\N"]


def test_json_column_round_trips_through_csv():
    m = make([col("j", "json")])
    value = {"q": 'a"b', "p": "c\\d", "t": "x\ty", "u": "日本"}
    line, _ = run(m, rec({"j": value}))
    assert json.loads(parse_csv_line(line)[0]) == value


def test_varchar_counts_bytes_not_characters():
    assert field("varchar(9)", "日本語") == "日本語"                    # 9 bytes
    dead = field("varchar(8)", "日本語")
    assert dead.reason == "too_long: column c: 9 bytes, VARCHAR(8) holds 8"
    assert field("varchar(4)", "🎉") == "🎉"                           # 4 bytes
    assert category(field("varchar(3)", "🎉").reason) == "too_long"


def test_lone_surrogate_is_a_conversion_dead_letter():
    for raw in ("varchar(10)", "string", "json"):
        m = make([col("c", raw)])
        _, dead = run(m, rec(b'{"c": "\\ud800"}' if raw != "json" else b'{"c": {"a": "\\ud800"}}'))
        assert category(dead.reason) == "conversion" and dead.column == "c"


# ------------------------------------------------------------------ NULL / missing / default / zero

ZERO_CASES = [("int", "0"), ("boolean", "0"), ("double", "0"), ("decimal(10,2)", "0.00"),
              ("varchar(5)", ""), ("date", "1970-01-01"), ("datetime", "1970-01-01 00:00:00"),
              ("datetime(3)", "1970-01-01 00:00:00.000"), ("json", "{}"), ("array", "[]")]


@pytest.mark.parametrize("raw,zero", ZERO_CASES)
def test_zero_values_for_not_null_columns(raw, zero):
    m = make([col("k", "int", nullable=False), col("c", raw, nullable=False)], missing="zero")
    assert run(m, rec({"k": 1}))[0] == f"1\t{zero}\n".encode()          # missing
    assert run(m, rec({"k": 1, "c": None}))[0] == f"1\t{zero}\n".encode()  # JSON null


def test_null_missing_default_matrix():
    cols = [col("id", "int", nullable=False), col("n", "varchar(5)"),
            col("d", "varchar(5)", nullable=False, default="new"),
            col("dn", "int", default="7")]
    m = make(cols)
    assert run(m, rec({"id": 1}))[0] == b"1\t\\N\tnew\t7\n"
    assert run(m, rec({"id": 1, "n": None, "dn": None}))[0] == b"1\t\\N\tnew\t\\N\n"
    assert run(m, rec({"id": 1, "n": "x", "d": "y", "dn": 3}))[0] == b"1\tx\ty\t3\n"

    _, dead = run(m, rec({"n": "x"}))
    assert dead.reason == "missing: field id is required (column id is NOT NULL, no default)"
    assert dead.column == "id"
    _, dead = run(m, rec({"id": None}))
    assert category(dead.reason) == "null" and dead.column == "id"
    # a NOT NULL column with a default: an explicit null is not "missing"
    _, dead = run(m, rec({"id": 1, "d": None}))
    assert category(dead.reason) == "null" and dead.column == "d"


def test_expression_default_uses_the_record_timestamp():
    m = make([col("id", "int"), col("at", "datetime(3)", nullable=False, default="CURRENT_TIMESTAMP"),
              col("day", "date", nullable=False, default="current_date")], tz="Asia/Shanghai")
    line, _ = run(m, rec({"id": 1}))
    assert line == b"1\t2024-05-01 20:51:30.123\t2024-05-01\n"


def test_unsupported_type_missing_is_treated_as_missing():
    m = make([col("id", "int"), col("h", "hll", default="x"), col("b", "bitmap")])
    assert run(m, rec({"id": 1}))[0] == b"1\tx\t\\N\n"
    m = make([col("id", "int"), col("h", "hll", nullable=False)], missing="zero")
    assert category(run(m, rec({"id": 1}))[1].reason) == "missing"


# ------------------------------------------------------------------ sources: paths and Kafka metadata

def test_paths_into_nested_objects():
    cols = [col("uid", "bigint", nullable=False), col("city", "varchar(20)"), col("flat", "int")]
    m = make(cols, sources=[ColumnSource("uid", ("user", "id")),
                            ColumnSource("city", ("user", "addr", "city"))])
    assert run(m, rec({"user": {"id": 42, "addr": {"city": "Oslo"}}, "flat": 1}))[0] == b"42\tOslo\t1\n"
    assert run(m, rec({"user": {"id": 42, "addr": "none"}}))[0] == b"42\t\\N\t\\N\n"   # broken path
    assert run(m, rec({"user": {"id": 42, "addr": [1]}}))[0] == b"42\t\\N\t\\N\n"
    _, dead = run(m, rec({"user": None}))
    assert dead.reason == "missing: field user.id is required (column uid is NOT NULL, no default)"


def test_kafka_metadata_columns():
    cols = [col("t", "varchar(20)"), col("p", "int"), col("o", "bigint"), col("ts", "datetime(3)"),
            col("tsd", "date"), col("tsn", "bigint"), col("k", "varchar(20)"), col("ki", "int")]
    src = [ColumnSource("t", kafka="topic"), ColumnSource("p", kafka="partition"),
           ColumnSource("o", kafka="offset"), ColumnSource("ts", kafka="timestamp"),
           ColumnSource("tsd", kafka="timestamp"), ColumnSource("tsn", kafka="timestamp"),
           ColumnSource("k", kafka="key"), ColumnSource("ki", kafka="key")]
    m = make(cols, sources=src, tz="Asia/Shanghai")
    line, _ = run(m, rec({}, offset=99, key=b"42"))
    assert line == f"events\t3\t99\t2024-05-01 20:51:30.123\t2024-05-01\t{TS}\t42\t42\n".encode()
    line, _ = run(m, rec({}, offset=99, key=None))
    assert line.endswith(b"\t\\N\t\\N\n")
    _, dead = run(m, rec({}, key=b"\xff"))
    assert category(dead.reason) == "conversion" and dead.column == "k"


def test_kafka_key_into_not_null_column_without_key_is_a_null_dead_letter():
    m = make([col("k", "varchar(5)", nullable=False)], sources=[ColumnSource("k", kafka="key")])
    _, dead = run(m, rec({}))
    assert dead.reason == "null: column k is NOT NULL but kafka key is null"


def test_bad_kafka_source_is_a_config_error():
    """config.py is the one validator: the Mapper trusts a MappingConfig that passed it."""
    with pytest.raises(ConfigError, match="headers"):
        config_from_dict({**MINIMAL, "mapping": {"columns": {"k": "@kafka.headers"}}}, env={})


# ------------------------------------------------------------------ time zones

def test_datetime_conversions_follow_the_doris_timezone():
    cols = [col("a", "datetime"), col("b", "datetime"), col("c", "datetime"), col("d", "date")]
    m = make(cols, tz="Asia/Shanghai")
    line, _ = run(m, rec({"a": "2024-05-01T20:00:00Z", "b": "2024-05-01 20:00:00",
                          "c": 1714593600, "d": "2024-05-01T20:00:00Z"}))
    # ISO with Z and epochs are instants (converted); a plain text datetime is taken as local time
    assert line == b"2024-05-02 04:00:00\t2024-05-01 20:00:00\t2024-05-02 04:00:00\t2024-05-02\n"
    m = make([col("a", "datetime")], tz="-05:00")
    assert run(m, rec({"a": "2024-05-01T02:00:00+00:00"}))[0] == b"2024-04-30 21:00:00\n"


ROUNDING = [
    ("datetime(3)", "2024-01-01 00:00:00.9999", "2024-01-01 00:00:01.000"),
    ("datetime(3)", "2024-01-01 00:00:00.12349", "2024-01-01 00:00:00.123"),
    ("datetime(3)", "2024-01-01 00:00:00.1235", "2024-01-01 00:00:00.124"),
    ("datetime(3)", "2024-01-01 00:59:59.9995", "2024-01-01 01:00:00.000"),
    ("datetime(3)", "2023-12-31 23:59:59.9999", "2024-01-01 00:00:00.000"),
    ("datetime", "2024-02-28 23:59:59.5", "2024-02-29 00:00:00"),
    ("datetime(6)", "2024-01-01 00:00:00.1234565", "2024-01-01 00:00:00.123457"),
    ("datetime(1)", "2024-01-01T23:59:59.96Z", "2024-01-02 00:00:00.0"),
    ("datetime", 1714567890.5, "2024-05-01 12:51:31"),               # epoch seconds, rounded too
    ("date", "2024-01-01 23:59:59.9999", "2024-01-01"),              # DATE drops the time
]


@pytest.mark.parametrize("raw,value,expected", ROUNDING)
def test_datetime_fraction_beyond_the_scale_rounds_half_up_with_carry(raw, value, expected):
    assert field(raw, value) == expected


def test_datetime_rounding_past_the_last_day_is_a_dead_letter():
    dead = field("datetime", "9999-12-31 23:59:59.5")
    assert category(dead.reason) == "out_of_range" and dead.column == "c"
    assert field("datetime(1)", "9999-12-31 23:59:59.5") == "9999-12-31 23:59:59.5"


def test_zone_offsets_beyond_a_day_are_dead_letters():
    for text in ("2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00-24:00",
                 "2024-01-01T00:00:00+99:00", "2024-01-01T00:00:00+05:60"):
        for raw in ("datetime", "date"):
            dead = field(raw, text)
            assert isinstance(dead, DeadLetter), (raw, text)
            assert dead.reason == f"invalid_date: column c: {text!r} has a zone offset outside " \
                                  "-23:59..+23:59"
    assert field("datetime", "2024-01-01T00:00:00+23:59") == "2023-12-31 00:01:00"
    with pytest.raises(ConfigError, match="23:59"):
        make([col("a", "int")], tz="+24:00")


def test_date_from_a_zoned_datetime_is_shifted_then_truncated():
    """Doris (format json) reads the instant in the load's time zone, then drops the time:
    csv gives the same date."""
    m = make([col("d", "date"), col("t", "datetime")], tz="UTC")
    line, _ = run(m, rec({"d": "2024-01-01T00:30:00+08:00", "t": "2024-01-01T00:30:00+08:00"}))
    assert line == b"2023-12-31\t2023-12-31 16:30:00\n"
    m = make([col("d", "date")], tz="Asia/Shanghai")
    assert run(m, rec({"d": "2024-01-01T20:00:00Z"}))[0] == b"2024-01-02\n"


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_kafka_timestamp_no_datetime_holds_is_a_dead_letter(fmt):
    """A producer writing microseconds (year 55840) must not crash the mapper."""
    cols = [col("id", "int"), col("at", "datetime(3)"), col("day", "date")]
    src = [ColumnSource("at", kafka="timestamp"), ColumnSource("day", kafka="timestamp")]
    m = make(cols, fmt=fmt, sources=src)
    micros = TS * 1000
    line, dead = run(m, rec({"id": 1}, ts=micros))
    assert line is None and category(dead.reason) == "out_of_range" and dead.column == "at"
    assert str(micros) in dead.reason
    assert run(m, rec({"id": 1}))[0] is not None


def test_current_timestamp_default_with_a_microsecond_kafka_timestamp_is_a_dead_letter():
    m = make([col("id", "int"), col("at", "datetime", nullable=False, default="CURRENT_TIMESTAMP")])
    _, dead = run(m, rec({"id": 1}, ts=TS * 1000))
    assert category(dead.reason) == "out_of_range" and dead.column == "at"


def test_bad_timezone_is_a_config_error():
    with pytest.raises(ConfigError, match="time zone"):
        make([col("a", "int")], tz="Mars/Olympus")


# ------------------------------------------------------------------ exact numbers

def test_largeint_beyond_64_bits_from_json_numbers():
    m = make([col("big", "largeint")])
    for v in (2**100, -(2**100), 2**64):
        assert run(m, rec(b'{"big": %d}' % v))[0] == b"%d\n" % v


def test_decimal_from_long_json_number_is_exact():
    m = make([col("d", "decimal(20,4)"), col("f", "double"), col("s", "varchar(40)")])
    line, _ = run(m, rec(b'{"d": 12345678901234.5678, "f": 0.1, "s": 2.5}'))
    assert line == b"12345678901234.5678\t0.1\t2.5\n"     # float(12345678901234.5678) would lose .5678
    assert run(m, rec(b'{"d": 0.25}'))[0] == b"0.2500\t\\N\t\\N\n"
    assert run(m, rec(b'{"d": "12345678901234.5678"}'))[0] == b"12345678901234.5678\t\\N\t\\N\n"
    assert run(m, rec(b'{"d": 1.00005}'))[0] == b"1.0001\t\\N\t\\N\n"        # half-up
    assert category(run(m, rec(b'{"d": 12345678901234567.5}'))[1].reason) == "out_of_range"


def test_decimal_written_without_exponent():
    assert field("decimal(10,4)", "1E-3") == "0.0010"
    assert field("decimal(12,2)", 1e9) == "1000000000.00"


# ------------------------------------------------------------------ message-level dead letters

def test_message_level_dead_letters():
    m = make([col("a", "int")])
    cases = [(rec(None), "empty", "empty: message has no value"), (rec(b""), "empty", None),
             (rec(b"{nope"), "invalid_json", None), (rec(b"[1,2]"), "not_object", None),
             (rec(b'"s"'), "not_object", None), (rec(b"12"), "not_object", None),
             (rec(b'{"a":1}\xff'), "invalid_json", None), (rec(b'{"a":"\xff"}'), "invalid_json", None)]
    for r, cat, reason in cases:
        _, dead = run(m, r)
        assert category(dead.reason) == cat, (r, dead.reason)
        if reason:
            assert dead.reason == reason
        assert dead.column is None
        assert (dead.topic, dead.partition, dead.offset, dead.timestamp, dead.value) == \
            (r.topic, r.partition, r.offset, r.timestamp, r.value)


def test_batch_mixes_good_and_dead_in_order():
    m = make([col("a", "int", nullable=False), col("s", "varchar(3)")])
    recs = [rec({"a": 1, "s": "x"}, 0), rec({"a": "x"}, 1), rec(b"oops", 2), rec({"a": 2}, 3),
            rec({"a": 3, "s": "long"}, 4)]
    out, dead = [], []
    n = m.map_records(recs, out, dead)
    assert out == [b"1\tx\n", b"2\t\\N\n"]
    assert n == len(b"1\tx\n") + len(b"2\t\\N\n")
    assert [(d.offset, category(d.reason), d.column) for d in dead] == \
        [(1, "conversion", "a"), (2, "invalid_json", None), (4, "too_long", "s")]
    for r in recs:
        line = m.line_for(r)
        assert (line in out) if line is not None else any(d.offset == r.offset for d in dead)


def test_a_slice_of_objects_with_one_bad_value_keeps_every_good_line_in_order():
    # every message a JSON object without a key written twice: the slice takes the loop-free
    # path first, and one value off the fast path sends it through the per-record loop
    m = make([col("a", "int", nullable=False), col("s", "varchar(3)")])
    recs = [rec({"a": 1, "s": "x"}, 0), rec({"a": 2, "s": "long"}, 1), rec({"a": 3}, 2),
            rec({"a": 4, "s": "y\tz"}, 3)]
    out, dead = [], []
    n = m.map_records(recs, out, dead)
    assert out == [b"1\tx\n", b"3\t\\N\n", b'4\t"y\tz"\n']
    assert n == sum(map(len, out))
    assert [(d.offset, category(d.reason)) for d in dead] == [(1, "too_long")]


def test_records_are_not_wrapped_or_mutated():
    m = make([col("a", "int")])
    r = rec({"a": 1})
    before = tuple(r)
    m.map_records([r], [], [])
    assert tuple(r) == before


# ------------------------------------------------------------------ json passthrough

def test_json_passthrough_keeps_original_bytes():
    m = make([col("a", "decimal(38,10)"), col("b", "varchar(5)")], fmt="json")
    raw = b'{"a": 1234567890123456789.0123456789, "b":"x/y", "extra":  [1, 2]}'
    assert run(m, rec(raw))[0] == raw + b"\n"
    assert m.body_columns == ["a", "b"]


def test_json_passthrough_reserializes_pretty_printed_input():
    m = make([col("a", "int")], fmt="json")
    pretty = b'{\r\n  "a": 1,\n  "b": {"c": [1,\n 2]},\n  "d": 1.10,\n  "s": "x \\" y"\n}\n'
    line, _ = run(m, rec(pretty))
    assert line == b'{"a":1,"b":{"c":[1,2]},"d":1.10,"s":"x \\" y"}\n'   # compact, number text kept
    raw_ctrl = b'{"a": "x\ny"}'                              # raw newline inside a string
    line, _ = run(m, rec(raw_ctrl))
    assert line == b'{"a":"x\\ny"}\n'


def test_json_passthrough_dead_letters():
    m = make([col("a", "int")], fmt="json")
    for r, cat in [(rec(None), "empty"), (rec(b"{bad"), "invalid_json"), (rec(b"[1]"), "not_object"),
                   (rec(b"null"), "not_object")]:
        _, dead = run(m, r)
        assert category(dead.reason) == cat
    # no type conversion client side: Doris judges the values
    assert run(m, rec(b'{"a":"many"}'))[0] == b'{"a":"many"}\n'
    assert run(m, rec(b'{"a":%d}' % 2**100))[0] == b'{"a":%d}\n' % 2**100


def test_json_with_paths_and_kafka_metadata():
    cols = [col("uid", "bigint"), col("src", "varchar(20)"), col("off", "bigint"),
            col("at", "datetime(3)"), col("k", "varchar(5)"), col("v", "int")]
    src = [ColumnSource("uid", ("user", "id")), ColumnSource("src", kafka="topic"),
           ColumnSource("off", kafka="offset"), ColumnSource("at", kafka="timestamp"),
           ColumnSource("k", kafka="key")]
    m = make(cols, fmt="json", sources=src)
    raw = b'{"user": {"id": 7}, "v": 1.50} '
    line, _ = run(m, rec(raw, offset=5, key=b"kk"))
    assert line == (b'{"user": {"id": 7}, "v": 1.50,"uid":7,"src":"events","off":5,'
                    b'"at":"2024-05-01 12:51:30.123","k":"kk"}\n')
    line, _ = run(m, rec(b"{}", offset=5))                 # path missing: key left out for Doris
    assert json.loads(line) == {"src": "events", "off": 5, "at": "2024-05-01 12:51:30.123", "k": None}
    line, _ = run(m, rec(b'{"user": {"id": 7}, "src": "mine"}', offset=5))   # key clash: rewritten
    assert json.loads(line)["src"] == "events" and b"\n" not in line[:-1]


# ------------------------------------------------------------------ headers, columns, compile once

def test_csv_headers():
    m = make([col("a", "int"), col("b", "varchar(3)")], strict_mode=False, tz="Asia/Shanghai")
    assert m.headers() == {"format": "csv", "columns": "`a`,`b`", "column_separator": "\\x09",
                           "line_delimiter": "\\x0a", "enclose": '"', "escape": "\\", "trim_double_quotes": "true",
                           "strict_mode": "false", "timezone": "Asia/Shanghai"}
    assert m.body_columns == ["a", "b"] and [c.name for c in m.columns] == ["a", "b"]
    m.headers()["format"] = "x"
    assert m.headers()["format"] == "csv"
    # every value must be sendable as an HTTP header (http.client refuses control characters)
    assert all(v.isprintable() and v == v.strip() for v in m.headers().values())


def test_json_headers():
    m = make([col("a", "int")], fmt="json")
    assert m.headers() == {"format": "json", "read_json_by_line": "true",
                           "strip_outer_array": "false", "strict_mode": "true", "timezone": "UTC"}


def test_unknown_format_is_a_config_error():
    with pytest.raises(ConfigError, match="csv"):
        config_from_dict({**MINIMAL, "mapping": {"format": "parquet"}}, env={})


def test_converters_compiled_once_per_mapper(monkeypatch):
    compiled = []
    real = Mapper._compile
    monkeypatch.setattr(Mapper, "_compile",
                        lambda self, plain=False: compiled.append((self, plain)) or real(self, plain))
    m = make([col("a", "int"), col("s", "varchar(5)")])
    # one function for any slice, and one for slices of plain text (a text column has a shortcut)
    assert sorted(compiled, key=lambda c: c[1]) == [(m, False), (m, True)]
    fast, fast_plain = m._fast, m._fast_plain
    for i in range(3):
        m.map_records([rec({"a": i, "s": "x"}), rec({"a": "bad"})], [], [])
        m.map_records([rec({"a": i, "s": "\u00e9"}), rec({"a": i, "s": "y"})], [], [])
        m.line_for(rec({"a": i}))
    assert len(compiled) == 2 and m._fast is fast and m._fast_plain is fast_plain
    compiled.clear()
    assert make([col("a", "int")])._fast_plain is None and [p for _, p in compiled] == [False]


def test_the_plain_text_function_drops_the_per_value_text_tests():
    """What the shortcut is for: in a slice _plain_text proved, a text field is tested by its
    length alone; the general function keeps the tests that text can need."""
    m = make([col("a", "int"), col("s", "varchar(5)")])
    assert {"isprintable", "isascii"} <= set(m._fast.__code__.co_names)
    assert not {"isprintable", "isascii"} & set(m._fast_plain.__code__.co_names)


def test_empty_slice():
    m = make([col("a", "int")])
    out, dead = [], []
    assert m.map_records([], out, dead) == 0 and out == [] and dead == []


def test_bench_profiles_take_the_fast_path_and_match_the_general_path():
    """The common shapes must not fall back to the general path (a silent slowdown)."""
    import random

    from tests.stack.profiles import LARGE_COLUMNS, PROFILES, SMALL_COLUMNS, columns_for
    rng = random.Random(3)
    for profile, spec in (("small", SMALL_COLUMNS), ("large", LARGE_COLUMNS)):
        m = make(columns_for(spec))
        recs = [rec(PROFILES[profile][1](i, rng), offset=i) for i in range(300)]
        calls = []
        general = m._general
        m._general = lambda r: calls.append(r) or general(r)
        out, dead = [], []
        m.map_records(recs, out, dead)
        assert dead == [] and len(out) == len(recs)
        assert calls == [], (profile, len(calls))
        assert out == [general(r) for r in recs]


def auto_id():
    return Column("id", T("bigint"), False, None, True, auto_increment=True)


def test_auto_increment_column_the_message_lacks_is_left_to_doris():
    for missing in ("default", "zero"):
        m = make([auto_id(), col("v", "int")], missing=missing)
        assert m.body_columns == ["v"] and m.headers()["columns"] == "`v`"
        assert run(m, rec({"v": 1}))[0] == b"1\n"
        assert run(m, rec({"v": 1, "id": None}))[0] == b"1\n"
        assert m.when_missing("id") == "Doris numbers it (AUTO_INCREMENT)"
    _, dead = run(m, rec({"id": 7, "v": 1}))             # its own id would be dropped: say so
    assert category(dead.reason) == "conversion" and dead.column == "id"
    assert "mapping.columns" in dead.reason and "id=7" in dead.reason
    m = make([auto_id(), col("v", "int")], fmt="json")
    assert run(m, rec(b'{"v":1}'))[0] == b'{"v":1}\n'        # Doris numbers it
    assert run(m, rec(b'{"id":7,"v":1}'))[0] == b'{"id":7,"v":1}\n'


def test_auto_increment_column_listed_in_mapping_columns_is_loaded_and_never_zero():
    m = make([auto_id(), col("v", "int")], sources=[ColumnSource("id", ("id",))], missing="zero")
    assert m.body_columns == ["id", "v"]
    assert run(m, rec({"id": 7, "v": 1}))[0] == b"7\t1\n"
    _, dead = run(m, rec({"v": 1}))
    assert category(dead.reason) == "missing" and dead.column == "id"


def test_columns_header_quotes_names_as_doris_parses_them():
    m = make([col("a,b", "int"), col("we`ird", "int"), col("key", "int"), col("日本", "int")])
    assert m.headers()["columns"] == "`a,b`,`we``ird`,`key`,`日本`"
    assert m.body_columns == ["a,b", "we`ird", "key", "日本"]


def test_odd_column_names_and_keys():
    name = 'we\'ird "name"\\'
    m = make([col(name, "int"), col("x", "varchar(5)")],
             sources=[ColumnSource("x", ("a.b", "c'd"))])
    assert run(m, rec({name: 1, "a.b": {"c'd": "ok"}}))[0] == b"1\tok\n"


def test_a_duplicate_two_objects_deep_in_a_slice_shaped_alike_is_found():
    """The slice check sums the sizes of objects at the key paths the last clean message had
    (any depth): a key written twice two levels down must still be its one dead letter."""
    for fmt in ("csv", "json"):
        m = make([col("a", "int")], fmt=fmt)
        clean = [b'{"a":%d,"n":{"m":{"x":1,"y":2},"k":3}}' % i for i in range(6)]
        out, dead = [], []
        m.map_records([rec(v, offset=i) for i, v in enumerate(clean)], out, dead)
        assert not dead and len(out) == 6
        values = list(clean)
        values[2] = b'{"a":2,"n":{"m":{"x":1,"x":2},"k":3}}'
        out, dead = [], []
        m.map_records([rec(v, offset=i) for i, v in enumerate(values)], out, dead)
        assert [d.offset for d in dead] == [2] and len(out) == 5, fmt
        assert dead[0].reason.startswith("duplicate_key: key 'n.m.x' appears twice")
