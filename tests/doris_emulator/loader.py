"""Stream Load bodies -> rows in table order, by the request headers and Doris's conversion rules.

Pure: no sockets, no catalog writes. The HTTP side calls `parse_spec(headers)`, then
`plan(spec, table)`, then `run(spec, plan, body)` (or `count(...)` in bench mode).

Speed matters (the benchmark and the 50 MB test push >=100k rows/s through here), so every column
gets one converter closure built once per load, good rows take a fast path with a single try
around the whole row, and only a bad row is walked again value by value to find which column failed
and why (and, when strict_mode is off, to turn that value into NULL).
"""
from __future__ import annotations

import datetime as _dt
import gzip
import json
import operator
import re
import zoneinfo
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any, Callable, Mapping

import ujson

from .schema import Column

LABEL_RE = re.compile(r"^[-_A-Za-z0-9:]{1,128}$")
STRING_LIMIT = 1048576          # string_type_length_soft_limit_bytes default
CSV_NULL = "\\N"
_MISSING = object()
_FORMATS = {"csv": "csv", "csv_with_names": "csv", "csv_with_names_and_types": "csv", "json": "json"}
_SKIP_LINES = {"csv_with_names": 1, "csv_with_names_and_types": 2}
_INT_RANGE = {"TINYINT": 8, "SMALLINT": 16, "INT": 32, "BIGINT": 64, "LARGEINT": 128}
_FLOAT_MAX = 3.4028234663852886e38
_DEC_CTX = Context(prec=200)


class LoadError(Exception):
    """The whole load fails before any row is looked at (bad header, unknown column...).
    The message is what goes into the response's `Message`."""


class ConvError(Exception):
    """One value does not convert. Filters the row under strict_mode, else the value becomes NULL."""


class RowReject(ConvError):
    """One value breaks a limit Doris checks at the sink (string length): the row is filtered
    whatever strict_mode says."""


# --------------------------------------------------------------------------- headers

@dataclass
class LoadSpec:
    """The request headers that shape a load, validated."""
    label: str | None = None
    fmt: str = "csv"                 # csv | json (csv_with_names* fold into csv + skip_lines)
    skip_lines: int = 0
    column_separator: str = "\t"
    line_delimiter: str = "\n"
    columns: list[str] | None = None
    strict: bool = False
    max_filter_ratio: float = 0.0
    json_by_line: bool = False
    strip_outer_array: bool = False
    jsonpaths: list[str] | None = None
    json_root: str | None = None
    enclose: str | None = None
    escape: str | None = None
    trim_double_quotes: bool = False
    timezone: str = "Asia/Shanghai"
    tz: Any = None
    timeout_s: int = 600
    two_phase_commit: bool = False
    group_commit: str | None = None  # sync_mode | async_mode (off_mode -> None)
    compress_type: str | None = None
    comment: str = ""
    merge_type: str = "APPEND"       # APPEND | DELETE | MERGE (UNIQUE KEY tables)
    delete_on: tuple[str, str, str] | None = None   # MERGE: (column, operator, literal) of `delete`
    hidden_columns: list[str] | None = None
    sequence_col: str | None = None  # the function_column.sequence_col / sequence_col header


def _bool_header(h: Mapping[str, str], name: str, default: bool = False) -> bool:
    v = h.get(name)
    if v is None or v.strip() == "":
        return default
    v = v.strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise LoadError(f"Invalid {name} format. Must be bool type (true/false), got '{h.get(name)}'")


def decode_separator(value: str | None, default: str, name: str) -> str:
    """Doris accepts hex forms like `\\x01` (several bytes: `\\x0102`); we also take `\\t` `\\n` `\\r`."""
    if value is None or value == "":
        return default
    if len(value) > 2 and value[:2].lower() == "\\x":
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raise LoadError(f"invalid hex {name}: '{value}'; write it as \\x followed by hex digits") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    simple = {"\\t": "\t", "\\n": "\n", "\\r": "\r", "\\r\\n": "\r\n"}
    return simple.get(value, value)


def _fixed_zone(sign: str, hours: int, minutes: int):
    """The zone of an offset like +08:00; None for one no zone has (24:00 and beyond, :60)."""
    if minutes >= 60:
        return None
    delta = _dt.timedelta(hours=hours, minutes=minutes)
    if delta >= _dt.timedelta(hours=24):
        return None
    return _dt.timezone(-delta if sign == "-" else delta)


def _timezone(name: str):
    m = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})", name.strip())
    if m:
        zone = _fixed_zone(m.group(1), int(m.group(2)), int(m.group(3)))
    elif name.upper() in ("UTC", "GMT", "Z"):
        zone = _dt.timezone.utc
    else:
        try:
            zone = zoneinfo.ZoneInfo(name)
        except Exception:  # noqa: BLE001 - any lookup failure means "unknown zone"
            zone = None
    if zone is None:
        raise LoadError(f"[INVALID_ARGUMENT]Unknown time zone: '{name}'; use a name like UTC or "
                        f"Asia/Shanghai, or an offset like +08:00")
    return zone


def _single_char(h: Mapping[str, str], name: str) -> str | None:
    v = h.get(name)
    if v is None or v == "":
        return None
    v = decode_separator(v, v, name)
    if len(v) != 1:
        raise LoadError(f"{name} must be a single character, got '{h.get(name)}'")
    return v


