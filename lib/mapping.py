"""Kafka records -> Stream Load body lines (CSV or JSON lines), and dead letters for the rest.

This is the hot path (see the CPU budget in the design notes), so:

* ``format: json`` is a passthrough: each value is only checked to be a JSON object that writes no
  key twice (both formats dead-letter one that does) and sent as its original bytes; Doris converts
  the types. Bytes are rewritten only when they hold a newline, or
  when the config adds fields (paths, Kafka metadata), which are appended as text before the
  closing brace so the original number text survives.
* ``format: csv`` maps client side with converters compiled ONCE per Mapper: a generated function
  with ``type(v) is int``-style fast paths for the common shapes of each column. Anything the fast
  path does not recognise (a missing key, a NULL in a NOT NULL column, a string needing quotes, a bad
  value ...) falls back to the general per-column converters, which are the reference behaviour;
  the fast path only ever takes values for which it produces the same text.

Number text: the decoders (orjson, ujson; `loads`) turn JSON numbers into binary floats. For a
float with <= 15 significant digits ``repr`` gives back the JSON text, which is exact enough for
DECIMAL(p<=15). When a float reaches a DECIMAL(p>15), an integer or a string column (or a
NaN/Infinity reaches any of them), that one message is decoded again with
``json.loads(parse_float=...)`` keeping each number's text (``ExactFloat``): the DECIMAL is built
from the original digits, an integer column takes only a text that is exactly an integer
(``1e3``), a string column keeps ``1.10``, and ``1e999`` is told from ``Infinity``. Messages
that send those values as strings or integers never pay for this.
FLOAT/DOUBLE values are written as ujson's shortest round-trip text (the digits of ``repr``,
exponent as ``1e-7``), which is about twice as fast as ``repr``.

The rules per type, and what becomes a dead letter, are the README's type table.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections import deque
from datetime import date, datetime, timedelta, timezone as _fixed_tz
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from itertools import repeat
from operator import itemgetter
from typing import NamedTuple

import orjson
import ujson

from . import dead_letter, envelope
from .dead_letter import DeadLetter
from .errors import ConfigError
from .records import fields

NULL = "\\N"
STRING_LIMIT = 1048576            # Doris's default string_type_length_soft_limit_bytes

_INT_BITS = {"TINYINT": 8, "SMALLINT": 16, "INT": 32, "BIGINT": 64, "LARGEINT": 128}
_JSONISH = {"JSON", "VARIANT", "ARRAY", "MAP", "STRUCT"}
_TEXT = {"CHAR", "VARCHAR", "STRING", "IPV4", "IPV6"}
_FLOAT_MAX = 3.4028234663852886e38
_CONSTANTS = ("NaN", "Infinity", "-Infinity")   # what Python's json reads beyond JSON

_SPECIAL = re.compile(r'[\t\n\r"\\]')
_INT_RE = re.compile(r"[+-]?\d+")
_NUM_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DT_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[Tt ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
                    r"\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?")
_EXPR_DEFAULT = re.compile(r"(?i)(current_timestamp|now|localtimestamp|current_date|curdate)"
                           r"\s*(\(\s*\d*\s*\))?")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
# strings kept, whitespace dropped
_JSON_SPACE = re.compile(b"(" + _JSON_STRING.pattern + rb")|[ \t\r\n]+")
# where a value starts (after ":", "," or "["), a number token ujson reads and JSON forbids: a
# leading zero, a "-" or "." without a digit after it (checked against every such token ujson
# reads of up to 7 characters)
_BAD_NUMBER = re.compile(rb"[:,\[][ \t\r\n]*((?:-?0[0-9]|(?=[-0-9])[-0-9.eE+]*?(?:-(?![0-9])|"
                         rb"\.(?![0-9])))[-0-9.eE+]*)(?=[ \t\r\n]*[,}\]])")
_OFFSET_RE = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?")

_DATES: set[str] = set()          # canonical YYYY-MM-DD strings already validated (shared, bounded)
_DATES_MAX = 200_000
_DEC_CTX = Context(prec=100, rounding=ROUND_HALF_UP)
_MISSING = object()
_ONLY_DICT, _ONLY_BYTES = {dict}, {bytes}
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))
# digits and "-" -> "0", the rest -> "."
_DIGIT_RUN = bytes(0x30 if 0x30 <= i <= 0x39 or i == 0x2D else 0x2E for i in range(256))
_LONG_RUN = b"0" * 20


class Bad(Exception):
    """A record cannot be mapped: ``reason`` is "<category>: <detail>" for the dead letter."""

    def __init__(self, category: str, detail: str, column: str | None = None):
        super().__init__(f"{category}: {detail}")
        self.reason = f"{category}: {detail}"
        self.column = column


class Fast(NamedTuple):
    """A converter's shortcut for the generated code: when ``cond`` holds, the field is ``expr``.

    Both are Python expressions in ``v`` (the JSON value) and in the names of ``bind``, written as
    ``{name}``; the compiler gives each bound object a name unique to its column. ``plain``, when
    set, stands for ``cond`` in slices whose text is printable ASCII without a backslash
    (`_plain_text`): every string in them is then a CSV field as it is.
    """
    cond: str
    expr: str
    bind: dict
    plain: str = ""


class _NeedExact(Exception):
    """A DECIMAL(p>15) column got a binary float: decode this message again keeping number text."""


class ExactFloat(float):
    """A JSON number that also remembers its text (``.text``): for exact DECIMALs and integers,
    number text kept in string columns, and telling ``1e999`` (a number) from ``Infinity``."""


def _exact_float(text: str) -> ExactFloat:
    f = ExactFloat(text)
    f.text = text
    return f


def dumps(v) -> str:
    """Compact JSON text, unicode kept, slashes not escaped (what Doris stores for JSON columns)."""
    try:
        return ujson.dumps(v, ensure_ascii=False, escape_forward_slashes=False)
    except (OverflowError, TypeError, ValueError, UnicodeError):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)


_NOT_JSON_NUMBERS = frozenset(("NaN", "Infinity", "-Infinity"))


def dumps_exact(v) -> str:
    """Compact JSON text of a value decoded with ``exact=True``: every number as it was written
    (``1.10``, ``1e3``, 38-digit decimals), where ``dumps`` would print a double's text. NaN and
    Infinity are not JSON (Doris refuses the line): a Bad here, a dead letter for the caller."""
    t = type(v)
    if t is ExactFloat:
        if v.text in _NOT_JSON_NUMBERS:
            raise Bad("conversion", f"{v.text} is not a JSON number: Doris cannot read it")
        return v.text
    if t is dict:
        return "{" + ",".join(f"{dumps(k)}:{dumps_exact(x)}" for k, x in v.items()) + "}"
    if t is list:
        return "[" + ",".join(map(dumps_exact, v)) + "]"
    return dumps(v)


_float_text = ujson.dumps   # shortest round-trip text like repr(), ~2x faster; "1e-7" where repr says "1e-07"


def enc(s: str) -> str:
    """One CSV field: raw unless it holds TAB/CR/LF/quote/backslash; then enclosed and escaped."""
    if (s.isprintable() and '"' not in s and "\\" not in s) or _SPECIAL.search(s) is None:
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _is_json(text) -> bool:
    """Strict JSON (no NaN/Infinity), the way Doris's parser reads it."""
    try:
        json.loads(text, parse_constant=_reject_constant)
        return True
    except ValueError:
        return False


def _keep_strings(m) -> bytes:
    return m.group(1) or b""


