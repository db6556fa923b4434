"""The Doris table's columns, read over the MySQL protocol, and the SchemaSource that keeps them current.

Rows of ``DESCRIBE`` or ``information_schema.columns`` become ``Column`` values (lib/doris_types.py);
``SchemaSource`` refreshes them off the data path so an added column is picked up without a restart.
"""
from __future__ import annotations

import logging
import re
import ssl
import threading

from .doris_types import Column, parse_type
from .errors import DorisFatalError, SchemaError, SinkerError, TransportError

log = logging.getLogger("sinker.schema")


_AGGREGATIONS = {"SUM", "MIN", "MAX", "REPLACE", "REPLACE_IF_NOT_NULL", "HLL_UNION", "BITMAP_UNION",
                 "QUANTILE_UNION", "GENERIC"}


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
        extra = _get(row, ("extra",), 5)
        out.append(Column(name, parse_type(type_text), nullable=null in ("YES", "Y", "TRUE", "1"),
                          default=None if default is None or default.upper() == "NULL" else default,
                          is_key=key in ("true", "yes", "1", "pri", "dup", "uni", "agg"),
                          aggregation=_aggregation(extra),
                          auto_increment="AUTO_INCREMENT" in (_text(extra) or "").upper()))
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


def _tls_context(doris_cfg) -> ssl.SSLContext | None:
    """With doris.https the query port speaks TLS too, verified like the HTTP side: the server's
    certificate against doris.ca_file (else the system CAs), and its name against the host."""
    if not doris_cfg.https:
        return None
    return ssl.create_default_context(cafile=doris_cfg.ca_file)   # CERT_REQUIRED, check_hostname


def connect(doris_cfg):
    """A pymysql connection to the first FE (in ``fe_hosts`` order) whose query port answers.
    Returns (connection, "host:port"); refused credentials or an FE certificate that does not
    verify raise DorisFatalError at once."""
    import pymysql

    port = doris_cfg.query_port
    tls = _tls_context(doris_cfg)
    failures = []
    for host, _http_port in doris_cfg.fe_addresses:
        try:
            conn = pymysql.connect(host=host, port=port, user=doris_cfg.user,
                                   password=doris_cfg.password or "",
                                   connect_timeout=doris_cfg.connect_timeout_s,
                                   read_timeout=max(doris_cfg.connect_timeout_s, 30),
                                   autocommit=True, charset="utf8mb4", ssl=tls)
            return conn, f"{host}:{port}"
        except Exception as e:  # noqa: BLE001 - sorted by _kind below
            if tls is not None and "CERTIFICATE_VERIFY_FAILED" in str(e):
                from .stream_load import certificate_refused
                detail = str(e.args[1]) if len(e.args) > 1 else str(e)
                raise certificate_refused(f"the MySQL port of Doris FE {host}:{port}", detail,
                                          doris_cfg) from None
            if tls is not None and "SSL is required" in str(e):
                raise DorisFatalError(
                    f"Doris FE {host}:{port} does not offer TLS on its query port, but "
                    "doris.https is true: enable TLS on the FE's MySQL port (enable_ssl) or "
                    "turn doris.https off.") from None
            if _kind(e) == "auth":
                raise DorisFatalError(
                    f"Doris FE {host}:{port} refused user {doris_cfg.user!r}: {e}. Check doris.user and "
                    "doris.password (env SINKER_DORIS_PASSWORD).") from e
            failures.append(f"{host}:{port} ({e})")
    raise TransportError(
        f"no Doris FE answered on the query port {port} (tried {', '.join(failures) or 'no hosts'}). "
        "Check doris.fe_hosts and doris.query_port, and that the FE is up.")


def fetch_schema(doris_cfg, db: str, table: str) -> list[Column]:
    """The table's columns, from the first FE that answers."""
    conn, where = connect(doris_cfg)
    try:
        return _read_columns(conn, db, table)
    except (DorisFatalError, SchemaError):
        raise
    except Exception as e:  # noqa: BLE001
        kind = _kind(e)
        if kind == "auth":
            raise DorisFatalError(
                f"user {doris_cfg.user!r} may not read {db}.{table} on Doris FE {where}: {e}. "
                "Grant it SELECT_PRIV/LOAD_PRIV or fix doris.user / SINKER_DORIS_PASSWORD.") from e
        if kind == "missing":
            raise _not_found(db, table, e) from e
        if kind == "other":
            raise DorisFatalError(
                f"could not read the columns of {db}.{table} from Doris FE {where}: {e}. "
                "List them in mapping.schema instead, or fix the table.") from e
        raise TransportError(f"reading the columns of {db}.{table} from Doris FE {where} failed: "
                             f"{e}. Check that the FE is up.") from e
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass


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