def parse_spec(headers: Mapping[str, str]) -> LoadSpec:
    """Headers (keys lower case) -> LoadSpec. Raises LoadError for anything Doris would refuse."""
    h = headers
    s = LoadSpec()
    label = h.get("label")
    gc = (h.get("group_commit") or "").strip().lower()
    if gc and gc not in ("sync_mode", "async_mode", "off_mode"):
        raise LoadError(f"group_commit can only be [async_mode, sync_mode, off_mode], got '{gc}'")
    s.two_phase_commit = _bool_header(h, "two_phase_commit")
    if gc in ("sync_mode", "async_mode"):
        if label:
            raise LoadError("label and group_commit can't be set at the same time")
        if not s.two_phase_commit:        # 2PC loads are never group-committed
            s.group_commit = gc
    if label is not None and label != "":
        if not LABEL_RE.match(label):
            raise LoadError(f"[ANALYSIS_ERROR]errCode = 2, detailMessage = Label format error. regex: "
                            f"^[-_A-Za-z0-9:]{{1,128}}$, label: {label}")
        s.label = label
    fmt = (h.get("format") or "csv").strip().lower()
    if fmt not in _FORMATS:
        raise LoadError(f"[INVALID_ARGUMENT]unknown data format, format={fmt}; the emulator loads "
                        f"csv, csv_with_names, csv_with_names_and_types and json")
    s.fmt = _FORMATS[fmt]
    s.skip_lines = _SKIP_LINES.get(fmt, 0)
    s.column_separator = decode_separator(h.get("column_separator"), "\t", "column_separator")
    s.line_delimiter = decode_separator(h.get("line_delimiter"), "\n", "line_delimiter")
    cols = h.get("columns")
    if cols is not None and cols.strip():
        names = []
        for part in cols.split(","):
            part = part.strip()
            if "=" in part or "(" in part:
                raise LoadError(f"the Doris emulator supports plain column names in `columns` only, "
                                f"not expressions: '{part}'")
            names.append(part.strip("`").strip())
        s.columns = names
    s.strict = _bool_header(h, "strict_mode")
    mfr = h.get("max_filter_ratio")
    if mfr is not None and mfr.strip():
        try:
            s.max_filter_ratio = float(mfr)
        except ValueError:
            raise LoadError(f"Invalid max_filter_ratio '{mfr}': give a number between 0 and 1") from None
        if not 0.0 <= s.max_filter_ratio <= 1.0:
            raise LoadError(f"max_filter_ratio must be between 0 and 1, got {mfr}")
    s.json_by_line = _bool_header(h, "read_json_by_line")
    s.strip_outer_array = _bool_header(h, "strip_outer_array")
    jp = h.get("jsonpaths")
    if jp:
        try:
            paths = json.loads(jp)
        except ValueError:
            raise LoadError(f"Invalid jsonpaths: {jp}; give a JSON array like [\"$.a\", \"$.b.c\"]") from None
        if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("$") for p in paths):
            raise LoadError(f"Invalid jsonpaths: {jp}; give a JSON array like [\"$.a\", \"$.b.c\"]")
        s.jsonpaths = paths
    s.json_root = h.get("json_root") or None
    s.enclose = _single_char(h, "enclose")
    s.escape = _single_char(h, "escape")
    s.trim_double_quotes = _bool_header(h, "trim_double_quotes")
    tzname = h.get("timezone") or h.get("time_zone") or "Asia/Shanghai"
    s.timezone = tzname
    s.tz = _timezone(tzname)
    t = h.get("timeout")
    if t is not None and t.strip():
        try:
            s.timeout_s = int(t)
        except ValueError:
            raise LoadError(f"Invalid timeout '{t}': give whole seconds") from None
    ct = (h.get("compress_type") or "").strip().lower()
    if ct:
        if ct not in ("gz", "gzip"):
            raise LoadError(f"compress_type '{ct}' is not supported by the Doris emulator (only gz)")
        if s.fmt != "csv":
            raise LoadError("compress_type is only supported for CSV")
        s.compress_type = "gz"
    if h.get("where"):
        raise LoadError("the Doris emulator does not evaluate the `where` header; filter on the client")
    mt = (h.get("merge_type") or "APPEND").strip().upper()
    if mt not in ("APPEND", "DELETE", "MERGE"):
        raise LoadError(f"[INVALID_ARGUMENT]merge_type must be APPEND, DELETE or MERGE, got '{mt}'")
    s.merge_type = mt
    cond = (h.get("delete") or "").strip()
    if mt == "MERGE" and not cond:
        raise LoadError("[ANALYSIS_ERROR]errCode = 2, detailMessage = Excepted DELETE ON clause when merge "
                        "type is MERGE; give the `delete` header, e.g. `delete: op = 'd'`")
    if cond and mt != "MERGE":
        raise LoadError("[ANALYSIS_ERROR]errCode = 2, detailMessage = not support DELETE ON clause when merge "
                        "type is not MERGE.")
    if cond:
        m = _DELETE_ON_RE.fullmatch(cond)
        if m is None:
            raise LoadError(f"the Doris emulator evaluates `delete` conditions of the form column <op> literal "
                            f"(=, !=, <>, <, <=, >, >=) only, not '{cond}'")
        lit = m.group(3)
        if len(lit) >= 2 and lit[0] == lit[-1] and lit[0] in "'\"":
            lit = lit[1:-1]
        s.delete_on = (m.group(1), m.group(2), lit)
    sq = h.get("function_column.sequence_col") or h.get("sequence_col")
    s.sequence_col = sq.strip().strip("`") if sq and sq.strip() else None
    hc = h.get("hidden_columns")
    if hc and hc.strip():
        s.hidden_columns = [x.strip().strip("`") for x in hc.split(",") if x.strip()]
    s.comment = h.get("comment") or ""
    return s


_DELETE_ON_RE = re.compile(r"`?([A-Za-z_][\w]*)`?\s*(=|!=|<>|<=|>=|<|>)\s*(.+?)")
DELETE_SIGN = "__DORIS_DELETE_SIGN__"


# --------------------------------------------------------------------------- converters