def _plain_text(joined: bytes) -> bool:
    """True when JSON text holds only printable ASCII and no backslash: then none of its strings
    holds a quote (it would be escaped), an escape, a control character or a non-ASCII one, and
    each string's length is its UTF-8 size."""
    return b"\\" not in joined and not joined.translate(None, _PRINTABLE_ASCII)


# Decoding (`loads`, the one rule for mapping and routing): orjson reads only RFC 8259 JSON, and
# faster; ujson also reads numbers JSON forbids, as values nobody sent (``-`` as 0, ``012`` as 12,
# ``1.`` as 1.0; ultrajson/ultrajson#556, "wontfix"), but it reads an integer beyond 64 bits
# exactly where orjson makes it a float. So orjson decodes; ujson where the text may hold such
# an integer, after orjson has read it; and ujson alone what orjson refuses but ujson has always
# taken (NaN, Infinity, 1e400, raw control characters, lone surrogates), unless a number in it
# is not JSON.
def _long_digits(text: bytes) -> bool:
    """True when JSON text may hold an integer beyond orjson's exact range (-2**63 .. 2**64-1):
    20 digits and minus signs in a row (a nanosecond timestamp has 19 digits). ``find``, not
    ``in``: bytes' ``in`` first tries its operand as an int, which costs twice the search."""
    return text.translate(_DIGIT_RUN).find(_LONG_RUN) >= 0


def loads(value):
    """One message decoded exactly. Raises ValueError (or TypeError) when it is not JSON, and
    Bad("invalid_json") for a number JSON forbids."""
    try:
        o = orjson.loads(value)
    except orjson.JSONDecodeError:
        o = ujson.loads(value)
        _check_numbers(value)
        return o
    return ujson.loads(value) if _long_digits(value) else o


def _check_numbers(value) -> None:
    """Bad when a number in JSON text breaks the grammar; its strings are blanked first, and no
    recursion limit applies (orjson and ujson read 1,024 levels, the standard library fewer)."""
    text = value.encode("utf-8", "surrogatepass") if type(value) is str else bytes(value)
    m = _BAD_NUMBER.search(_JSON_STRING.sub(b'""', text))
    if m is not None:
        raise Bad("invalid_json", f"{m.group(1).decode()!r} is not a JSON number (no leading "
                  "zero, a digit after '-' and after '.'): fix the producer's encoder, or send "
                  "the value as a string")


# Duplicate keys: orjson and ujson keep the last value of a key written twice in one object,
# Doris's JSON reader the first (builds before apache/doris#38146, 2024, fail the load), so such a
# message is a dead letter in both formats. Proving a message has none takes one pass over its
# bytes: every key's colon follows its closing quote and maybe whitespace, and inside a string a
# quote is escaped, so with the whitespace deleted ``":`` counts each key written at least once (a
# ``\" :`` inside a string only adds). The decoded object holds at most that many keys; when it
# holds exactly that many, no key was written twice. A whole slice takes one such count and the
# sizes of its objects (and of the objects they hold under the keys the last nested message had,
# _Nested), all at C speed. Only when that fails are the messages counted one by one, their decoded
# keys walked when the count is higher (deeper nesting, a ``\":`` inside a string, a duplicate),
# and only when those differ is the text read again to name the key.
def _written_keys(v: bytes) -> int:
    """An upper bound of the keys written in JSON text ``v``."""
    return v.translate(None, b" \t\r\n").count(b'":')


def _keys(o) -> int:
    """The keys of every object in a decoded JSON value."""
    t = type(o)
    if t is dict:
        n = len(o)
        for x in o.values():
            if type(x) is dict or type(x) is list:
                n += _keys(x)
        return n
    if t is list:
        n = 0
        for x in o:
            if type(x) is dict or type(x) is list:
                n += _keys(x)
        return n
    return 0


def _dict_paths(o, prefix: tuple = ()):
    """The key paths of the objects nested in object ``o`` (not those inside arrays), parents
    first."""
    for k, x in o.items():
        if type(x) is dict:
            yield prefix + (k,)
            yield from _dict_paths(x, prefix + (k,))


class _Nested:
    """The key paths that held objects in the last message proven free of duplicates: a slice of
    messages shaped alike is then proven with C-speed sizes (`slice_clean`)."""

    def __init__(self):
        self.keys: tuple = ()

    def clean(self, v: bytes, o) -> bool:
        """True when JSON text ``v`` certainly writes no key twice in one object (``o``: ``v``
        decoded); False means "maybe": `_duplicate_key` decides."""
        n = _written_keys(v)
        if n == len(o):
            return True
        try:
            if n != _keys(o):
                return False
        except RecursionError:
            return False
        keys = tuple(_dict_paths(o))
        if keys != self.keys:
            self.keys = keys
        return True

    def slice_clean(self, joined: bytes, objs: list) -> bool:
        """True when no message of a slice writes a key twice (``joined``: the messages' bytes,
        ``objs``: each decoded, all objects): the slice's key count equals its objects' sizes. A
        lower bound of those sizes is enough, so a message nested deeper than the last one only
        costs the per-message path."""
        n = _written_keys(joined)
        d = sum(map(len, objs))
        for path in self.keys if n != d else ():
            inner = objs
            try:
                for k in path:
                    inner = list(map(itemgetter(k), inner))
            except (KeyError, TypeError, IndexError):
                return False
            if set(map(type, inner)) != _ONLY_DICT:
                return False
            d += sum(map(len, inner))
        return n == d


class _Pairs(list):
    """One JSON object as its (key, value) pairs in text order, duplicates kept."""


def _duplicate_key(v) -> str | None:
    """A key written twice in one object of JSON text ``v``, as a dead-letter detail (its path
    and both values), or None."""
    try:
        doc = json.loads(v, object_pairs_hook=_Pairs, strict=False)
    except (ValueError, RecursionError):
        return None        # not JSON to the standard library: the decoder's own error decides
    todo = [("", doc)]
    while todo:
        path, x = todo.pop()
        items = x if type(x) is _Pairs else enumerate(x) if type(x) is list else ()
        seen: dict = {}
        for k, val in items:
            where = f"{path}.{k}" if path else str(k)
            if type(x) is _Pairs:
                if k in seen:
                    return (f"key {where!r} appears twice in one object ({_brief(seen[k])} and "
                            f"{_brief(val)}): JSON readers disagree on which one counts (ujson takes "
                            "the last, Doris the first); send each key once")
                seen[k] = val
            if type(val) is _Pairs or type(val) is list:
                todo.append((where, val))
    return None


def _brief(v) -> str:
    if type(v) is _Pairs:
        return "{...}"
    if type(v) is list:
        return "[...]"
    return _show(v)


def _show(v) -> str:
    """A value as it appears in a dead-letter reason (short)."""
    text = repr(v) if isinstance(v, str) else v.text if type(v) is ExactFloat else dumps(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _quote_name(name: str) -> str:
    """A column name for the ``columns`` header, always in backticks (backticks doubled): the FE
    parses the header as SQL, where a comma, a space or a reserved word (``key``) breaks a bare name."""
    return "`" + name.replace("`", "``") + "`"


def _an(word: str) -> str:
    return ("an " if word[:1] in "AEIOU" else "a ") + word


def _offset(text: str):
    """A fixed zone for "+08:00"-like text, or None when it is beyond ±23:59 (or not an offset)."""
    m = _OFFSET_RE.fullmatch(text)
    if m is None or int(m.group(2)) > 23 or int(m.group(3) or 0) > 59:
        return None
    delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3) or 0))
    return _fixed_tz(-delta if m.group(1) == "-" else delta)


