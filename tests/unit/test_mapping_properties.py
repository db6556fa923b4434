"""Property tests of lib/mapping.py: random JSON values and random bytes, every column type.

* the Mapper never raises: a record loads or is a dead letter with a documented category;
* the generated fast path gives exactly the reference path's line or dead letter;
* every CSV line it emits is read back by the Doris emulator's CSV reader (with the headers the
  Mapper sends) into the value the conversion intended, and the emulator's converter accepts it.
"""
from __future__ import annotations

import json
from collections import namedtuple
from decimal import ROUND_HALF_UP, Context, Decimal

import pytest
import ujson
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sinker_lib.config import MappingConfig
from sinker_lib.dead_letter import category
from sinker_lib.doris_types import Column, parse_type
from sinker_lib.mapping import Bad, Mapper
from tests.doris_emulator import loader
from tests.doris_emulator.schema import Column as EmuColumn
from tests.doris_emulator.schema import TableDef

Rec = namedtuple("Rec", "topic partition offset timestamp key value")
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TYPES = ["tinyint", "smallint", "int", "bigint", "largeint", "boolean", "float", "double",
         "decimal(10,2)", "decimal(20,4)", "decimal(38,10)", "char(4)", "varchar(8)", "string",
         "date", "datetime", "datetime(3)", "datetime(6)", "json", "variant", "array<int>",
         "ipv4", "hll"]
# what a dead letter may say (the first word of its reason), and which ones name a column
MESSAGE_LEVEL = {"empty", "invalid_json", "not_object", "duplicate_key"}
COLUMN_LEVEL = {"conversion", "out_of_range", "too_long", "invalid_date", "null", "missing"}

NUMBER_TEXT = st.sampled_from(["1.10", "1e3", "-0", "-0.0", "1E+2", "2.50e1", "1.2345678901234567e17",
                               "1e400", "-1e400", "1e999999999", "0.1", "12345678901234567890.5",
                               "NaN", "Infinity", "-Infinity", "9223372036854775808", "1.5"])