def _int_conv(col, name: str, bits: int) -> Callable[[str], int]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    tname = col.base

    def conv(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            v = _int_with_fraction(s)
            if v is None:
                raise ConvError(f"column({name}) value '{s[:64]}' is not a valid {tname}") from None
        if lo <= v <= hi and "_" not in s:
            return v
        if "_" in s:
            raise ConvError(f"column({name}) value '{s[:64]}' is not a valid {tname}")
        raise ConvError(f"column({name}) value {s[:64]} is out of range for {tname} [{lo}, {hi}]")
    return conv


_INT_FRAC_RE = re.compile(r"\s*([+-]?\d+)\.\d*\s*")


def _int_with_fraction(s: str):
    """Doris's string-to-int ignores a fractional part ('12.7' -> 12)."""
    m = _INT_FRAC_RE.fullmatch(s)
    return int(m.group(1)) if m else None


def _float_conv(col, name: str) -> Callable[[str], float]:
    limit = _FLOAT_MAX if col.base == "FLOAT" else 1.7976931348623157e308
    tname = col.base

    def conv(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise ConvError(f"column({name}) value '{s[:64]}' is not a valid {tname}") from None
        if -limit <= v <= limit and "_" not in s:
            return v
        raise ConvError(f"column({name}) value '{s[:64]}' is not a valid {tname} (out of range or not finite)")
    return conv


def _decimal_conv(col, name: str) -> Callable[[str], str]:
    p = col.precision or 38
    sc = col.scale or 0
    quantum = Decimal(1).scaleb(-sc)
    bound = Decimal(10) ** (p - sc)
    tname = f"decimal({p},{sc})"

    int_digits = p - sc
    canon = re.compile((r"-?(?:0|[1-9]\d{0,%d})" % (int_digits - 1) if int_digits > 0 else "-?0")
                       + (r"\.\d{%d}" % sc if sc else ""))

    def conv(s: str) -> str:
        if canon.fullmatch(s) and s[0] != "-":      # plain text already in the stored form
            return s
        try:
            d = Decimal(s)
        except (InvalidOperation, ValueError):
            raise ConvError(f"column({name}) value '{s[:64]}' is not a valid {tname}") from None
        if not d.is_finite() or "_" in s:
            raise ConvError(f"column({name}) value '{s[:64]}' is not a valid {tname}")
        q = d.quantize(quantum, rounding=ROUND_HALF_UP, context=_DEC_CTX)
        if q.copy_abs() >= bound:
            raise ConvError(f"column({name}) value {s[:64]} is out of range for {tname}: more than "
                            f"{int_digits} integer digits")
        if not q:
            q = q.copy_abs()
        return format(q, "f")
    return conv


def _bool_conv(col, name: str) -> Callable[[str], int]:
    table = {"true": 1, "false": 0, "1": 1, "0": 0}

    def conv(s: str) -> int:
        v = table.get(s)
        if v is None:
            v = table.get(s.strip().lower())
            if v is None:
                raise ConvError(f"column({name}) value '{s[:64]}' is not a valid BOOLEAN")
        return v
    return conv


def _string_conv(col, name: str) -> Callable[[str], str]:
    n = col.length if col.base in ("CHAR", "VARCHAR") and col.length else STRING_LIMIT
    quarter = n // 4          # a UTF-8 char is at most 4 bytes: shorter strings need no encode

    def conv(s: str) -> str:
        ln = len(s)
        if ln <= quarter:
            return s
        actual = ln if s.isascii() else len(s.encode("utf-8"))
        if actual <= n:
            return s
        raise RowReject(f"column_name[{name}], the length of input is too long than schema. first 32 "
                        f"bytes of input str: [{s[:32]}] schema length: {n}; actual length: {actual}; ")
    return conv


_DATE_RE = re.compile(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2}))?"
                      r"(?:\.(\d+))?)?\s*(Z|[+-]\d{1,2}(?::?\d{2})?)?\s*")
_DATE_COMPACT_RE = re.compile(r"\s*(\d{4})(\d{2})(\d{2})(?:[ T]?(\d{2})(\d{2})(\d{2})(?:\.(\d+))?)?\s*")


def _parse_datetime(s: str, scale: int, tz) -> _dt.datetime | None:
    """Any form Doris takes -> naive datetime in the load's time zone, fraction rounded to `scale`."""
    m = _DATE_RE.fullmatch(s) or _DATE_COMPACT_RE.fullmatch(s)
    if not m:
        return None
    g = m.groups()
    frac = g[6] or ""
    try:
        dt = _dt.datetime(int(g[0]), int(g[1]), int(g[2]), int(g[3] or 0), int(g[4] or 0), int(g[5] or 0),
                          int((frac + "000000")[:6]))
    except ValueError:
        return None
    if len(frac) > scale:                          # round half up at the column's scale
        digits = int(frac[:scale] or "0")
        if frac[scale] >= "5":
            digits += 1
        base = dt.replace(microsecond=0)
        dt = base + _dt.timedelta(microseconds=digits * 10 ** (6 - scale))
    if len(g) > 7 and g[7]:
        zone = g[7]
        if zone == "Z":
            src = _dt.timezone.utc
        else:
            zm = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})?", zone)
            src = _fixed_zone(zm.group(1), int(zm.group(2)), int(zm.group(3) or 0))
            if src is None:
                return None                        # not a datetime: the caller rejects it
        dt = dt.replace(tzinfo=src).astimezone(tz).replace(tzinfo=None)
    return dt


def _date_conv(col, name: str, tz) -> Callable[[str], str]:
    cache: dict[str, str] = {}

    def conv(s: str) -> str:
        v = cache.get(s)
        if v is not None:
            return v
        dt = _parse_datetime(s, 0, tz)
        if dt is None:
            raise ConvError(f"column({name}) value '{s[:64]}' is not a valid DATE (want YYYY-MM-DD)")
        v = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
        if len(cache) > 100_000:
            cache.clear()
        cache[s] = v
        return v
    return conv


def _datetime_conv(col, name: str, tz) -> Callable[[str], str]:
    scale = col.scale or 0
    canon = re.compile(r"\d{4}-\d{2}-\d{2} (?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
                       + (r"\.\d{%d}" % scale if scale else ""))
    valid_days: dict[str, bool] = {}

    def slow(s: str) -> str:
        dt = _parse_datetime(s, scale, tz)
        if dt is None:
            raise ConvError(f"column({name}) value '{s[:64]}' is not a valid DATETIME "
                            f"(want YYYY-MM-DD HH:MM:SS[.ffffff])")
        out = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
        if scale:
            out += "." + f"{dt.microsecond:06d}"[:scale]
        return out

    def conv(s: str) -> str:
        # Fast path: already canonical for this scale -> the input itself is the stored text.
        if canon.fullmatch(s):
            ok = valid_days.get(s[:10])
            if ok is None:
                try:
                    _dt.date(int(s[:4]), int(s[5:7]), int(s[8:10]))
                    ok = True
                except ValueError:
                    ok = False
                if len(valid_days) > 100_000:
                    valid_days.clear()
                valid_days[s[:10]] = ok
            if ok:
                return s
        return slow(s)
    return conv