def parse_timezone(name: str):
    """Doris's ``timezone`` value (an IANA name or an offset like +08:00) as a tzinfo."""
    if _OFFSET_RE.fullmatch(name.strip()):
        off = _offset(name.strip())
        if off is None:
            raise ConfigError(f"doris.timezone {name!r} is beyond -23:59..+23:59: use an offset "
                              "like '+08:00' or an IANA name like 'Asia/Shanghai'")
        return off
    if name.strip().upper() in ("UTC", "GMT", "Z"):
        return _fixed_tz.utc
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(name.strip())
    except Exception as e:  # noqa: BLE001 - ZoneInfo raises several kinds
        raise ConfigError(f"doris.timezone {name!r} is not a time zone: use an IANA name like "
                          f"'Asia/Shanghai' or 'UTC', or an offset like '+08:00' ({e})") from None


def _integral(text: str, bits: int) -> int | None:
    """The integer a JSON number's text denotes exactly (``1e3``, ``2.50e1``), else None.

    A number beyond the type's width is returned as a bound-breaking int without building a
    huge one (``1e999999999`` must not allocate a billion digits)."""
    d = Decimal(text)
    if not d.is_finite() or d != d.to_integral_value():
        return None
    if d.adjusted() >= bits:          # more digits than 2**bits has: certainly out of range
        return -(1 << bits) if d < 0 else 1 << bits
    return int(d)


def _valid_date(y: int, m: int, d: int) -> str | None:
    """Canonical text of a real calendar date (year 1-9999), remembered for the fast paths."""
    if not (1 <= m <= 12 and 1 <= d <= 31 and 1 <= y <= 9999):
        return None
    try:
        date(y, m, d)
    except ValueError:
        return None
    text = f"{y:04d}-{m:02d}-{d:02d}"
    if len(_DATES) < _DATES_MAX:
        _DATES.add(text)
    return text


# ---------------------------------------------------------------- converters (the reference path)

CONVERTERS = {     # what each csv converter accepts, in words (README's type table says more)
    "TINYINT": "integer (8-bit range)", "SMALLINT": "integer (16-bit range)",
    "INT": "integer (32-bit range)", "BIGINT": "integer (64-bit range)",
    "LARGEINT": "integer (128-bit range)", "BOOLEAN": "true/false/1/0 → 1/0",
    "FLOAT": "number", "DOUBLE": "number", "DECIMAL": "exact decimal, rounded half-up",
    "CHAR": "text, length in bytes", "VARCHAR": "text, length in bytes", "STRING": "text",
    "DATE": "date (ISO text or epoch)", "DATETIME": "datetime (ISO text or epoch)",
    "JSON": "JSON text", "VARIANT": "JSON text", "ARRAY": "JSON text", "MAP": "JSON text",
    "STRUCT": "JSON text", "IPV4": "text", "IPV6": "text",
}


