"""The Doris table's columns: type strings parsed into DorisType, read over the MySQL protocol.

Doris prints types differently by version and by where you look (``DATETIMEV2(3)`` on 2.x,
``datetime(3)`` on 3.x, ``decimalv3(10, 2)`` and ``bigint unsigned`` in information_schema), so
``parse_type`` folds every variant into one canonical shape the mappers can rely on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import DorisFatalError, SchemaError, TransportError


@dataclass(frozen=True)
class DorisType:
    raw: str                     # as Doris printed it, e.g. "varchar(20)", "DECIMAL(10, 2)", "datetimev2(3)"
    base: str                    # canonical upper case: INT BIGINT LARGEINT TINYINT SMALLINT BOOLEAN FLOAT DOUBLE DECIMAL
                                 # CHAR VARCHAR STRING DATE DATETIME JSON VARIANT ARRAY MAP STRUCT IPV4 IPV6 HLL BITMAP ...
    length: int | None = None    # CHAR/VARCHAR n (bytes)
    precision: int | None = None  # DECIMAL p
    scale: int | None = None     # DECIMAL s; DATETIME fractional digits (0-6)


@dataclass(frozen=True)
class Column:
    name: str
    type: DorisType
    nullable: bool = True
    default: str | None = None   # None: no default
    is_key: bool = False
    aggregation: str | None = None


# Doris's documented default for a bare DECIMAL (2.0-3.0 docs); DESCRIBE always prints p and s.
DECIMAL_DEFAULT = (9, 0)
VARCHAR_MAX = 65533              # a VARCHAR without a length (or "varchar(*)") is the maximum
CHAR_DEFAULT = 1

_ALIASES = {
    "tinyint": "TINYINT", "smallint": "SMALLINT", "int": "INT", "integer": "INT",
    "bigint": "BIGINT", "largeint": "LARGEINT",
    "boolean": "BOOLEAN", "bool": "BOOLEAN",
    "float": "FLOAT", "real": "FLOAT", "double": "DOUBLE",
    "decimal": "DECIMAL", "numeric": "DECIMAL", "dec": "DECIMAL",
    "decimal32": "DECIMAL", "decimal64": "DECIMAL", "decimal128": "DECIMAL",
    "decimal128i": "DECIMAL", "decimal256": "DECIMAL",
    "char": "CHAR", "character": "CHAR", "varchar": "VARCHAR",
    "string": "STRING", "text": "STRING",
    "date": "DATE", "datetime": "DATETIME", "timestamp": "DATETIME",
    "json": "JSON", "jsonb": "JSON",
    "variant": "VARIANT", "ipv4": "IPV4", "ipv6": "IPV6",
    "hll": "HLL", "bitmap": "BITMAP", "quantile_state": "QUANTILE_STATE",
}
KNOWN_BASES = frozenset(_ALIASES.values()) | {"ARRAY", "MAP", "STRUCT", "AGG_STATE", "TIME"}
_COMPLEX = re.compile(r"^\s*(array|map|struct|variant|agg_state)\s*<(.*)>\s*$", re.I | re.S)
_SIMPLE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(?:\(\s*([^()]*?)\s*\))?"   # name, (args)
                     r"\s*((?:\s*(?:unsigned|signed|zerofill))*)\s*$", re.I)      # MySQL-style flags
_AGGREGATIONS = {"SUM", "MIN", "MAX", "REPLACE", "REPLACE_IF_NOT_NULL", "HLL_UNION", "BITMAP_UNION",
                 "QUANTILE_UNION", "GENERIC"}


def parse_type(text: str) -> DorisType:
    """Canonical DorisType for any Doris spelling of a type; unknown names keep their upper-cased name."""
    raw = str(text).strip()
    m = _COMPLEX.match(raw)
    if m:
        return DorisType(raw, m.group(1).upper())
    m = _SIMPLE.match(raw)
    if not m:
        head = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", raw)
        return DorisType(raw, head.group(1).upper() if head else raw.upper())
    name, args, flags = m.group(1).lower(), m.group(2), (m.group(3) or "").lower()
    if "unsigned" in flags and name == "bigint":
        return DorisType(raw, "LARGEINT")          # information_schema's spelling of LARGEINT
    base_name = re.sub(r"v[23]$", "", name) if name not in _ALIASES else name
    base = _ALIASES.get(base_name, base_name.upper())
    nums = _ints(args)
    if base == "DECIMAL":
        p = nums[0] if nums else DECIMAL_DEFAULT[0]
        s = nums[1] if len(nums) > 1 else (0 if nums else DECIMAL_DEFAULT[1])
        return DorisType(raw, base, precision=p, scale=s)
    if base == "DATETIME":
        return DorisType(raw, base, scale=nums[0] if nums else 0)
    if base == "VARCHAR":
        return DorisType(raw, base, length=nums[0] if nums else VARCHAR_MAX)
    if base == "CHAR":
        return DorisType(raw, base, length=nums[0] if nums else CHAR_DEFAULT)
    return DorisType(raw, base)                    # int(11): display width, not a length


def _ints(args: str | None) -> list[int]:
    if not args:
        return []
    out = []
    for part in args.split(","):
        part = part.strip()
        if not part.isdigit():
            return out
        out.append(int(part))
    return out


# -- rows -> columns ----------------------------------------------------------------------------
def _get(row, names: tuple[str, ...], index: int):
    if isinstance(row, dict):
        lowered = {str(k).lower(): v for k, v in row.items()}
        for n in names:
            if n in lowered:
                return lowered[n]
        return None
    return row[index] if index < len(row) else None


def _text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray)):
        v = v.decode("utf-8", "replace")
    return str(v)


def _hidden(name: str) -> bool:
    return name.upper().startswith("__DORIS_")


def _aggregation(extra) -> str | None:
    for token in re.split(r"[\s,]+", (_text(extra) or "").upper()):
        if token in _AGGREGATIONS:
            return token
    return None


def columns_from_describe(rows) -> list[Column]:
    """Columns from ``DESCRIBE`` rows: (Field, Type, Null, Key, Default, Extra) tuples or dicts."""
    out = []
    for row in rows:
        name = _text(_get(row, ("field",), 0))
        type_text = _text(_get(row, ("type",), 1))
        if not name or not type_text or _hidden(name):
            continue
        null = (_text(_get(row, ("null",), 2)) or "YES").strip().upper()
        key = (_text(_get(row, ("key",), 3)) or "").strip().lower()
        default = _text(_get(row, ("default",), 4))
        out.append(Column(name, parse_type(type_text), nullable=null in ("YES", "Y", "TRUE", "1"),
                          default=None if default is None or default.upper() == "NULL" else default,
                          is_key=key in ("true", "yes", "1", "pri", "dup", "uni", "agg"),
                          aggregation=_aggregation(_get(row, ("extra",), 5))))
    return out


def columns_from_information_schema(rows) -> list[Column]:
    """Columns from information_schema.columns rows, already in ORDINAL_POSITION order:
    (COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY, COLUMN_DEFAULT, DATA_TYPE) or dicts."""
    out = []
    for row in rows:
        name = _text(_get(row, ("column_name",), 0))
        type_text = _text(_get(row, ("column_type",), 1)) or _text(_get(row, ("data_type",), 5))
        if not name or not type_text or _hidden(name):
            continue
        null = (_text(_get(row, ("is_nullable",), 2)) or "YES").strip().upper()
        key = (_text(_get(row, ("column_key",), 3)) or "").strip()
        default = _text(_get(row, ("column_default",), 4))
        out.append(Column(name, parse_type(type_text), nullable=null in ("YES", "Y", "TRUE", "1"),
                          default=None if default is None or default.upper() == "NULL" else default,
                          is_key=bool(key), aggregation=None))
    return out


def columns_from_config(mapping_cfg) -> list[Column]:
    """Columns listed in ``mapping.schema`` (for tables sinker may not DESCRIBE)."""
    return [Column(c.name, parse_type(c.type), nullable=c.nullable, default=c.default)
            for c in mapping_cfg.schema]


# -- over the MySQL protocol ----------------------------------------------------------------------
def _host(entry: str) -> str:
    entry = entry.strip()
    if entry.startswith("["):                      # [::1]:8030
        return entry[1:entry.index("]")] if "]" in entry else entry[1:]
    return entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _kind(e: BaseException) -> str:
    """auth | missing | transport | other, for a pymysql / socket error."""
    code = e.args[0] if e.args and isinstance(e.args[0], int) else None
    msg = " ".join(str(a) for a in e.args).lower() if e.args else str(e).lower()
    if code in (1044, 1045, 1227) or "access denied" in msg or "password" in msg:
        return "auth"
    if code in (1049, 1146, 1109) or re.search(
            r"unknown (database|table)|(database|table)\b.{0,80}?\b"
            r"(does not exist|doesn't exist|not exist|not found)", msg):
        return "missing"
    if isinstance(e, (OSError, TimeoutError)) or (code is not None and 2000 <= code < 3000) \
            or type(e).__name__ in ("InterfaceError",):
        return "transport"
    return "other"


def fetch_schema(doris_cfg, db: str, table: str) -> list[Column]:
    """The table's columns, from the first FE (in ``fe_hosts`` order) that answers."""
    import pymysql

    hosts = [_host(h) for h in doris_cfg.fe_hosts]
    port = doris_cfg.query_port
    failures = []
    for host in hosts:
        try:
            conn = pymysql.connect(host=host, port=port, user=doris_cfg.user,
                                   password=doris_cfg.password or "",
                                   connect_timeout=doris_cfg.connect_timeout_s,
                                   read_timeout=max(doris_cfg.connect_timeout_s, 30),
                                   autocommit=True, charset="utf8mb4")
        except Exception as e:  # noqa: BLE001 - sorted by _kind below
            kind = _kind(e)
            if kind == "auth":
                raise DorisFatalError(
                    f"Doris FE {host}:{port} refused user {doris_cfg.user!r}: {e}. Check doris.user and "
                    "doris.password (env SINKER_DORIS_PASSWORD).") from e
            failures.append(f"{host}:{port} ({e})")
            continue
        try:
            return _read_columns(conn, db, table)
        except (DorisFatalError, SchemaError):
            raise
        except Exception as e:  # noqa: BLE001
            kind = _kind(e)
            if kind == "auth":
                raise DorisFatalError(
                    f"user {doris_cfg.user!r} may not read {db}.{table} on Doris FE {host}:{port}: {e}. "
                    "Grant it SELECT_PRIV/LOAD_PRIV or fix doris.user / SINKER_DORIS_PASSWORD.") from e
            if kind == "missing":
                raise _not_found(db, table, e) from e
            if kind == "other":
                raise DorisFatalError(
                    f"could not read the columns of {db}.{table} from Doris FE {host}:{port}: {e}. "
                    "List them in mapping.schema instead, or fix the table.") from e
            failures.append(f"{host}:{port} ({e})")
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
    raise TransportError(
        f"no Doris FE answered on the query port {port} (tried {', '.join(failures) or 'no hosts'}). "
        "Check doris.fe_hosts and doris.query_port, and that the FE is up.")


def _not_found(db: str, table: str, cause=None) -> SchemaError:
    why = f" ({cause})" if cause else ""
    return SchemaError(f"table {db}.{table} not found in Doris{why}: create it or fix doris.database / "
                       "doris.table")


def _read_columns(conn, db: str, table: str) -> list[Column]:
    cols: list[Column] = []
    describe_error = None
    with conn.cursor() as cur:
        try:
            cur.execute(f"DESCRIBE {_quote(db)}.{_quote(table)}")
            rows = cur.fetchall()
            names = [d[0] for d in (cur.description or ())]
            if names and {"field", "type"} <= {str(n).lower() for n in names}:
                rows = [dict(zip(names, r)) for r in rows]
            cols = columns_from_describe(rows)
        except Exception as e:  # noqa: BLE001 - decide below; missing/auth/transport raise at once
            if _kind(e) != "other":
                raise
            describe_error = e
        if cols:
            return cols
        cur.execute(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY, COLUMN_DEFAULT, DATA_TYPE "
            "FROM information_schema.columns WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION", (db, table))
        cols = columns_from_information_schema(cur.fetchall())
    if cols:
        return cols
    raise _not_found(db, table, describe_error)