def _json_text_conv(col, name: str) -> Callable[[str], str]:
    def conv(s: str) -> str:
        try:
            obj = json.loads(s, parse_constant=_reject_constant)
        except ValueError:
            raise ConvError(f"column({name}) value '{s[:64]}' is not valid JSON") from None
        return compact_json(obj)
    return conv


def _reject_constant(c):
    raise ValueError(f"{c} is not JSON")


def compact_json(obj) -> str:
    """Compact JSON text as Doris prints a JSON column (no spaces, UTF-8 kept)."""
    try:
        return ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False)
    except (TypeError, OverflowError):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=float)


def text_converter(col, tz) -> Callable[[str], Any]:
    """Converter for one column from body text (CSV fields, JSON strings)."""
    b, name = col.base, col.name
    if b in _INT_RANGE:
        return _int_conv(col, name, _INT_RANGE[b])
    if b == "BOOLEAN":
        return _bool_conv(col, name)
    if b in ("FLOAT", "DOUBLE"):
        return _float_conv(col, name)
    if b == "DECIMAL":
        return _decimal_conv(col, name)
    if b in ("CHAR", "VARCHAR", "STRING"):
        return _string_conv(col, name)
    if b == "DATE":
        return _date_conv(col, name, tz)
    if b == "DATETIME":
        return _datetime_conv(col, name, tz)
    if b in ("JSON", "JSONB"):
        return _json_text_conv(col, name)
    return lambda s: s       # ARRAY/MAP/STRUCT/VARIANT/IPV4...: kept as text


def json_converter(col, conv: Callable[[str], Any], raw_text: bool = False) -> Callable[[Any], Any]:
    """Converter for one column from a decoded JSON value (None must be handled by the caller).
    ``raw_text``: a string column asks for the value's text as written (`_NeedRaw`)."""
    b, name = col.base, col.name
    if b in ("JSON", "JSONB"):
        def jconv(v):
            return conv(v) if type(v) is str else compact_json(v)
        return jconv
    if b in _INT_RANGE:
        lo, hi = -(1 << (_INT_RANGE[b] - 1)), (1 << (_INT_RANGE[b] - 1)) - 1

        def jconv(v):
            t = type(v)
            if t is int:
                if lo <= v <= hi:
                    return v
                raise ConvError(f"column({name}) value {v} is out of range for {b} [{lo}, {hi}]")
            if t is str:
                return conv(v)
            if t is bool:
                return int(v)
            return _from_other(v, conv, name, b)
        return jconv
    if b in ("FLOAT", "DOUBLE"):
        def jconv(v):
            t = type(v)
            if t is float or t is int:
                return conv(repr(v)) if t is int and abs(v) > 1 << 53 else conv(str(v))
            if t is str:
                return conv(v)
            return _from_other(v, conv, name, b)
        return jconv
    if b == "BOOLEAN":
        def jconv(v):
            if type(v) is bool:
                return int(v)
            if type(v) is str:
                return conv(v)
            return _from_other(v, conv, name, b)
        return jconv
    if b == "DECIMAL":
        def jconv(v):
            t = type(v)
            if t is str:
                return conv(v)
            if t is int or t is Decimal:
                return conv(str(v))
            if t is float:
                r = repr(v)
                if len(r) > 16 and _sig_digits(r) > 15:
                    raise _NeedExact()
                return conv(r)
            raise ConvError(f"column({name}) value {compact_json(v)[:64]} is not a valid {b}")
        return jconv
    if b in ("CHAR", "VARCHAR", "STRING"):
        def jconv(v):
            t = type(v)
            if t is str or t is _RawText:
                return conv(v)
            if raw_text:
                raise _NeedRaw()
            return conv(_as_text(v))
        return jconv

    def jconv(v):
        if type(v) is str:
            return conv(v)
        return _from_other(v, conv, name, b)
    return jconv


def _sig_digits(r: str) -> int:
    return len(r.split("e")[0].lstrip("-").replace(".", "").lstrip("0"))


class _NeedRaw(Exception):
    """A string column got a number, boolean, object or array: it loads the text as written."""


class _RawText(str):
    """A member's value as the text Doris hands a string column (see `_raw_members`)."""


_JSON_WS = re.compile(r"[ \t\n\r]*")
_RAW_DECODER = json.JSONDecoder(strict=False)


def _raw_members(src: str) -> dict:
    """The top-level members of JSON object text ``src`` as the text a string column gets: Doris's
    simdjson reader passes simdjson::to_json_string(value) to the column (new_json_reader.cpp,
    _simdjson_write_data_to_column), which is the value as written, ends trimmed (serialization-
    inl.h: trim(raw_json_token()), an object's or array's raw_json()); true and false become 1 and
    0; of a key written twice the first counts (_simdjson_set_column_value skips a seen column)."""
    texts: dict = {}
    try:
        i = _JSON_WS.match(src).end()
        if src[i] != "{":
            return texts
        i = _JSON_WS.match(src, i + 1).end()
        while src[i] == '"':
            key, i = json.decoder.scanstring(src, i + 1, False)
            i = _JSON_WS.match(src, _JSON_WS.match(src, i).end() + 1).end()       # past the colon
            value, end = _RAW_DECODER.raw_decode(src, i)
            texts.setdefault(key, value if type(value) is str else "1" if value is True else
                             "0" if value is False else src[i:end])
            i = _JSON_WS.match(src, end).end()
            if src[i] != ",":
                break
            i = _JSON_WS.match(src, i + 1).end()
    except (ValueError, IndexError):
        pass                     # decoded once already: whatever is left is not a member
    return texts