DATE_TEXT = st.builds(
    lambda y, mo, d, h, mi, s, frac, zone, sep: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}"
                                                f"{frac}{zone}",
    st.integers(0, 10000), st.integers(0, 13), st.integers(0, 32), st.integers(0, 24),
    st.integers(0, 60), st.integers(0, 60), st.sampled_from(["", ".5", ".9999", ".1234567", ".05"]),
    st.sampled_from(["", "Z", "+08:00", "-05:30", "+24:00", "+23:59", "-0130"]),
    st.sampled_from([" ", "T"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(-(2**130), 2**130),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), DATE_TEXT,
                    st.sampled_from(["2024-02-29", "2024-05-01 12:34:56", "12.345", " 7 ", "true",
                                     "\\N", 'a"b', "x\ty", "a\nb", "\\", "日本語", "{\"a\": 1}", "[1]"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)


def body(value) -> bytes:
    """{"k": 1, "c": value, "z": "end"} as JSON text (NaN/Infinity as Python writes them)."""
    return b'{"k": 1, "c": ' + json.dumps(value).encode() + b', "z": "end"}'


def mapper(raw: str, fmt: str = "csv", **kw) -> Mapper:
    cols = [Column("k", parse_type("int"), False), Column("c", parse_type(raw), True),
            Column("z", parse_type("varchar(3)"), True)]
    return Mapper(cols, MappingConfig(format=fmt, **kw), timezone="Asia/Shanghai")


def map_one(m: Mapper, value: bytes):
    """(line, dead letter) for one record; checks the invariants every record must keep."""
    r = Rec("t", 0, 0, 1_714_567_890_123, None, value)
    out, dead = [], []
    n = m.map_records([r], out, dead)                      # must never raise
    assert len(out) + len(dead) == 1 and n == sum(map(len, out))
    if dead:
        d = dead[0]
        cat = category(d.reason)
        assert cat in MESSAGE_LEVEL | COLUMN_LEVEL, d.reason
        if cat in COLUMN_LEVEL:
            assert d.column in ("k", "c", "z") and d.reason.startswith(f"{cat}: "), d.reason
        assert d.value == value
    if m.format == "csv":
        try:
            ref = m._general(r)
        except Bad as b:
            assert dead and (dead[0].reason, dead[0].column) == (b.reason, b.column)
        else:
            assert out == [ref], f"fast {out} != reference {ref}"
    return (out[0] if out else None), (dead[0] if dead else None)


def emulator_row(m: Mapper, raw: str, line: bytes) -> list:
    """The line read back by the emulator's CSV reader and converted by its per-type converters."""
    spec = loader.parse_spec({k.lower(): v for k, v in m.headers().items()})
    rows = list(loader._csv_lines(spec, line.decode()))
    assert len(rows) == 1, rows
    fields, _, null = rows[0]
    assert spec.columns == m.body_columns and len(fields) == len(m.body_columns), (fields, line)
    t = parse_type(raw)
    emu = [EmuColumn("k", "int", "INT"), EmuColumn("c", raw, t.base, t.length, t.precision, t.scale),
           EmuColumn("z", "varchar(3)", "VARCHAR", 3)]
    out = []
    for c, f in zip(emu, fields):
        if f is None or f == null:
            out.append(None)
        else:
            out.append(loader.text_converter(c, spec.tz)(f))   # ConvError: Doris would filter the row
    return out


def intended(raw: str, value):
    """What the emulator must hold for column c, where the rule is simple to state; else ...."""
    b = parse_type(raw).base
    if b in ("CHAR", "VARCHAR", "STRING") and type(value) is str:
        return value
    if b in ("TINYINT", "SMALLINT", "INT", "BIGINT", "LARGEINT") and type(value) is int:
        return value
    if b == "BOOLEAN" and type(value) is bool:
        return int(value)
    if b == "DOUBLE" and type(value) is float:
        return value
    if b == "DECIMAL" and type(value) is int:
        return format(Decimal(value).quantize(Decimal(1).scaleb(-parse_type(raw).scale),
                                              rounding=ROUND_HALF_UP, context=Context(prec=100)), "f")
    if b == "JSON" and type(value) in (dict, list):
        return "JSON", value
    return ...


@pytest.mark.parametrize("raw", TYPES)
@PROPS
@given(value=VALUES)
def test_any_json_value_loads_exactly_or_is_a_dead_letter(raw, value):
    m = mapper(raw)
    line, dead = map_one(m, body(value))
    if line is None:
        assert category(dead.reason) != "duplicate_key", dead.reason    # json.dumps repeats no key
        return
    k, c, z = emulator_row(m, raw, line)
    assert (k, z) == (1, "end")
    want = intended(raw, value)
    if want is ...:
        return
    if type(want) is tuple:
        assert json.loads(c) == want[1]
    else:
        assert c == want, (raw, value, line)


@pytest.mark.parametrize("raw", TYPES)
@PROPS
@given(text=NUMBER_TEXT)
def test_number_texts_load_exactly_or_are_dead_letters(raw, text):
    m = mapper(raw)
    value = b'{"k": 1, "c": ' + text.encode() + b', "z": "end"}'
    line, dead = map_one(m, value)
    if line is None:
        return
    _, c, _ = emulator_row(m, raw, line)
    b = parse_type(raw).base
    if b in ("CHAR", "VARCHAR", "STRING"):
        assert c == ("0" if text == "-0" else text)        # the producer's text (an int -0 is 0)
    elif b in ("TINYINT", "SMALLINT", "INT", "BIGINT", "LARGEINT"):
        assert Decimal(c) == Decimal(text)                 # only exactly integral texts load


@pytest.mark.parametrize("raw", ["char(4)", "varchar(8)", "string"])
@PROPS
@given(text=NUMBER_TEXT)
def test_number_texts_in_json_format_reach_string_columns_as_written(raw, text):
    """format: json sends the message as is, and Doris gives a string column the number as written
    (the emulator reads it as Doris does): 1.10 stays 1.10, -0 stays -0; NaN/Infinity are refused."""
    m = mapper(raw, "json")
    line, dead = map_one(m, b'{"k": 1, "c": ' + text.encode() + b', "z": "end"}')
    assert dead is None and line is not None
    t = parse_type(raw)
    tbl = TableDef(db="d", name="t", keys_type="DUPLICATE", key_columns=["k"], ddl="", properties={},
                   columns=[EmuColumn("k", "int", "INT", nullable=False),
                            EmuColumn("c", raw, t.base, t.length), EmuColumn("z", "varchar(3)", "VARCHAR", 3)])
    spec = loader.parse_spec({k.lower(): v for k, v in m.headers().items()})
    out = loader.run(spec, loader.plan(spec, tbl), line)
    if text in ("NaN", "Infinity", "-Infinity"):
        assert out.filtered == 1 and not out.rows
    elif len(text.encode()) > (t.length or loader.STRING_LIMIT):
        assert out.filtered == 1 and "too long" in out.errors[0][0]
    else:
        assert out.rows == [(1, text, "end")], out.errors


@pytest.mark.parametrize("fmt", ["csv", "json"])
@PROPS
@given(obj=st.dictionaries(st.text(max_size=3), VALUES, min_size=1, max_size=4), data=st.data(),
       nested=st.booleans(), space=st.sampled_from([":", " : ", ": ", "\t:", " \t :"]))
def test_a_key_written_twice_is_always_a_dead_letter_naming_it(fmt, obj, data, nested, space):
    """Wherever a key repeats (top level or nested, any spacing, same or other value), both formats
    dead-letter the message and name the key; nothing is loaded."""
    pairs = list(obj.items())
    key, value = pairs[data.draw(st.integers(0, len(pairs) - 1))]
    again = data.draw(st.sampled_from([value, "other"]))
    pairs.insert(data.draw(st.integers(0, len(pairs))), (key, again))
    text = "{" + ",".join(json.dumps(k) + space + json.dumps(v) for k, v in pairs) + "}"
    if nested:
        text = '{"k": 1, "c": ' + text + ', "z": "end"}'
    line, dead = map_one(mapper("json", fmt), text.encode())
    assert line is None and category(dead.reason) == "duplicate_key", dead and dead.reason
    assert repr(f"c.{key}" if nested else key) in dead.reason


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("raw", ["int", "string", "datetime(3)", "json", "decimal(38,10)"])
@PROPS
@given(value=st.binary(max_size=40) | st.builds(lambda a, b: a + b, st.just(b'{"c": '),
                                                  st.binary(max_size=20)))
def test_random_bytes_never_raise(fmt, raw, value):
    m = mapper(raw, fmt)
    line, _ = map_one(m, value)
    if line is not None and fmt == "json":
        assert line.endswith(b"\n") and b"\n" not in line[:-1] and b"\r" not in line
        json.loads(line)                                   # sent as one valid JSON line
        line.decode("utf-8")


@PROPS
@given(values=st.lists(VALUES, min_size=1, max_size=5), bool_as_int=st.booleans())
def test_a_slice_maps_like_its_records_one_by_one(values, bool_as_int):
    """Batching never changes a line: map_records over a slice == line_for per record."""
    m = mapper("decimal(20,4)", bool_as_int=bool_as_int)
    recs = [Rec("t", 0, i, 1, None, body(v)) for i, v in enumerate(values)]
    out, dead = [], []
    m.map_records(recs, out, dead)
    singles = [m.line_for(r) for r in recs]
    assert [x for x in singles if x is not None] == out
    assert [r.offset for r, x in zip(recs, singles) if x is None] == [d.offset for d in dead]


@PROPS
@given(values=st.lists(st.one_of(VALUES.map(body), st.binary(max_size=12),
                                 st.sampled_from([b'{"k": 01}', b'{"c": "\\ud800"}', b'{"c": "\t"}',
                                                  b'{"k": -}', b'{"c": 1.}'])), min_size=1, max_size=6))
def test_a_json_slice_maps_like_its_records_one_by_one(values):
    """The json format checks a slice decoded by orjson and a message orjson refuses (those
    listed: ujson takes them) by ujson: a message is judged the same alone as in any slice."""
    m = Mapper([Column(name, parse_type(raw), True) for name, raw in
                (("k", "int"), ("c", "string"), ("z", "varchar(3)"))], MappingConfig(format="json"))
    recs = [Rec("t", 0, i, 1, None, v) for i, v in enumerate(values)]
    out, dead = [], []
    m.map_records(recs, out, dead)
    singles = [m.line_for(r) for r in recs]
    assert [x for x in singles if x is not None] == out
    assert [r.offset for r, x in zip(recs, singles) if x is None] == [d.offset for d in dead]


@pytest.mark.parametrize("fmt", ["csv", "json"])
@PROPS
@given(values=st.lists(st.one_of(VALUES.map(body), st.binary(max_size=12),
                                 st.just(b'{"k": 1, "k": 2}'), st.just(b'{"k":\n1}'),
                                 st.just(b'{"c": {"a": 1, "a": 2}}')), min_size=1, max_size=6))
@example(values=[body(":")])      # the key test cannot rule a repeat out; the line is the value
def test_a_slice_is_called_verbatim_only_when_its_lines_are_its_values(fmt, values):
    """A batch keeps the values of a verbatim slice only in its lines (lib/records.py's Slice):
    map_slice may say so only when each record became exactly its value and a newline, and
    says so for every slice of plain one-line objects (the json passthrough's common case)."""
    # every column nullable: no NOT NULL column to check, so json is the plain passthrough
    m = Mapper([Column(name, parse_type(raw), True) for name, raw in
                (("k", "int"), ("c", "string"), ("z", "varchar(3)"))], MappingConfig(format=fmt))
    recs = [Rec("t", 0, i, 1, None, v) for i, v in enumerate(values)]
    out, dead = [], []
    n, verbatim = m.map_slice(recs, out, dead)
    exact = out == [v + b"\n" for v in values]
    if verbatim:
        assert exact and n == sum(map(len, out))
    if fmt == "json" and all(v.startswith(b'{"k": 1, "c": ') for v in values) and exact:
        assert verbatim


@pytest.mark.parametrize("fmt", ["csv", "json"])
@PROPS
@given(tokens=st.lists(st.text(alphabet="-+.eE019", min_size=1, max_size=6), min_size=1, max_size=4),
       big=st.booleans(), wrap=st.booleans())
def test_a_message_is_a_dead_letter_as_invalid_json_exactly_when_it_is_not_json(fmt, tokens, big, wrap):
    """ujson reads number texts JSON forbids (``-``, ``01``, ``1.``) as values nobody sent. In any
    slice, beside an integer beyond 64 bits or not, a message ujson reads is an invalid_json dead
    letter exactly when the standard library's reader (strict about numbers) refuses it."""
    values = []
    for t in tokens:
        v = (b'{"k": 1, "c": ' + (f"[{t}]" if wrap else t).encode() + b', "s": "01: -. 1.", "big": '
             + (b"123456789012345678901234" if big else b"7") + b"}")
        try:
            ujson.loads(v)
        except ValueError:
            continue
        values.append(v)
    assume(values)
    m = Mapper([Column(name, parse_type(raw), True) for name, raw in
                (("k", "int"), ("c", "string"), ("s", "varchar(10)"), ("big", "largeint"))],
               MappingConfig(format=fmt))
    out, dead = [], []
    m.map_records([Rec("t", 0, i, 1, None, v) for i, v in enumerate(values)], out, dead)
    refused = set()
    for i, v in enumerate(values):
        try:
            json.loads(v, strict=False)
        except ValueError:
            refused.add(i)
    assert {d.offset for d in dead if d.reason.startswith("invalid_json")} == refused


# every printable ASCII character, and what a plain slice must not hold: controls (a raw tab is
# valid to ujson), DEL, a backslash (any escape), non-ASCII written raw or escaped
TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)
               | st.sampled_from("\t\x01\x7f\\\"é日\u2028"), max_size=10)