class _Col:
    """Everything needed to fill one column: where the value comes from and how it becomes text."""

    def __init__(self, column, source, mcfg, tz, epoch_cache: dict):
        self.json = mcfg.format == "json"
        self.auto = column.auto_increment and source is None
        self.column = column
        self.name = column.name
        self.base = column.type.base
        self.kafka = source.kafka if source is not None else None
        self.path = tuple(source.path) if source is not None and source.path else (column.name,)
        self.label = f"kafka {self.kafka}" if self.kafka else ".".join(self.path)
        self.from_event = False       # debezium's sequence_from: the path is in the event, not the row
        self.required = False         # the sequence column: a change without its value is a dead letter
        self.tz = tz
        self.scale = (column.type.scale or 0) if self.base == "DATETIME" else 0
        self._epoch_cache = epoch_cache
        self.bool_as_int = mcfg.bool_as_int
        self.conv, self.fast = self._converter()
        self.zero = self._zero()
        self.null = self._null_fn(mcfg)
        self.missing, self.when_missing = self._missing_rule(mcfg)

    # --- per-type converters: value (not None) -> CSV field text, or raise Bad
    def _converter(self):
        b, t, name = self.base, self.column.type, self.name
        if b in _INT_BITS:
            return self._int_conv(b)
        if b == "BOOLEAN":
            return self._bool_conv(), Fast("v is True or v is False", "('1' if v else '0')", {})
        if b in ("FLOAT", "DOUBLE"):
            return self._float_conv(b)
        if b == "DECIMAL":
            p = t.precision if t.precision is not None else 9
            return self._decimal_conv(p, t.scale or 0)
        if b in _TEXT:
            if b in ("CHAR", "VARCHAR"):
                limit = t.length or 65533
                kind = f"{b}({limit})"
            else:
                limit, kind = STRING_LIMIT, f"{b} (Doris's string_type_length_soft_limit_bytes)"
            return self._text_conv(limit, kind)
        if b == "DATE":
            return self._date_conv(), Fast("type(v) is str and v in {dates}", "v", {"dates": _DATES})
        if b == "DATETIME":
            return self._datetime_conv(t.scale or 0)
        if b in _JSONISH:
            return self._json_conv(), None

        def unsupported(v):
            raise Bad("conversion", f"column {name}: cannot load {t.raw} from JSON "
                      "(exclude the column or give it a default)", name)
        return unsupported, None

    def _int_conv(self, b):
        name, bits = self.name, _INT_BITS[b]
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

        def conv(v):
            t = type(v)
            if t is int:
                n = v
            elif t is bool:
                return self._bool_number(v)
            elif t is ExactFloat:
                n = _integral(v.text, bits)
                if n is None:
                    raise Bad("conversion", f"column {name}: {_show(v)} is not {_an(b)}", name)
            elif t is float:
                if v - v == 0.0 and not v.is_integer():
                    raise Bad("conversion", f"column {name}: {_show(v)} is not {_an(b)}", name)
                raise _NeedExact()     # is the decimal as written integral (and how large)?
            elif t is str:
                s = v.strip()
                if not _INT_RE.fullmatch(s):
                    raise Bad("conversion", f"column {name}: {_show(v)} is not {_an(b)}", name)
                n = int(s)
            else:
                raise Bad("conversion", f"column {name}: {_show(v)} is not {_an(b)}", name)
            if not lo <= n <= hi:
                shown = v.text if t is ExactFloat else n
                raise Bad("out_of_range", f"column {name}: {shown} is outside the {b} range "
                          f"[{lo}, {hi}]", name)
            return str(n)
        return conv, Fast(f"type(v) is int and {lo} <= v <= {hi}", "v", {})

    def _bool_conv(self):
        name = self.name

        def conv(v):
            if v is True or v is False:
                return "1" if v else "0"
            if type(v) in (int, float, ExactFloat) and v in (0, 1):
                return "1" if v else "0"
            if type(v) is str:
                s = v.strip().lower()
                if s in ("true", "1"):
                    return "1"
                if s in ("false", "0"):
                    return "0"
            raise Bad("conversion", f"column {name}: {_show(v)} is not a BOOLEAN "
                      "(use true/false/1/0)", name)
        return conv

    def _float_conv(self, b):
        name = self.name
        limit = _FLOAT_MAX if b == "FLOAT" else None

        def check(f, v):
            if not math.isfinite(f):
                raise Bad("conversion", f"column {name}: {_show(v)} is not a finite {b}", name)
            if limit is not None and abs(f) > limit:
                raise Bad("out_of_range", f"column {name}: {_show(v)} is outside the {b} range", name)

        def conv(v):
            t = type(v)
            if t is bool:
                return self._bool_number(v)
            if t is int:
                try:
                    check(float(v), v)
                except OverflowError:
                    raise Bad("out_of_range", f"column {name}: {_show(v)} is outside the {b} range",
                              name) from None
                return str(v)
            if isinstance(v, float):
                check(v, v)
                return _float_text(float(v))
            if t is str and _NUM_RE.fullmatch(v.strip()):
                f = float(v.strip())
                if not math.isfinite(f):
                    raise Bad("out_of_range", f"column {name}: {_show(v)} is outside the {b} range",
                              name)
                check(f, v)
                return _float_text(f)
            raise Bad("conversion", f"column {name}: {_show(v)} is not {_an(b)}", name)
        cond = ("type(v) is float and v - v == 0.0" if limit is None
                else f"type(v) is float and -{limit!r} <= v <= {limit!r}")
        return conv, Fast(cond, "{ft}(v)", {"ft": _float_text})

    def _decimal_conv(self, p, s):
        name, kind = self.name, f"DECIMAL({p},{s})"
        quantum = Decimal(1).scaleb(-s)
        int_digits = p - s

        def conv(v):
            t = type(v)
            if t is str:
                text = v.strip()
                if not _NUM_RE.fullmatch(text):
                    raise Bad("conversion", f"column {name}: {_show(v)} is not {_an(kind)}", name)
            elif t is int:
                text = str(v)
            elif t is ExactFloat:
                text = v.text
            elif t is float:
                if p > 15 or not math.isfinite(v):    # the digits, or the text of 1e999 vs NaN
                    raise _NeedExact()
                text = repr(v)
            elif t is bool and self.bool_as_int:
                text = "1" if v else "0"
            else:
                raise Bad("conversion", f"column {name}: {_show(v)} is not {_an(kind)}", name)
            d = Decimal(text)
            if not d.is_finite():
                raise Bad("conversion", f"column {name}: {_show(v)} is not {_an(kind)}", name)
            if d and d.adjusted() >= int_digits:
                raise Bad("out_of_range", f"column {name}: {_show(v)} has {d.adjusted() + 1} integer "
                          f"digits, {kind} holds {int_digits}", name)
            try:
                q = d.quantize(quantum, context=_DEC_CTX)
            except InvalidOperation:
                raise Bad("out_of_range", f"column {name}: {_show(v)} cannot be rounded to {kind}",
                          name) from None
            if q and q.adjusted() >= int_digits:
                raise Bad("out_of_range", f"column {name}: {_show(v)} rounds to {q}, more than "
                          f"{int_digits} integer digits for {kind}", name)
            return format(q, "f")
        ipart = "0" if int_digits <= 0 else f"(?:0|[1-9][0-9]{{0,{int_digits - 1}}})"
        frac = rf"\.[0-9]{{{s}}}" if s else ""
        canonical = re.compile(f"-?{ipart}{frac}").fullmatch
        return conv, Fast("type(v) is str and {dec}(v) is not None", "v", {"dec": canonical})

    def _text_conv(self, limit, kind):
        name = self.name

        def conv(v):
            t = type(v)
            if t is str:
                s = v
            elif t is bool:
                s = "true" if v else "false"
            elif t is int:
                s = str(v)             # the integer's text, except that -0 reads as 0
            elif t is ExactFloat:
                s = v.text             # "1.10" stays "1.10": the text the producer wrote
                if s in _CONSTANTS:
                    raise Bad("conversion", f"column {name}: {s} is not JSON (send null or a "
                              "string)", name)
            elif t is float:
                raise _NeedExact()
            else:
                s = dumps(v)
            if s.isascii():
                n = len(s)
            else:
                try:
                    n = len(s.encode())
                except UnicodeEncodeError:
                    raise Bad("conversion", f"column {name}: {_show(v)} is not valid UTF-8 text "
                              "(lone surrogate)", name) from None
            if n > limit:
                raise Bad("too_long", f"column {name}: {n} bytes, {kind} holds {limit}", name)
            return enc(s)
        quick = limit // 4          # any str of this many characters fits in `limit` UTF-8 bytes
        cond = (f"type(v) is str and (len(v) <= {quick} or (v.isascii() and len(v) <= {limit})) "
                "and v.isprintable() and '\"' not in v and '\\\\' not in v")
        return conv, Fast(cond, "v", {}, plain=f"type(v) is str and len(v) <= {limit}")

    def _json_conv(self):
        name = self.name

        def conv(v):
            t = type(v)
            if t is dict or t is list:
                try:
                    s = dumps(v)
                    s.encode()
                except UnicodeError:
                    raise Bad("conversion", f"column {name}: value is not valid UTF-8 text", name) from None
                if ("NaN" in s or "Infinity" in s) and not _is_json(s):
                    raise Bad("conversion", f"column {name}: {_show(v)} holds NaN or Infinity, which "
                              "are not JSON (send null or a string)", name)
                # JSON text has no raw control characters: only quotes and backslashes need care
                if '"' in s or "\\" in s:
                    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
                return s
            if t is str:
                head = v.lstrip()[:1]
                if head in ("{", "[") and _is_json(v):
                    return enc(v)
                return enc(dumps(v))
            if t is bool:
                return "true" if v else "false"
            if isinstance(v, float):
                if not math.isfinite(v):
                    raise Bad("conversion", f"column {name}: {_show(v)} is not JSON (send null or "
                              "a string)", name)
                return _float_text(float(v))
            return enc(dumps(v))
        return conv

    def _bool_number(self, v: bool) -> str:
        if not self.bool_as_int:
            raise Bad("conversion", f"column {self.name}: {_show(v)} is a boolean, not "
                      f"{_an(self.base)} (set mapping.bool_as_int: true to load true/false as 1/0)",
                      self.name)
        return "1" if v else "0"

    # --- dates and times
    def _epoch_text(self, v, ms: bool | None):
        """Epoch seconds/ms -> ("YYYY-MM-DD HH:MM:SS", microseconds) in the Doris time zone."""
        if type(v) is int:
            if ms is None:
                ms = abs(v) > 10**11
            if ms:
                secs, micro = divmod(v, 1000)
                micro *= 1000
            else:
                secs, micro = v, 0
        else:
            f = float(v)
            if not math.isfinite(f):
                raise ValueError("not finite")
            if ms is None:
                ms = abs(f) > 1e11
            secs, micro = divmod(round(f * (1000 if ms else 1_000_000)), 1_000_000)
        cache = self._epoch_cache
        text = cache.get(secs)
        if text is None:
            d = datetime.fromtimestamp(secs, self.tz)
            text = (f"{d.year:04d}-{d.month:02d}-{d.day:02d} "
                    f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}")
            if len(cache) > 10_000:
                cache.clear()
            cache[secs] = text
        return text, micro

    def _parse_dt(self, v, kind):
        """A datetime-ish JSON value -> (date text, "HH:MM:SS", fraction digits) in the Doris zone."""
        name = self.name
        if type(v) is str:
            m = _DT_RE.fullmatch(v.strip())
            if m is None:
                raise Bad("conversion", f"column {name}: {_show(v)} is not {_an(kind)} (expected "
                          "YYYY-MM-DD[ HH:MM:SS[.ffffff]], ISO-8601, or epoch seconds/ms)", name)
            y, mo, d, hh, mi, ss, frac, zone = m.groups()
            day = _valid_date(int(y), int(mo), int(d))
            h, mn, sec = int(hh or 0), int(mi or 0), int(ss or 0)
            if day is None or h > 23 or mn > 59 or sec > 59:
                raise Bad("invalid_date", f"column {name}: {_show(v)} is not a valid {kind}", name)
            frac = frac or ""
            if zone:
                if zone in ("Z", "z", "UTC"):
                    off = _fixed_tz.utc
                else:
                    off = _offset(zone)
                    if off is None:
                        raise Bad("invalid_date", f"column {name}: {_show(v)} has a zone offset "
                                  "outside -23:59..+23:59", name)
                try:
                    dt = datetime(int(y), int(mo), int(d), h, mn, sec, tzinfo=off).astimezone(self.tz)
                except (OverflowError, ValueError):
                    raise Bad("out_of_range", f"column {name}: {_show(v)} is outside the {kind} range",
                              name) from None
                return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}",
                        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}", frac)
            return day, f"{h:02d}:{mn:02d}:{sec:02d}", frac
        if type(v) is int or (isinstance(v, float) and type(v) is not bool):
            try:
                text, micro = self._epoch_text(v, None)
            except (OverflowError, OSError, ValueError):
                raise Bad("out_of_range", f"column {name}: epoch {_show(v)} is outside the {kind} "
                          "range", name) from None
            return text[:10], text[11:], f"{micro:06d}"
        raise Bad("conversion", f"column {name}: {_show(v)} is not {_an(kind)}", name)

    def _date_conv(self):
        def conv(v):
            if type(v) is str and v in _DATES:
                return v
            return self._parse_dt(v, "DATE")[0]
        return conv

    def _datetime_conv(self, scale):
        def conv(v):
            return self._datetime_text(*self._parse_dt(v, "DATETIME"), v)
        frac = rf"\.[0-9]{{{scale}}}" if scale else ""
        canonical = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                               + frac).fullmatch
        return conv, Fast("type(v) is str and {dt}(v) is not None and v[:10] in {dates}", "v",
                          {"dt": canonical, "dates": _DATES})

    def _datetime_text(self, day: str, hms: str, frac: str, v) -> str:
        """DATETIME(scale) text; digits beyond the scale round half up, as Doris rounds them,
        carrying into seconds, minutes, days (``23:59:59.9999`` at scale 3 is the next day)."""
        scale = self.scale
        keep = frac[:scale]
        if len(frac) > scale and frac[scale] >= "5":
            units = int(keep or "0") + 1
            if units == 10 ** scale:
                units = 0
                try:
                    dt = datetime(int(day[:4]), int(day[5:7]), int(day[8:10]), int(hms[:2]),
                                  int(hms[3:5]), int(hms[6:8])) + timedelta(seconds=1)
                except OverflowError:
                    raise Bad("out_of_range", f"column {self.name}: {_show(v)} rounds beyond the "
                              "DATETIME range", self.name) from None
                day = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
                hms = f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
            keep = f"{units:0{scale}d}" if scale else ""
        return f"{day} {hms}.{keep.ljust(scale, '0')}" if scale else f"{day} {hms}"

    def ms_time(self, ms: int) -> str:
        """Kafka timestamp (ms) as this DATE/DATETIME column's text, in the Doris time zone.
        A timestamp no DATE/DATETIME can hold (a producer writing microseconds) is a Bad."""
        try:
            text, micro = self._epoch_text(ms, True)
        except (OverflowError, OSError, ValueError):
            raise Bad("out_of_range", f"column {self.name}: Kafka timestamp {ms} is outside the "
                      f"{self.base} range (milliseconds since the epoch expected)", self.name) from None
        if self.base == "DATE":
            return text[:10]
        return self._datetime_text(text[:10], text[11:], f"{micro:06d}", ms)

    # --- NULL, missing, zero
    def _zero(self) -> str | None:
        b = self.base
        if self.column.auto_increment:
            return None            # a 0 id is never what an AUTO_INCREMENT column means
        if b in _INT_BITS or b in ("BOOLEAN", "FLOAT", "DOUBLE"):
            return "0"
        if b == "DECIMAL":
            s = self.column.type.scale or 0
            return "0." + "0" * s if s else "0"
        if b in ("CHAR", "VARCHAR", "STRING"):
            return ""
        if b == "DATE":
            return "1970-01-01"
        if b == "DATETIME":
            s = self.column.type.scale or 0
            return "1970-01-01 00:00:00" + ("." + "0" * s if s else "")
        if b == "ARRAY":
            return "[]"
        if b in _JSONISH:
            return "{}"
        return {"IPV4": "0.0.0.0", "IPV6": "::"}.get(b)

    def _null_fn(self, mcfg):
        c = self.column
        if c.nullable:
            return lambda: NULL
        if mcfg.missing == "zero" and self.zero is not None:
            zero = self.zero
            return lambda: zero
        reason = f"column {c.name} is NOT NULL but {self.label} is null"

        def null():
            raise Bad("null", reason, c.name)
        return null

    def _missing_rule(self, mcfg):
        """(field text for a message without this column's field, that rule in words).

        In ``format: json`` the key is left out and Doris applies the default, NULL or rejects
        the row (the writer dead-letters it); ``missing: zero`` is a csv-only rule.
        """
        c = self.column
        if self.kafka in ("topic", "partition", "offset"):
            return None, "never (Kafka metadata)"
        if self.auto:
            return None, "Doris numbers it (AUTO_INCREMENT)"
        if c.default is not None:
            if self.json:
                return None, f"default {c.default}"
            m = _EXPR_DEFAULT.fullmatch(c.default.strip())
            if m and self.base in ("DATE", "DATETIME"):
                return self._now, f"Kafka timestamp (default {c.default})"
            text = enc(c.default)
            return (lambda rec: text), f"default {c.default}"
        if c.nullable:
            return (lambda rec: NULL), "NULL"
        if mcfg.missing == "zero" and self.zero is not None and not self.json:
            zero = self.zero
            return (lambda rec: zero), "zero value"
        reason = f"field {self.label} is required (column {c.name} is NOT NULL, no default)"

        def missing(rec):
            raise Bad("missing", reason, c.name)
        return missing, "dead letter"

    def _now(self, rec) -> str:
        """CURRENT_TIMESTAMP-like defaults: the record's Kafka timestamp, so re-mapping the same
        record (line_for) gives the same line; the wall clock only if the record has none."""
        ts = fields(rec).timestamp(rec)
        if type(ts) is not int or ts < 0:
            ts = int(time.time() * 1000)
        return self.ms_time(ts)

    def require(self, reason: str) -> None:
        """A missing or null value is a dead letter with this reason, whatever the column allows."""
        def refuse(*_):
            raise Bad("missing", reason, self.name)
        self.required = True
        self.missing = self.null = refuse
        self.when_missing = "dead letter"

    # --- whole-value entry points
    def full(self, v, rec):
        if v is _MISSING:
            return self.missing(rec)
        if v is None:
            return self.null()
        return self.conv(v)

    def from_record(self, rec):
        """The field for a Kafka-metadata column."""
        v = self.kafka_value(rec)
        if v is None:
            return self.null()
        if self.kafka == "timestamp" and self.base in ("DATE", "DATETIME"):
            return self.ms_time(v)
        return self.conv(v)

    def check_left_to_doris(self, obj) -> None:
        """csv leaves an AUTO_INCREMENT column out of every row: a message with its own value
        for it would lose that value, so it is a dead letter that says how to keep it."""
        v = self.lookup(obj)
        if v is not _MISSING and v is not None:
            raise Bad("conversion", f"column {self.name} is AUTO_INCREMENT and left to Doris, but "
                      f"the message has {self.name}={_show(v)}: list {self.name} in mapping.columns "
                      "to load the message's own values", self.name)

    def kafka_value(self, rec):
        k = self.kafka
        f = fields(rec)
        if k == "key":
            key = f.key(rec)
            if key is None:
                return None
            try:
                return key.decode() if isinstance(key, (bytes, bytearray)) else str(key)
            except UnicodeDecodeError:
                raise Bad("conversion", f"column {self.name}: the Kafka key is not UTF-8 text",
                          self.name) from None
        if k == "timestamp":
            ts = f.timestamp(rec)
            return ts if type(ts) is int and ts >= 0 else None
        return getattr(f, k)(rec)

    def lookup(self, obj, path=None):
        """The value at this column's path (or ``path``), or _MISSING when a key is absent or
        the path breaks."""
        v = obj
        for k in self.path if path is None else path:
            if type(v) is not dict:
                return _MISSING
            v = v.get(k, _MISSING)
            if v is _MISSING:
                return _MISSING
        return v