def _with_raw_text(obj: dict, raw: str | None, keys) -> dict:
    """``obj`` with the values of string columns' keys replaced by their text as written (`raw`:
    the document; None for an element of an outer array, whose text is not kept: then the
    decoded value is printed)."""
    texts = _raw_members(raw) if raw is not None else {}
    obj = dict(obj)
    for k in keys:
        v = obj.get(k)
        if v is not None and type(v) is not str and type(v) is not _RawText:
            obj[k] = _RawText(texts[k] if k in texts else _as_text(v))
    return obj


def _as_text(v) -> str:
    if v is True:        # Doris inserts "1"/"0", not "true"/"false" (_simdjson_write_data_to_column)
        return "1"
    if v is False:
        return "0"
    if type(v) in (int, float, Decimal):
        return str(v) if type(v) is not float else repr(v)
    return compact_json(v)


def _from_other(v, conv, name, b):
    if type(v) in (dict, list):
        raise ConvError(f"column({name}) got a JSON {'object' if type(v) is dict else 'array'} for a {b} column")
    return conv(_as_text(v))


# --------------------------------------------------------------------------- plan

@dataclass
class Slot:
    name: str              # table column name
    pos: int               # index in the table's column order
    conv: Callable         # text converter
    jconv: Callable        # JSON value converter
    key: str               # JSON key (body name as given)
    path: list | None      # parsed jsonpath, or None


@dataclass
class Plan:
    """How body fields land in table columns, built once per load."""
    slots: list[Slot]
    template: list         # per table column: its default (converted) or None
    notnull: list[tuple[int, str]]
    identity: bool         # body fields are exactly the table columns in table order
    ncols: int
    has_decimal: bool
    text_keys: list = field(default_factory=list)   # JSON keys of string columns (no jsonpaths)
    # UNIQUE KEY deletes: rows get one more value, the delete sign (1 deletes the key), after the
    # table's columns; set for a __DORIS_DELETE_SIGN__ column, merge_type DELETE or MERGE.
    with_sign: bool = False
    merge: tuple | None = None       # MERGE: (position, operator, converted literal, key or None)


def _parse_path(p: str) -> list:
    """`$.a.b[0]` -> ['a', 'b', 0]."""
    out: list = []
    rest = p[1:]
    for m in re.finditer(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]", rest):
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(m.group(3) if m.group(3) is not None else m.group(4))
    return out


def _default_value(col, conv, tz):
    d = col.default
    if d is None:
        return None
    up = d.strip().upper()
    if up in ("CURRENT_TIMESTAMP", "NOW()", "CURRENT_TIMESTAMP()") or up.startswith("CURRENT_TIMESTAMP("):
        now = _dt.datetime.now(tz).replace(tzinfo=None)
        d = now.strftime("%Y-%m-%d %H:%M:%S.%f")
    elif up in ("CURRENT_DATE", "CURRENT_DATE()"):
        d = _dt.datetime.now(tz).strftime("%Y-%m-%d")
    try:
        return conv(d)
    except ConvError:
        return d


def plan(spec: LoadSpec, table) -> Plan:
    """Map body fields to table columns. Raises LoadError like Doris's planner would."""
    cols = table.columns
    by_name = {c.name.lower(): (i, c) for i, c in enumerate(cols)}
    names = spec.columns if spec.columns is not None else [c.name for c in cols] + (spec.hidden_columns or [])
    h_seq = spec.sequence_col
    if h_seq is not None and h_seq.lower() != (table.properties.get("function_column.sequence_col") or "").lower():
        raise LoadError(f"the Doris emulator keeps sequence columns declared by the table (PROPERTIES "
                        f"\"function_column.sequence_col\" = \"col\"); table '{table.name}' declares "
                        f"{table.properties.get('function_column.sequence_col') or 'none'}, the load names '{h_seq}'")
    wants_sign = DELETE_SIGN.lower() in (n.lower() for n in names) or spec.merge_type != "APPEND"
    if wants_sign:
        if table.keys_type != "UNIQUE":
            raise LoadError("[ANALYSIS_ERROR]errCode = 2, detailMessage = load by MERGE or DELETE is only "
                            "supported in unique tables.")
        by_name[DELETE_SIGN.lower()] = (len(cols), Column(DELETE_SIGN, "tinyint", "TINYINT", nullable=False))
    slots: list[Slot] = []
    seen = set()
    paths = spec.jsonpaths
    if paths is not None and len(paths) != len(names):
        raise LoadError(f"jsonpaths has {len(paths)} paths but there are {len(names)} columns; list one "
                        f"path per column in the `columns` header")
    for k, n in enumerate(names):
        hit = by_name.get(n.lower())
        if hit is None:
            raise LoadError(f"[ANALYSIS_ERROR]errCode = 2, detailMessage = unknown column '{n}' in table "
                            f"'{table.name}'; check the `columns` header against DESCRIBE {table.name}")
        if n.lower() in seen:
            raise LoadError(f"[ANALYSIS_ERROR]errCode = 2, detailMessage = Duplicate column: {n}")
        seen.add(n.lower())
        pos, col = hit
        conv = text_converter(col, spec.tz)
        slots.append(Slot(col.name, pos, conv, json_converter(col, conv, raw_text=paths is None), n,
                          _parse_path(paths[k]) if paths is not None else None))
    template: list = []
    for c in cols:
        conv = text_converter(c, spec.tz)
        template.append(_default_value(c, conv, spec.tz))
        if c.name.lower() not in seen and not c.nullable and c.default is None:
            raise LoadError(f"[ANALYSIS_ERROR]errCode = 2, detailMessage = Column has no default value. "
                            f"column: {c.name}; list it in the `columns` header or give it a default")
    notnull = [(i, c.name) for i, c in enumerate(cols) if not c.nullable]
    identity = len(slots) == len(cols) and all(s.pos == i for i, s in enumerate(slots))
    has_decimal = any(s.pos < len(cols) and cols[s.pos].base == "DECIMAL" for s in slots)
    out = Plan(slots, template, notnull, identity, len(cols), has_decimal,
               text_keys=[s.key for s in slots if paths is None and s.pos < len(cols)
                          and cols[s.pos].base in ("CHAR", "VARCHAR", "STRING")])
    if wants_sign:
        out.with_sign, out.identity = True, False
        template.append(0)
    if spec.delete_on is not None:
        name, op, lit = spec.delete_on
        hit = by_name.get(name.lower())
        if hit is None or hit[0] >= len(cols):
            raise LoadError(f"[ANALYSIS_ERROR]errCode = 2, detailMessage = unknown column '{name}' in the "
                            f"`delete` condition; it must be a column of table '{table.name}'")
        try:
            value = text_converter(hit[1], spec.tz)(lit)
        except ConvError as e:
            raise LoadError(f"[ANALYSIS_ERROR]errCode = 2, detailMessage = the `delete` condition: {e}") from None
        key = Decimal if hit[1].base == "DECIMAL" else None      # DECIMAL values are exact text
        out.merge = (hit[0], _OPS[op], key(value) if key else value, key)
    return out