@pytest.mark.parametrize("raw", ["char(4)", "varchar(8)", "string"])
@PROPS
@given(texts=st.lists(TEXT, min_size=1, max_size=5), ascii_only=st.booleans(), raw_tab=st.booleans())
def test_a_plain_text_slice_takes_the_trusting_shortcut_and_maps_like_the_reference(raw, texts,
                                                                                   ascii_only, raw_tab):
    """A csv slice of printable ASCII without a backslash tests a text field by its length alone
    (lib/mapping.py _plain_text): its lines are the reference path's, every such slice whose keys
    the slice check proves takes it (else each record is decided alone), and a slice with anything
    else in its text does not."""
    m = mapper(raw)
    plain_calls = []
    plain = m._fast_plain
    m._fast_plain = lambda o, r: plain_calls.append(r) or plain(o, r)
    values = [body(t) if ascii_only else
              b'{"k": 1, "c": ' + json.dumps(t, ensure_ascii=False).encode() + b', "z": "end"}'
              for t in texts]
    if raw_tab:
        values = [v.replace(b"\\t", b"\t") for v in values]
    recs = [Rec("t", 0, i, 1, None, v) for i, v in enumerate(values)]
    out, dead = [], []
    m.map_records(recs, out, dead)
    ref = []
    for r in recs:
        try:
            ref.append(m._general(r))
        except Bad:
            pass
    assert out == ref and len(out) + len(dead) == len(recs)
    text = b"".join(values)
    printable = all(0x20 <= b < 0x7F for b in text) and b"\\" not in text
    if plain_calls:
        assert printable
    elif printable and not dead and m._nested.slice_clean(text, [json.loads(v) for v in values]):
        pytest.fail(f"a plain slice took the general conditions: {values}")


def test_text_backslash_n_is_not_null():
    """The text \\N is sent enclosed with its backslash escaped; Doris decides NULL before it
    removes escapes (csv_reader.cpp deserialize_nullable_string), so it loads the text."""
    m = mapper("string")
    line, _ = map_one(m, body("\\N"))
    assert line == b'1\t"\\\\N"\tend\n'
    assert emulator_row(m, "string", line)[1] == "\\N"
