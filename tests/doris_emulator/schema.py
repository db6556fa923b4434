"""What a Doris table is in the emulator: columns, types, the errors Doris answers, literal coercion.

Shared by the SQL parser (sql_parser.py), the storage (storage.py), the statement executor
(sql_exec.py) and the Stream Load side (loader.py reads Column/TableDef).
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation


EXACT = Context(prec=200)   # exact arithmetic for DECIMAL(38)/LARGEINT (the default context keeps 28 digits)

# ---------------------------------------------------------------------------------------------- errors


class DorisError(Exception):
    """An error the MySQL server sends as an ERR packet: ``code`` is the MySQL error number."""

    def __init__(self, message: str, code: int = 1105, sqlstate: str = "HY000"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.sqlstate = sqlstate


def err(detail: str, code: int = 1105, sqlstate: str = "HY000") -> DorisError:
    """Doris wraps FE analysis errors as ``errCode = 2, detailMessage = ...``."""
    return DorisError(f"errCode = 2, detailMessage = {detail}", code, sqlstate)


def unknown_db(db: str) -> DorisError:
    return err(f"Unknown database '{db}'", 1049, "42000")


def unknown_table(db: str, table: str) -> DorisError:
    return err(f"Table [{table}] does not exist in database [{db}].", 1146, "42S02")


# ------------------------------------------------------------------------------------------ data model


@dataclass
class Column:
    name: str
    type_str: str
    base: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True
    default: str | None = None
    is_key: bool = False
    aggregation: str | None = None
    comment: str = ""          # addition to the contract: for SHOW CREATE TABLE / information_schema


@dataclass
class TableDef:
    db: str
    name: str
    columns: list[Column]
    keys_type: str
    key_columns: list[str]
    ddl: str
    properties: dict[str, str]
    # additions to the contract (defaults keep the listed constructor working):
    distribution: str = ""     # "DISTRIBUTED BY HASH(`a`) BUCKETS 4" as SHOW CREATE TABLE prints it
    partition: str = ""        # raw PARTITION BY clause, if any
    comment: str = ""

    def column(self, name: str) -> Column | None:
        low = name.lower()
        for c in self.columns:
            if c.name.lower() == low:
                return c
        return None



# Marker str subclasses: the MySQL server maps them to DECIMAL / DATE / DATETIME column types.
class DecimalText(str):
    pass


class DateText(str):
    pass


class DateTimeText(str):
    pass


# --------------------------------------------------------------------------------------------- types

_INT_BASES = {"TINYINT": "tinyint", "SMALLINT": "smallint", "INT": "int", "INTEGER": "int",
              "BIGINT": "bigint", "LARGEINT": "largeint"}
_SIMPLE = {"BOOLEAN": ("BOOLEAN", "boolean"), "BOOL": ("BOOLEAN", "boolean"),
           "FLOAT": ("FLOAT", "float"), "DOUBLE": ("DOUBLE", "double"),
           "STRING": ("STRING", "text"), "TEXT": ("STRING", "text"),
           "DATE": ("DATE", "date"), "DATEV2": ("DATE", "date"),
           "JSON": ("JSON", "json"), "JSONB": ("JSON", "json"),
           "VARIANT": ("VARIANT", "variant"), "IPV4": ("IPV4", "ipv4"), "IPV6": ("IPV6", "ipv6"),
           "HLL": ("HLL", "hll"), "BITMAP": ("BITMAP", "bitmap"),
           "QUANTILE_STATE": ("QUANTILE_STATE", "quantile_state")}
COMPLEX_TYPES = ("ARRAY", "MAP", "STRUCT")
AGG_TYPES = {"SUM", "MAX", "MIN", "REPLACE", "REPLACE_IF_NOT_NULL", "HLL_UNION", "BITMAP_UNION",
              "QUANTILE_UNION", "GENERIC"}
_INT_RANGES = {"TINYINT": 8, "SMALLINT": 16, "INT": 32, "BIGINT": 64, "LARGEINT": 128}


def make_column(name: str, type_word: str, args: list[int] | None = None, inner: str = "") -> Column:
    """Build a Column from a parsed type; raises DorisError for types Doris does not know."""
    t = type_word.upper()
    args = args or []
    if t in _INT_BASES:
        base = "INT" if t == "INTEGER" else t
        return Column(name, _INT_BASES[t], base)
    if t in _SIMPLE:
        base, ts = _SIMPLE[t]
        return Column(name, ts, base)
    if t in ("DECIMAL", "DECIMALV2", "DECIMALV3", "NUMERIC"):
        p = args[0] if args else 9
        s = args[1] if len(args) > 1 else 0
        if not 1 <= p <= 38:
            raise err(f"Decimal precision must be in range [1, 38], but got {p}")
        if not 0 <= s <= p:
            raise err(f"Decimal scale must be in range [0, {p}], but got {s}")
        return Column(name, f"decimal({p},{s})", "DECIMAL", precision=p, scale=s)
    if t in ("CHAR", "VARCHAR"):
        n = args[0] if args else (1 if t == "CHAR" else 65533)
        limit = 255 if t == "CHAR" else 65533
        if not 1 <= n <= limit:
            raise err(f"{t} size must be in range [1, {limit}], but got {n}")
        return Column(name, f"{t.lower()}({n})", t, length=n)
    if t in ("DATETIME", "DATETIMEV2"):
        s = args[0] if args else 0
        if not 0 <= s <= 6:
            raise err(f"Scale of Datetime/Time must between 0 and 6. Scale was set to: {s}")
        return Column(name, f"datetime({s})" if s else "datetime", "DATETIME", scale=s)
    if t in COMPLEX_TYPES:
        return Column(name, f"{t.lower()}<{inner.lower()}>", t)
    raise err(f"Unknown data type: '{type_word}'. Supported: TINYINT SMALLINT INT BIGINT LARGEINT "
               "BOOLEAN FLOAT DOUBLE DECIMAL CHAR VARCHAR STRING DATE DATETIME JSON ARRAY MAP STRUCT "
               "VARIANT IPV4 IPV6 HLL BITMAP")


def schema_type(c: Column) -> tuple[str, str]:
    """(DATA_TYPE, COLUMN_TYPE) as information_schema.columns shows them (Doris internal names)."""
    b = c.base
    if b == "INT":
        return "int", "int(11)"
    if b in ("TINYINT", "SMALLINT", "BIGINT"):
        width = {"TINYINT": 4, "SMALLINT": 6, "BIGINT": 20}[b]
        return b.lower(), f"{b.lower()}({width})"
    if b == "LARGEINT":
        return "bigint unsigned", "bigint unsigned"
    if b == "BOOLEAN":
        return "tinyint", "tinyint(1)"
    if b == "DECIMAL":
        return "decimalv3", f"decimalv3({c.precision},{c.scale})"
    if b == "DATE":
        return "datev2", "datev2"
    if b == "DATETIME":
        return "datetimev2", f"datetimev2({c.scale or 0})"
    if b == "STRING":
        return "text", "text"
    if b in ("CHAR", "VARCHAR"):
        return b.lower(), c.type_str
    return c.type_str.split("<")[0], c.type_str


# ------------------------------------------------------------------------------------ value coercion

_DT_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,6}))?)?)?$")


def coerce_value(c: Column, v: object) -> object:
    """Convert an SQL literal (INSERT VALUES, ADD COLUMN DEFAULT) to the stored form insert_rows takes."""
    if v is None:
        return None
    b = c.base
    try:
        if b in _INT_RANGES or b == "BOOLEAN":
            if isinstance(v, str) and b == "BOOLEAN" and v.lower() in ("true", "false"):
                return 1 if v.lower() == "true" else 0
            n = int(Decimal(str(v))) if not isinstance(v, int) else int(v)
            if b == "BOOLEAN":
                return 1 if n else 0
            bits = _INT_RANGES[b]
            if not -(1 << (bits - 1)) <= n < (1 << (bits - 1)):
                raise ValueError("out of range")
            return n
        if b in ("FLOAT", "DOUBLE"):
            return float(v)
        if b == "DECIMAL":
            d = Decimal(str(v)).quantize(Decimal(1).scaleb(-(c.scale or 0)), context=EXACT)
            if len(d.as_tuple().digits) > (c.precision or 38) and d != 0:
                raise ValueError("out of range")
            return format(d, "f")
        if b in ("DATE", "DATETIME"):
            m = _DT_RE.match(str(v).strip())
            if not m:
                raise ValueError("bad date")
            y, mo, d, hh, mi, ss, frac = m.groups()
            x = _dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0),
                             int((frac or "0").ljust(6, "0")))
            if b == "DATE":
                return x.strftime("%Y-%m-%d")
            s = x.strftime("%Y-%m-%d %H:%M:%S")
            return s + ("." + f"{x.microsecond:06d}"[:c.scale] if c.scale else "")
        if b in ("CHAR", "VARCHAR"):
            text = str(v)
            if len(text.encode()) > (c.length or 0):
                raise ValueError("too long")
            return text
        if b in ("JSON", "VARIANT"):
            return json.dumps(json.loads(v) if isinstance(v, str) else v, separators=(",", ":"),
                              ensure_ascii=False)
        return str(v)
    except (ValueError, InvalidOperation, TypeError, OverflowError):
        raise err(f"[INVALID_ARGUMENT]Invalid value '{v}' for column '{c.name}' of type {c.type_str}")


def default_value(c: Column) -> object:
    if c.default is None:
        return None
    if c.default.upper().startswith("CURRENT_TIMESTAMP"):
        now = _dt.datetime.now()
        return coerce_value(c, now.strftime("%Y-%m-%d %H:%M:%S.%f"))
    return coerce_value(c, c.default)