_OPS = {"=": operator.eq, "!=": operator.ne, "<>": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}


def _mark_deletes(spec: LoadSpec, p: Plan, out: Outcome) -> None:
    """merge_type DELETE deletes every row; MERGE the rows matching `delete` (a NULL never matches)."""
    if spec.merge_type == "DELETE":
        out.rows = [r[:-1] + (1,) for r in out.rows]
    elif p.merge is not None:
        pos, op, value, key = p.merge
        out.rows = [r[:-1] + (1 if r[pos] is not None and op(key(r[pos]) if key else r[pos], value) else r[-1],)
                    for r in out.rows]


# --------------------------------------------------------------------------- running

@dataclass
class Outcome:
    rows: list[tuple] = field(default_factory=list)
    total: int = 0
    filtered: int = 0
    unselected: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)   # (reason, src line)


def decode_body(spec: LoadSpec, body: bytes) -> str:
    if spec.compress_type == "gz":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as e:
            raise LoadError(f"failed to decompress the gz body: {e}") from None
    return body.decode("utf-8", "replace")


def run(spec: LoadSpec, p: Plan, body: bytes) -> Outcome:
    """Parse and convert the whole body. Rows that fail are counted and explained, not raised."""
    text = decode_body(spec, body)
    out = _run_json(spec, p, text) if spec.fmt == "json" else _run_csv(spec, p, text)
    if p.with_sign:
        _mark_deletes(spec, p, out)
    return out


def _finish_row(p: Plan, vals: list, out: Outcome, src: str) -> None:
    if p.notnull and None in vals:
        for pos, name in p.notnull:
            if vals[pos] is None:
                out.filtered += 1
                out.errors.append((f"column({name}) values is null while columns is not nullable", src))
                return
    out.rows.append(tuple(vals))


def _slow_row(spec: LoadSpec, p: Plan, values: list, out: Outcome, src: str, from_json: bool,
              null: str | None = None) -> list | None:
    """Value by value, to learn which column failed; returns the row or None when filtered.
    ``null`` is what a NULL field is among csv ``values`` (see `_csv_lines`)."""
    row = list(p.template)
    for slot, v in zip(p.slots, values):
        if v is _MISSING:
            continue
        if v is None or (not from_json and v == null):
            row[slot.pos] = None
            continue
        try:
            row[slot.pos] = slot.jconv(v) if from_json else slot.conv(v)
        except RowReject as e:
            out.filtered += 1
            out.errors.append((str(e), src))
            return None
        except ConvError as e:
            if spec.strict:
                out.filtered += 1
                out.errors.append((f"{e}, and strict mode is true", src))
                return None
            row[slot.pos] = None
    return row


def _csv_lines(spec: LoadSpec, text: str):
    """(fields, raw line, null) per non-empty line; ``null`` is what a NULL field is in ``fields``.

    Plain lines keep their fields as split, so NULL is the text ``\\N``. Where Doris's reader does
    more than split (an enclose character in the body, an escape character, trim_double_quotes),
    every field goes through `_cell` as Doris hands it to the column, NULL becomes None and a text
    ``\\N`` (escaped, or quoted under trim_double_quotes) stays text."""
    sep, delim = spec.column_separator, spec.line_delimiter
    if spec.enclose is None or spec.enclose not in text:
        esc = spec.escape if spec.escape is not None and spec.escape in text else None
        resolve = esc is not None or spec.trim_double_quotes
        lines = text.split(delim)
        for line in lines[spec.skip_lines:]:
            if line:
                fields = line.split(sep)
                if resolve:
                    yield [_cell(f, None, spec.trim_double_quotes, esc) for f in fields], line, None
                else:
                    yield fields, line, CSV_NULL
        return
    # the field splitter trims the enclose, except a `"` without trim_double_quotes (csv_reader.cpp)
    trim = spec.enclose if spec.enclose != '"' or spec.trim_double_quotes else None
    skipped = 0
    for fields, raw in _split_enclosed(text, sep, delim, spec.enclose, spec.escape):
        if skipped < spec.skip_lines:
            skipped += 1
            continue
        if raw:
            yield [_cell(f, trim, spec.trim_double_quotes, spec.escape) for f in fields], raw, None


def _cell(f: str, trim: str | None, trim_dq: bool, esc: str | None) -> str | None:
    """One field as Doris's CSV reader hands it to its column (be/src/vec/exec/format/csv/
    csv_reader.cpp): the field splitter drops a ``trim`` character at both ends
    (BaseCsvTextFieldSplitter::_process_value); deserialize_nullable_string then, under
    trim_double_quotes, drops double quotes at both ends, and a field that had none and is exactly
    ``\\N`` is NULL; last the string serde removes each escape character, keeping the one after it
    (DataTypeStringSerDe::deserialize_one_cell_from_json, escape_string). So NULL is decided on the
    text as sent: ``\\\\N`` (an escaped backslash) is the two-character text ``\\N``."""
    if trim is not None and len(f) > 1 and f[0] == trim and f[-1] == trim:
        f = f[1:-1]
    if trim_dq and len(f) > 1 and f[0] == '"' and f[-1] == '"':
        f = f[1:-1]
    elif f == CSV_NULL:
        return None
    if esc is not None and esc in f:
        f = re.sub(re.escape(esc) + "(.?)", r"\1", f, flags=re.S)
    return f