_KEYS_RE = re.compile(r"\b(UNIQUE|DUPLICATE|AGGREGATE)\s+KEY\s*\(", re.I)
_QUOTED_RE = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`")
_PROP_RE = re.compile(r'"(function_column\.sequence_(?:col|type))"\s*=\s*"([^"]*)"', re.I)


def model_from_ddl(ddl: str):
    """The TableModel SHOW CREATE TABLE's text describes (no keys clause: DUPLICATE, Doris's default)."""
    from .envelope import TableModel
    # the keys clause outside quotes: a column's COMMENT may say "UNIQUE KEY (...)" too
    m = _KEYS_RE.search(_QUOTED_RE.sub("''", ddl))
    keys = m.group(1).upper() if m else "DUPLICATE"
    props = {k.lower(): v for k, v in _PROP_RE.findall(ddl)}
    return TableModel(keys, props.get("function_column.sequence_col") or None,
                      "function_column.sequence_type" in props)


def table_model(cfg):
    """The target table's TableModel from SHOW CREATE TABLE; None when the columns are listed in
    mapping.schema (sinker then does not ask Doris about the table)."""
    if cfg.mapping.schema:
        return None
    db, table = cfg.doris.database, cfg.doris.table
    conn, where = connect(cfg.doris)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SHOW CREATE TABLE {_quote(db)}.{_quote(table)}")
            row = cur.fetchone()
    except Exception as e:  # noqa: BLE001 - sorted like fetch_schema's
        if _kind(e) == "missing":
            raise _not_found(db, table, e) from e
        raise TransportError(f"SHOW CREATE TABLE {db}.{table} on Doris FE {where} failed: {e}. "
                             "Check that the FE is up and the user may see the table.") from e
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
    return model_from_ddl(_text(row[1]) if row and len(row) > 1 else "")


def table_columns(cfg) -> list[Column]:
    """The target table's columns: listed in the config, or read from Doris."""
    if cfg.mapping.schema:
        return columns_from_config(cfg.mapping)
    return fetch_schema(cfg.doris, cfg.doris.database, cfg.doris.table)


class SchemaSource:
    """The current Mapper for the table. A refresher thread looks for schema changes every
    ``schema_refresh_s`` (or at once when a writer asks), so an added column is picked up without a
    restart; the batcher only compares ``generation`` and swaps mappers, never waits on Doris."""

    def __init__(self, cfg, fetch=table_columns, model=table_model):
        from . import envelope
        from .mapping import Mapper
        self.cfg = cfg
        self._fetch = fetch
        m = cfg.mapping
        # how the table merges a key's rows matters only to a mapping that deletes or orders them
        self.model = model(cfg) if envelope.is_cdc(m) or m.sequence_from is not None else None
        errors, self.warnings = envelope.fit(m, self.model, writers=cfg.writer.workers,
                                             group_commit=cfg.doris.group_commit)
        if errors:
            raise SchemaError(f"{cfg.doris.database}.{cfg.doris.table}: " + "; ".join(errors))
        self._build = lambda columns: Mapper(columns, m, timezone=cfg.doris.timezone,
                                             model=self.model)
        self._lock = threading.Lock()
        self._columns = fetch(cfg)
        self._mapper = self._build(self._columns)
        self.generation = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def columns(self):
        return self._columns

    def mapper(self):
        with self._lock:
            return self._mapper

    def request_refresh(self) -> None:
        """Called by a writer when Doris names a column we do not know."""
        self._wake.set()

    def refresh(self) -> bool:
        """Fetch the columns once; swap the mapper when they changed. True when they did."""
        try:
            columns = self._fetch(self.cfg)
        except SinkerError as e:
            log.warning("schema refresh failed (keeping the current one): %s", e)
            return False
        if columns == self._columns:
            return False
        known = {x.name for x in self._columns}
        added = [c.name for c in columns if c.name not in known]
        log.info("the Doris table changed (new columns: %s); mapping with the new schema",
                 ", ".join(added) or "none, types changed")
        mapper = self._build(columns)
        with self._lock:
            self._columns, self._mapper = columns, mapper
            self.generation += 1
        return True

    def start(self) -> None:
        """Refresh in the background (nothing to do when the schema is in the config)."""
        if self.cfg.mapping.schema or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="schema-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.cfg.mapping.schema_refresh_s)
            self._wake.clear()
            if not self._stop.is_set():
                self.refresh()


class SchemaSet:
    """The SchemaSource of every target table, as the batcher and the writers see them: the
    batcher seals on any table's change (``generation``), a writer's schema error refreshes all."""

    def __init__(self, sources: list[SchemaSource]):
        self.sources = sources
        self.warnings = [w for s in sources for w in s.warnings]

    @property
    def generation(self) -> int:
        return sum(s.generation for s in self.sources)

    def request_refresh(self) -> None:
        for s in self.sources:
            s.request_refresh()

    def start(self) -> None:
        for s in self.sources:
            s.start()

    def stop(self) -> None:
        for s in self.sources:
            s.stop()