class _Slow(Exception):
    """The generated fast path met something it does not handle."""


# ---------------------------------------------------------------- the Mapper

class Mapper:
    """Maps poll results of one table; built once per schema (converters are compiled here)."""

    def __init__(self, columns, cfg, timezone: str = "UTC", model=None):
        self.columns = list(columns)
        self.cfg = cfg
        self.format = cfg.format
        self.timezone = timezone
        self.tz = parse_timezone(timezone)
        sources = {s.column: s for s in cfg.columns}
        self.cdc = envelope.is_cdc(cfg)       # deletes rows (envelope / delete_when)
        self.sequence_column = self._sequence_column(model)
        if self.sequence_column is not None and cfg.sequence_from is not None:
            sources[self.sequence_column] = dataclasses.replace(cfg.sequence_from,
                                                                column=self.sequence_column)
        cache: dict = {}
        self._cols = [_Col(c, sources.get(c.name), cfg, self.tz, cache)
                      for c in self.columns]
        self._by_name = {c.name: c for c in self._cols}
        seq = self._by_name.get(self.sequence_column)
        if seq is not None:
            where = "mapping.sequence_from" if cfg.sequence_from is not None else \
                "the table's sequence column"
            seq.require(f"no sequence value at {seq.label} ({where}): a change without one "
                        "cannot be ordered against the others of its key (a delete without one "
                        "would lose to the row it deletes)")
        self._split = None
        if cfg.envelope == "debezium":
            self._split = envelope.debezium
            if seq is not None and not seq.kafka and cfg.sequence_from is not None:
                seq.from_event = True
        elif cfg.delete_when is not None:
            self._split = envelope.delete_when(cfg.delete_when.path, cfg.delete_when.equals)
        if self.cdc:
            self._keys = [c for c in self._cols if c.column.is_key]
            if not self._keys:
                raise ConfigError("mapping deletes rows by the table's key columns, but none is "
                                  "known: read the columns from Doris (remove mapping.schema) so "
                                  "sinker learns the UNIQUE KEY columns")
        # csv: an AUTO_INCREMENT column the config does not fill is left out for Doris to number
        self._auto = [c for c in self._cols if c.auto]
        self._body = [c for c in self._cols if not c.auto]
        self.body_columns = [c.name for c in self._body]
        # json: the columns whose value the config places (others Doris maps by key name)
        self._extras = [c for c in self._cols if c.kafka or c.path != (c.name,) or c.required]
        self._headers = self._make_headers()
        self._nested = _Nested()
        if self.format == "csv":
            # a text column's shortcut for plain slices (_map_csv; the CDC path maps one by one)
            plain = not self.cdc and any(c.fast is not None and c.fast.plain
                                         for c in self._body if not c.kafka)
            self._fast_plain = self._compile(plain=True) if plain else None
            self._fast = self._compile()
        # decided once here, so a plain mapping pays nothing per message for CDC
        if self.cdc:
            self._map = self._map_cdc
        elif self.format == "csv":
            self._map = self._map_csv
        else:
            self._map = self._map_json

    # --- public
    def map_records(self, records, out: list[bytes], dead: list[DeadLetter]) -> int:
        """Append one line per good record to ``out`` (each ends with ``\\n``) and one DeadLetter
        per bad record to ``dead``; return the bytes appended. Records are never copied or wrapped."""
        return self._map(records, out, dead)[0]

    def map_slice(self, records, out: list[bytes], dead: list[DeadLetter]) -> tuple[int, bool]:
        """``map_records``, and whether each record became exactly its value and a newline (the
        json passthrough's fast path): a batch then keeps the values only in its lines."""
        return self._map(records, out, dead)

    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def when_missing(self, column: str) -> str:
        """What a message without this column's field loads, in words (``schema describe``)."""
        return self._by_name[column].when_missing

    def converter(self, column: str) -> str:
        """How this column's JSON value becomes what Doris loads, in words (``schema describe``)."""
        c = self._by_name[column]
        if self.format == "json":
            return "Doris (json passthrough)"
        if c.kafka == "timestamp" and c.base in ("DATE", "DATETIME"):
            return "Kafka timestamp in the load's time zone"
        if c.auto:
            return "Doris (AUTO_INCREMENT)"
        return CONVERTERS.get(c.base, "unsupported")

    def line_for(self, rec) -> bytes | None:
        """The exact line map_records gives this record, or None when it is a dead letter."""
        out: list[bytes] = []
        self.map_records([rec], out, [])
        return out[0] if out else None

    def _sequence_column(self, model) -> str | None:
        """The table's sequence column (mapping.sequence_column, else its declared
        function_column.sequence_col), whose value orders a key's changes: filled by
        sequence_from when set, else taken from the row like any column — from ``after`` for an
        upsert, from ``before`` for a delete, and a change without it is a dead letter. None
        for a mapping that neither deletes nor sets sequence_from."""
        declared = model.sequence_col if model is not None else None
        name = self.cfg.sequence_column
        if name is not None and declared is not None and name != declared:
            raise ConfigError(f"mapping.sequence_column {name!r} is not the table's sequence "
                              f"column {declared!r} (function_column.sequence_col): Doris orders "
                              f"rows by {declared}; name it, or remove mapping.sequence_column")
        if self.cfg.sequence_from is None:
            name = name or declared
            if name is None or not self.cdc:
                return None
            if name not in {c.name for c in self.columns}:
                raise ConfigError(f"the table's sequence column {name!r} is not among its "
                                  f"columns ({', '.join(c.name for c in self.columns)})")
            return name
        name = name or declared
        if name is None:
            why = ("the columns come from mapping.schema, so sinker cannot read the table's "
                   "function_column.sequence_col" if model is None else
                   "the table declares no function_column.sequence_col")
            raise ConfigError(f"mapping.sequence_from needs the table's sequence column: set "
                              f"mapping.sequence_column ({why})")
        if name not in {c.name for c in self.columns}:
            raise ConfigError(f"mapping.sequence_column {name!r} is not a column of the table "
                              f"(columns: {', '.join(c.name for c in self.columns)})")
        if any(s.column == name for s in self.cfg.columns):
            raise ConfigError(f"column {name} is filled by mapping.sequence_from and also listed "
                              "in mapping.columns: remove it from mapping.columns")
        return name

    def _make_headers(self):
        # max_filter_ratio is not the mapper's: stream_load.py always sends 0 (see writer.py)
        common = {"strict_mode": "true" if self.cfg.strict_mode else "false",
                  "timezone": self.timezone}
        if self.sequence_column is not None:
            common["function_column.sequence_col"] = self.sequence_column
        if self.format == "json":
            if self.cdc:     # json keys map by name, but a hidden column only when named here
                common["hidden_columns"] = envelope.DELETE_SIGN
            return {"format": "json", "read_json_by_line": "true", "strip_outer_array": "false",
                    **common}
        names = self.body_columns + ([envelope.DELETE_SIGN] if self.cdc else [])
        # separators in Doris's hex form: a bare TAB or LF cannot travel as an HTTP header value.
        # trim_double_quotes: with enclose '"' Doris 2.1/3.0 keep the quotes in the value unless it
        # is set (csv_reader.cpp, _not_trim_enclose); newer builds trim them either way.
        return {"format": "csv", "columns": ",".join(map(_quote_name, names)),
                "column_separator": "\\x09", "line_delimiter": "\\x0a", "enclose": '"',
                "escape": "\\", "trim_double_quotes": "true", **common}

    # --- decoding
    def _decode(self, value, exact=False):
        if value is None or len(value) == 0:
            raise Bad("empty", "message has no value")
        if not exact:
            try:
                return loads(value)
            except (ValueError, TypeError, OverflowError):
                pass   # e.g. something ujson refuses but the standard library accepts
        try:
            # strict=False: accept raw control characters in strings, as ujson does
            if exact:
                return json.loads(value, parse_float=_exact_float, parse_constant=_exact_float,
                                  strict=False)
            return json.loads(value, strict=False)
        except UnicodeDecodeError as e:
            raise Bad("invalid_json", f"message is not UTF-8 ({e.reason} at byte {e.start})") from None
        except (ValueError, RecursionError) as e:
            raise Bad("invalid_json", str(e)[:200]) from None

    def _object(self, value, exact=False, checked=False) -> dict:
        obj = self._decode(value, exact)
        if type(obj) is not dict:
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
                type(obj), "a number")
            raise Bad("not_object", f"message is {kind}, expected a JSON object")
        if checked:
            return obj
        text = value if type(value) is bytes else \
            value.encode(errors="surrogatepass") if type(value) is str else bytes(value)
        if not self._nested.clean(text, obj):
            dup = _duplicate_key(text)
            if dup is not None:
                raise Bad("duplicate_key", dup)
        return obj

    # --- csv
    def _compile(self, plain: bool = False):
        """Generate the per-record function once: straight-line code, one block per column.
        ``plain``: for slices `_plain_text` proved, with each Fast's ``plain`` condition."""
        ns = {"M": _MISSING, "Slow": _Slow}
        # e: the whole change event, for a sequence column read from it (Debezium's source.lsn)
        src = [f"def fast(o, rec{', e' if self.cdc else ''}):", "    if type(o) is not dict: raise Slow"]
        fields = []
        for c in self._auto:
            src += [f"    if o.get({c.name!r}) is not None: raise Slow"]
        for i, c in enumerate(self._body):
            f = f"f{i}"
            fields.append("{" + f + "}")
            ns[f"full{i}"] = c.full
            if c.kafka:
                ns[f"kafka{i}"] = c.from_record
                src.append(f"    {f} = kafka{i}(rec)")
                continue
            access = ("e" if c.from_event else "o") + "".join(f"[{k!r}]" for k in c.path)
            errors = "KeyError" if len(c.path) == 1 else "(KeyError, TypeError)"
            src += [f"    try: v = {access}", f"    except {errors}: v = M"]
            if c.fast is not None:
                names = {k: f"{k}{i}" for k in c.fast.bind}
                ns.update((names[k], obj) for k, obj in c.fast.bind.items())
                cond = (plain and c.fast.plain or c.fast.cond).format_map(names)
                expr = c.fast.expr.format_map(names)
                src += [f"    if {cond}: {f} = {expr}"]
                if c.column.nullable and not c.required:
                    src += [f"    elif v is None: {f} = {NULL!r}"]
                src += [f"    else: {f} = full{i}(v, rec)"]
            else:
                src.append(f"    {f} = full{i}(v, rec)")
        if self.cdc:
            fields.append("0")       # the delete sign: this row is written, not deleted
        src.append('    return f"' + "\\t".join(fields) + '\\n".encode()')
        exec(compile("\n".join(src), f"<sinker mapping {len(self._cols)} columns>", "exec"), ns)
        return ns["fast"]

    def _general(self, rec, checked: bool = False) -> bytes:
        """The reference path for one record: every rule, every error with its reason.
        ``checked``: the message is already known to write no key twice."""
        value = fields(rec).value(rec)
        try:
            return self._row(self._object(value, checked=checked), rec)
        except _NeedExact:
            return self._row(self._object(value, exact=True, checked=True), rec)

    def _row(self, obj, rec, event=None) -> bytes:
        for c in self._auto:
            c.check_left_to_doris(obj)
        fields = []
        for c in self._body:
            if c.kafka:
                fields.append(c.from_record(rec))
            else:
                fields.append(c.full(c.lookup(event if c.from_event else obj), rec))
        if self.cdc:
            fields.append("0")
        try:
            return ("\t".join(fields) + "\n").encode()
        except UnicodeEncodeError:
            for c, f in zip(self._body, fields):
                try:
                    f.encode()
                except UnicodeEncodeError:
                    raise Bad("conversion", f"column {c.name}: value is not valid UTF-8 text "
                              "(lone surrogate)", c.name) from None
            raise

    def _map_csv(self, records, out, dead) -> tuple[int, bool]:
        if not records:
            return 0, False
        fast, append, nested = self._fast, out.append, self._nested
        values = list(map(fields(records[0]).value, records))
        try:
            joined = b"".join(values)
            if _long_digits(joined):
                deque(map(orjson.loads, values), 0)     # each is strict JSON; dropped at once
                objs = list(map(ujson.loads, values))
            else:
                objs = list(map(orjson.loads, values))
            clean = set(map(type, objs)) == _ONLY_DICT and nested.slice_clean(joined, objs)
        except Exception:  # noqa: BLE001 - decoded and checked one by one below
            objs, clean = None, False
        if clean:
            # the common case, without a Python loop of our own; anything unusual in the slice
            # (a value off the fast path, a dead letter) and the loop below decides one by one
            try:
                plain = self._fast_plain is not None and _plain_text(joined)
                lines = list(map(self._fast_plain if plain else fast, objs, records))
            except Exception:  # noqa: BLE001
                pass
            else:
                out += lines
                return sum(map(len, lines)), False
        n = 0
        for rec, value, o in zip(records, values, objs or repeat(None)):
            checked = clean
            try:
                if o is None:
                    o = loads(value)
                # a key written twice (or maybe): the general path decides, with its reason
                checked = checked or nested.clean(value, o)
                line = fast(o, rec) if checked else None
            except Bad as b:   # final: the general path would meet the same value first
                dead.append(dead_letter.of(rec, b.reason, b.column))
                continue
            except Exception:  # noqa: BLE001 - anything unusual: the general path decides
                line = None
            if line is None:
                try:
                    line = self._general(rec, checked)
                except Bad as b:
                    dead.append(dead_letter.of(rec, b.reason, b.column))
                    continue
            append(line)
            n += len(line)
        return n, False

    # --- json
    def _map_json(self, records, out, dead) -> tuple[int, bool]:
        append = out.append
        if not records:
            return 0, False
        plain = not self._extras
        values = list(map(fields(records[0]).value, records))
        if plain:
            # The common case for a whole slice at C speed: every value a JSON object on one line.
            # Anything else and the loop below decides record by record, exactly as before. The
            # objects are only counted: orjson decodes 1 KB in half ujson's time and takes only
            # UTF-8 without surrogates (Hangul's ED 80-9F passes, ED A0-BF does not); what it
            # refuses (NaN, 01, a lone surrogate, 1e400: beyond RFC 8259 or a double) the general
            # path decides with ujson, as for csv.
            try:
                objs = list(map(orjson.loads, values)) \
                    if set(map(type, values)) == _ONLY_BYTES else None
                ok = objs is not None and set(map(type, objs)) == _ONLY_DICT
            except Exception:  # noqa: BLE001 - the loop below gives the reason
                ok = False
            if ok:
                joined = b"".join(values)
                if b"\n" not in joined and b"\r" not in joined and \
                        self._nested.slice_clean(joined, objs):
                    out += map(bytes.__add__, values, repeat(b"\n", len(values)))
                    return len(joined) + len(values), True
            decoded = objs if ok else None
        n = 0
        verbatim = True               # every record so far became its value and a newline
        for i, (rec, v) in enumerate(zip(records, values)):
            line = None
            if plain:
                try:
                    o = decoded[i] if decoded is not None else orjson.loads(v)
                    if type(o) is dict and b"\n" not in v and b"\r" not in v \
                            and self._nested.clean(v, o):
                        line = v + b"\n"
                except Exception:  # noqa: BLE001 - the general path gives the reason
                    pass
            if line is None:
                try:
                    line = self._json_line(rec)
                except Bad as b:
                    verbatim = False
                    dead.append(dead_letter.of(rec, b.reason, b.column))
                    continue
                # the general path may give the value back unchanged (a key test that only
                # could not rule a repeat out): what the line is decides, not the path
                verbatim = verbatim and len(line) == len(v) + 1 and line[:-1] == v
            append(line)
            n += len(line)
        return n, verbatim

    def _json_line(self, rec) -> bytes:
        v = fields(rec).value(rec)
        v = bytes(v) if v is not None else None
        obj = self._object(v)
        if b"\xed" in v:    # ujson takes UTF-8-encoded surrogates (ED A0..BF ..): not UTF-8 for Doris
            try:
                v.decode()
            except UnicodeDecodeError as e:
                raise Bad("invalid_json", f"message is not UTF-8 ({e.reason} at byte {e.start})") from None
        if b"\n" in v or b"\r" in v:
            try:
                json.loads(v)      # strict: raw control characters only between tokens
                v = _JSON_SPACE.sub(_keep_strings, v)
            except ValueError:     # written again: every number as it was sent (1.10, not 1.1)
                v = dumps_exact(self._object(v, exact=True, checked=True)).encode()
        if not self._extras:
            return v + b"\n"
        extras = self._extra_values(obj, rec)
        if not extras:
            return v + b"\n"
        exact = any(type(x) in (float, dict, list) for x in extras.values())
        if exact:                  # a number from a path keeps its text too
            obj = self._object(v, exact=True, checked=True)
            extras = self._extra_values(obj, rec)
        if any(k in obj for k in extras):
            obj = obj if exact else self._object(v, exact=True, checked=True)
            obj.update(extras)
            return dumps_exact(obj).encode() + b"\n"
        text = ",".join(f"{dumps(k)}:{dumps_exact(x)}" for k, x in extras.items()).encode()
        head = v.rstrip()[:-1].rstrip()
        return head + (b"," if obj else b"") + text + b"}\n"

    def _extra_values(self, obj, rec) -> dict:
        """The values the config places into a json row (paths, Kafka metadata), by column."""
        extras = {}
        for c in self._extras:
            if c.kafka:
                val = c.kafka_value(rec)
                if c.kafka == "timestamp" and val is not None and c.base in ("DATE", "DATETIME"):
                    val = c.ms_time(val)
            else:
                val = c.lookup(obj)
                if c.required and (val is _MISSING or val is None):
                    c.missing(rec)
                if val is _MISSING:
                    continue
            extras[c.name] = val
        return extras

    # --- change data (mapping.envelope / delete_when): every row carries the delete sign
    def _map_cdc(self, records, out, dead) -> tuple[int, bool]:
        tombstones = self.cfg.envelope == "debezium"
        append, n = out.append, 0
        value = fields(records[0]).value if records else None
        for rec in records:
            if tombstones and value(rec) is None:
                continue       # consumed, not loaded: the batch counts it as skipped
            try:
                line = self._cdc_line(rec)
            except Bad as b:
                dead.append(dead_letter.of(rec, b.reason, b.column))
                continue
            append(line)
            n += len(line)
        return n, False

    def _cdc_line(self, rec, exact: bool = False) -> bytes:
        # json rows are written again (with the sign): decoded exactly, so numbers keep their text
        obj = self._object(fields(rec).value(rec), exact or self.format == "json")
        try:
            delete, row, event = self._split(obj)
        except envelope.EnvelopeError as e:
            raise Bad(e.category, e.detail) from None
        try:
            if delete:
                return self._delete_line(row, rec, event)
            if self.format == "json":
                return self._json_row(row, rec, event, 0)
            if not exact:
                try:
                    return self._fast(row, rec, event)
                except Bad:
                    raise
                except Exception:  # noqa: BLE001 - the general path decides
                    pass
            return self._row(row, rec, event)
        except _NeedExact:
            return self._cdc_line(rec, exact=True)

    def _delete_line(self, row, rec, event) -> bytes:
        """A delete: the key columns from ``row`` (Debezium's ``before``), the sequence value,
        and for every other column a value Doris accepts and ignores (NULL, else the zero)."""
        values = {}
        for c in self._keys:
            v = c.lookup(row) if not c.kafka else c.kafka_value(rec)
            if v is _MISSING or v is None:
                raise Bad("cdc_delete", f"delete without the key column {c.name} "
                          f"(field {c.label}): cannot tell which row to delete", c.name)
            values[c.name] = v
        seq = self._by_name.get(self.sequence_column)
        if self.format == "json":
            if seq is not None:
                if seq.kafka:
                    values[seq.name] = self._json_value(seq, row, rec, event)
                else:
                    v = self._delete_seq(seq, row, event)
                    if v is _MISSING or v is None:
                        seq.missing(rec)
                    values[seq.name] = v
            for c in self._cols:
                if c.name not in values and not c.column.nullable and c.column.default is None \
                        and not c.auto:
                    values[c.name] = c.zero if c.zero is not None else ""
            values[envelope.DELETE_SIGN] = 1
            return dumps_exact(values).encode() + b"\n"
        fields = []
        for c in self._body:
            if c.name in values:
                fields.append(c.full(values[c.name], rec))
            elif c is seq:
                fields.append(c.from_record(rec) if c.kafka else c.full(self._delete_seq(c, row, event), rec))
            elif c.column.nullable:
                fields.append(NULL)
            else:
                fields.append(c.zero if c.zero is not None else "")
        fields.append("1")
        return ("\t".join(fields) + "\n").encode()

    @staticmethod
    def _delete_seq(c, row, event):
        """A delete's sequence value: a row field from ``before`` (the deleted row), also when
        sequence_from names it in ``after`` (null in a delete)."""
        if not c.from_event:
            return c.lookup(row)
        if c.path[:1] == ("after",):
            return c.lookup(event, ("before",) + c.path[1:])
        return c.lookup(event)

    def _json_value(self, c, row, rec, event):
        if c.kafka:
            v = c.kafka_value(rec)
            if c.kafka == "timestamp" and v is not None and c.base in ("DATE", "DATETIME"):
                v = c.ms_time(v)
            return v
        v = c.lookup(event if c.from_event else row)
        if c.required and (v is _MISSING or v is None):
            c.missing(rec)
        return None if v is _MISSING else v

    def _json_row(self, row, rec, event, sign: int) -> bytes:
        """An upsert as one JSON object: the row's keys, the configured sources, the sign.
        The row is written again (not passed through), every number as it was sent."""
        obj = dict(row)
        for c in self._extras:
            v = self._json_value(c, row, rec, event)
            if v is not None or c.kafka:
                obj[c.name] = v
        obj[envelope.DELETE_SIGN] = sign
        text = dumps_exact(obj)
        try:
            return text.encode() + b"\n"
        except UnicodeEncodeError:
            raise Bad("conversion", "value is not valid UTF-8 text (lone surrogate)") from None