def _split_enclosed(text: str, sep: str, delim: str, enc: str, esc: str | None):
    """CSV with fields wrapped in `enc`: (fields as sent, raw line) per line. Inside an enclosed
    field `esc` makes the next character literal, and separators and line delimiters are data;
    the fields keep their enclose and escape characters (`_cell` reads them as Doris does)."""
    i, n = 0, len(text)
    while i < n:
        start = i
        fields: list[str] = []
        while True:
            begin = i
            if text.startswith(enc, i):
                i += 1
                while True:
                    j = text.find(enc, i)
                    k = text.find(esc, i) if esc and esc != enc else -1
                    if k != -1 and (j == -1 or k < j):
                        i = k + 2
                        continue
                    if j == -1:                        # unterminated: the rest is the field
                        i = n
                        break
                    i = j + 1
                    if (esc is None or esc == enc) and text.startswith(enc, i):   # "" inside
                        i += 1
                        continue
                    break
            # anything between the closing enclose and the next separator is kept (lenient)
            a, b = text.find(sep, i), text.find(delim, i)
            i = min(x for x in (a, b, n) if x != -1)
            fields.append(text[begin:i])
            if i >= n:
                yield fields, text[start:n]
                return
            if text.startswith(delim, i):
                yield fields, text[start:i]
                i += len(delim)
                break
            i += len(sep)
            if i >= n:
                fields.append("")
                yield fields, text[start:n]
                return


def _run_csv(spec: LoadSpec, p: Plan, text: str) -> Outcome:
    out = Outcome()
    nf = len(p.slots)
    convs = [s.conv for s in p.slots]
    positions = [s.pos for s in p.slots]
    identity = p.identity
    template = p.template
    notnull = p.notnull
    rows, errors = out.rows, out.errors
    sep, delim = spec.column_separator, spec.line_delimiter
    call = operator.call
    total = 0
    for vals, line, null in _csv_lines(spec, text):
        total += 1
        if len(vals) != nf:
            out.filtered += 1
            more = "more" if len(vals) > nf else "less"
            errors.append((f"actual column number in csv file is {more} than schema column number."
                           f"actual number: {len(vals)}, schema column number: {nf}; line delimiter: "
                           f"[{delim!r}], column separator: [{sep!r}]", line))
            continue
        try:
            if null in vals:
                conv = [None if v == null else c(v) for c, v in zip(convs, vals)]
            else:
                conv = list(map(call, convs, vals))      # the common case: a C-level loop
        except ConvError:
            row = _slow_row(spec, p, vals, out, line, False, null)
            if row is None:
                continue
        else:
            if identity:
                row = conv
            else:
                row = list(template)
                for pos, v in zip(positions, conv):
                    row[pos] = v
        if notnull and None in row:
            _finish_row(p, row, out, line)
        else:
            rows.append(tuple(row))
    out.total = total
    return out


def _exact_loads(s: str):
    """JSON with number text kept exact (DECIMAL columns): slower, so only used when needed."""
    return json.loads(s, parse_float=Decimal, parse_constant=_reject_constant)


def _strict_json(src: str) -> bool:
    try:
        json.loads(src, parse_constant=_reject_constant)
    except ValueError:
        return False
    return True


def _lone_surrogate(obj) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _NeedExact(Exception):
    """A float reached a DECIMAL column with more digits than a double keeps: parse the line again."""


def _json_docs(spec: LoadSpec, p: Plan, text: str):
    """(object, raw text or None) per row; a str object is the reason the row is rejected."""
    if spec.json_by_line:
        docs = (line for line in text.split(spec.line_delimiter) if line and not line.isspace())
    else:
        docs = iter([text]) if text.strip() else iter(())
    root = _parse_path(spec.json_root) if spec.json_root else None
    for src in docs:
        exact = p.has_decimal and (not spec.json_by_line or src.lstrip()[:1] == "[")
        try:
            obj = _exact_loads(src) if exact else ujson.loads(src)
        except (ValueError, OverflowError) as e:
            yield f"Parse json data for JsonDoc failed. code: 2, error info: {e}", src.strip()
            continue
        if ("NaN" in src or "Infinity" in src) and not _strict_json(src):
            # ujson reads NaN/Infinity; Doris's parser (simdjson) refuses them
            yield ("Parse json data for JsonDoc failed. code: 3, error info: TAPE_ERROR: "
                   "The JSON document has an improper structure"), src.strip()
            continue
        if ("\\ud" in src or "\\uD" in src) and _lone_surrogate(obj):
            # simdjson refuses a \uD800-\uDFFF escape that is not half of a pair
            yield ("Parse json data for JsonDoc failed. code: 10, error info: STRING_ERROR: "
                   "Problem while parsing a string"), src.strip()
            continue
        if root is not None:
            obj = _get_path(obj, root)
            if obj is _MISSING:
                yield f"JSON Root not found: {spec.json_root}", src.strip()
                continue
        if type(obj) is dict:
            if spec.strip_outer_array:
                yield "JSON data is not an array-object, `strip_outer_array` must be FALSE.", src.strip()
            else:
                yield obj, src
        elif type(obj) is list:
            if not spec.strip_outer_array:
                yield "JSON data is array-object, `strip_outer_array` must be TRUE.", src.strip()
                continue
            for el in obj:
                if type(el) is dict:
                    yield el, None
                else:
                    yield "JSON data is not an object", compact_json(el)
        else:
            yield "JSON data is not an object or an array of objects", src.strip()


def _get_path(obj, path: list):
    for k in path:
        if type(k) is int:
            if type(obj) is list and -len(obj) <= k < len(obj):
                obj = obj[k]
            else:
                return _MISSING
        elif type(obj) is dict:
            obj = obj.get(k, _MISSING)
            if obj is _MISSING:
                return obj
        else:
            return _MISSING
    return obj


def _run_json(spec: LoadSpec, p: Plan, text: str) -> Outcome:
    out = Outcome()
    by_path = spec.jsonpaths is not None
    slots = [(s.path if by_path else s.key, s.pos, s.jconv) for s in p.slots]
    template = p.template
    notnull = p.notnull
    rows = out.rows
    MISSING = _MISSING
    total = 0

    def fill(obj) -> list:
        row = list(template)
        if by_path:
            for path, pos, jc in slots:
                v = _get_path(obj, path)
                if v is not MISSING:
                    row[pos] = None if v is None else jc(v)
        else:
            get = obj.get
            for key, pos, jc in slots:
                v = get(key, MISSING)
                if v is not MISSING:
                    row[pos] = None if v is None else jc(v)
        return row

    for obj, raw in _json_docs(spec, p, text):
        total += 1
        if type(obj) is str:
            out.filtered += 1
            out.errors.append((obj, raw))
            continue
        try:
            try:
                row = fill(obj)
            except (_NeedExact, _NeedRaw):
                if raw is not None and p.has_decimal:
                    obj = _exact_loads(raw)
                if p.text_keys:
                    obj = _with_raw_text(obj, raw, p.text_keys)
                row = fill(obj)
        except ConvError:
            values = [_get_path(obj, s.path) if by_path else obj.get(s.key, MISSING) for s in p.slots]
            row = _slow_row(spec, p, values, out, _raw_text(obj, raw), True)
            if row is None:
                continue
        if notnull and None in row:
            _finish_row(p, row, out, _raw_text(obj, raw))
        else:
            rows.append(tuple(row))
    out.total = total
    return out


def _raw_text(obj, raw: str | None) -> str:
    """The row as sent, for the error log (an array element is re-encoded)."""
    return raw.strip() if raw is not None else compact_json(obj)


# --------------------------------------------------------------------------- bench mode

def count(spec: LoadSpec, p: Plan, body: bytes) -> Outcome:
    """Bench mode: check framing and count rows and columns without converting or keeping rows."""
    if spec.compress_type or spec.fmt == "json" and (not spec.json_by_line or spec.strip_outer_array):
        return _count_by_parsing(spec, p, body)       # rare shapes: take the full path, drop the rows
    out = Outcome()
    delim = spec.line_delimiter.encode("utf-8")
    if spec.fmt == "json":
        lines = [x for x in body.split(delim) if x.strip()]
        out.total = len(lines)
        for probe in sorted({0, len(lines) - 1}) if lines else ():     # first and last line only
            reason = "JSON data is not an object"
            try:
                ok = type(ujson.loads(lines[probe])) is dict
            except ValueError as e:
                ok, reason = False, f"Parse json data for JsonDoc failed. code: 2, error info: {e}"
            if not ok:
                out.filtered += 1
                out.errors.append((reason, lines[probe].decode("utf-8", "replace")))
        return out
    sep = spec.column_separator.encode("utf-8")
    raw = body
    enclosed = spec.enclose is not None and spec.enclose.encode("utf-8") in body
    if enclosed:
        body = _blank_enclosed(spec, body)
        if body is None:
            return _count_by_parsing(spec, p, raw)
    nf = len(p.slots)
    n = body.count(delim)
    if body and not body.endswith(delim):
        n += 1
    n -= min(n, spec.skip_lines)
    out.total = n
    if spec.skip_lines == 0 and delim * 2 not in body and not body.startswith(delim) \
            and body.count(sep) == n * (nf - 1):
        return out          # totals match: bench mode trusts them (a line with one field too many
                            # and another with one too few would slip through; the full path checks)
    out.total = 0                                 # mismatch somewhere: find the bad lines
    for line in body.split(delim)[spec.skip_lines:]:
        if not line:
            continue
        out.total += 1
        k = line.count(sep) + 1
        if k != nf:
            out.filtered += 1
            out.errors.append((f"actual column number in csv file is {'more' if k > nf else 'less'} than "
                               f"schema column number.actual number: {k}, schema column number: {nf}",
                               line.decode("utf-8", "replace")))
    if enclosed and out.filtered:       # the blanked lines would read wrong in the error log
        return _count_by_parsing(spec, p, raw)
    return out


def _count_by_parsing(spec: LoadSpec, p: Plan, body: bytes) -> Outcome:
    out = run(spec, p, body)
    out.rows = []
    return out


def _blank_enclosed(spec: LoadSpec, body: bytes) -> bytes | None:
    """The body with each enclosed field (from its opening enclose to its closing one) replaced by one
    placeholder byte, read exactly as _split_enclosed reads it: what is left of separators and line
    delimiters are real ones, so the plain counts apply. None for non-ASCII enclose/escape characters."""
    enc, esc = spec.enclose, spec.escape
    if not enc.isascii() or (esc is not None and not esc.isascii()):
        return None
    sep, delim = spec.column_separator.encode("utf-8"), spec.line_delimiter.encode("utf-8")
    rx = _ENCLOSED_RX.get((enc, esc, sep, delim))
    if rx is None:
        e = re.escape(enc.encode())
        if esc is None or esc == enc:           # "" inside is a literal enclose
            inner = rb"(?:[^" + e + rb"]++|" + e + e + rb")*+"
        else:                                   # escape + any char is literal; a lone escape at the end too
            x = re.escape(esc.encode())
            inner = rb"(?:[^" + e + x + rb"]++|" + x + rb"(?:.|\Z))*+"
        # the enclose first, then a look back at what precedes it: a literal prefix lets the
        # regex engine skip to each enclose instead of trying every position (26 -> >300 MB/s)
        start = e + rb"(?:(?<=" + re.escape(sep) + e + rb")|(?<=" + re.escape(delim) + e + rb"))"
        rx = re.compile(start + inner + rb"(?:" + e + rb"|\Z)", re.S)
        _ENCLOSED_RX[(enc, esc, sep, delim)] = rx
    mark = next(c for c in (b"0", b"Q", b"~") if c not in sep and c not in delim)
    return rx.sub(mark, delim + body)[len(delim):]     # the leading delim: a field at the very start


_ENCLOSED_RX: dict[tuple, re.Pattern] = {}
