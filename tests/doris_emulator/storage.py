"""The emulator's catalog and storage: databases, tables and rows in sqlite, information_schema, txn records.

Why sqlite: it gives WHERE / ORDER BY / GROUP BY / COUNT(DISTINCT) for free, so tests can query what
landed exactly like they would on real Doris. SQL statements are run by sql_exec.py; the Stream Load
side calls insert_rows(); the transaction state machine (transactions.py) keeps its records here.

Value storage (so reads come back with the right Python types):
  integers/BOOLEAN -> INTEGER; FLOAT/DOUBLE -> REAL; LARGEINT -> decimal TEXT with a numeric collation
  (sqlite INTEGER is 64-bit) returned as int; DECIMAL -> exact TEXT with a numeric collation, returned as
  a ``DecimalText`` str; DATE/DATETIME -> TEXT returned as ``DateText``/``DateTimeText`` strs (the MySQL
  server marks those columns so pymysql gives Decimal/date/datetime like it does with real Doris);
  everything else -> TEXT.
"""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from decimal import Decimal, InvalidOperation

from . import sql_exec
from .schema import (EXACT, Column, DateText, DateTimeText, DecimalText, TableDef, default_value, err,
                     schema_type, unknown_db, unknown_table)
from .sql_parser import render_ddl
from .transactions import Txn


def _sqlite_decl(c: Column) -> str:
    """sqlite column declaration; the first word picks the output converter (see module docstring)."""
    b = c.base
    if b in ("TINYINT", "SMALLINT", "INT", "BIGINT", "BOOLEAN"):
        return "INTEGER"
    if b in ("FLOAT", "DOUBLE"):
        return "REAL"
    if b == "LARGEINT":
        return "EMUBIG TEXT COLLATE EMUBIGNUM"
    if b == "DECIMAL":
        return "EMUDEC TEXT COLLATE EMUDECNUM"
    if b == "DATE":
        return "EMUDATE TEXT"
    if b == "DATETIME":
        return "EMUDT TEXT"
    return "TEXT"


def _num_collation(conv):
    def cmp(a: str, b: str) -> int:
        try:
            x, y = conv(a), conv(b)
        except (ValueError, InvalidOperation):
            x, y = a, b
        return (x > y) - (x < y)
    return cmp


sqlite3.register_converter("EMUBIG", lambda b: int(b))
sqlite3.register_converter("EMUDEC", lambda b: DecimalText(b.decode()))
sqlite3.register_converter("EMUDATE", lambda b: DateText(b.decode()))
sqlite3.register_converter("EMUDT", lambda b: DateTimeText(b.decode()))
sqlite3.register_adapter(Decimal, str)


_INFO_COLUMNS = ("TABLE_CATALOG TEXT, TABLE_SCHEMA TEXT, TABLE_NAME TEXT, COLUMN_NAME TEXT, "
                 "ORDINAL_POSITION INTEGER, COLUMN_DEFAULT TEXT, IS_NULLABLE TEXT, DATA_TYPE TEXT, "
                 "CHARACTER_MAXIMUM_LENGTH INTEGER, CHARACTER_OCTET_LENGTH INTEGER, NUMERIC_PRECISION INTEGER, "
                 "NUMERIC_SCALE INTEGER, DATETIME_PRECISION INTEGER, CHARACTER_SET_NAME TEXT, "
                 "COLLATION_NAME TEXT, COLUMN_TYPE TEXT, COLUMN_KEY TEXT, EXTRA TEXT, PRIVILEGES TEXT, "
                 "COLUMN_COMMENT TEXT, COLUMN_SIZE INTEGER, DECIMAL_DIGITS INTEGER, GENERATION_EXPRESSION TEXT, "
                 "SRS_ID INTEGER")
_INFO_TABLES = ("TABLE_CATALOG TEXT, TABLE_SCHEMA TEXT, TABLE_NAME TEXT, TABLE_TYPE TEXT, ENGINE TEXT, "
                "VERSION INTEGER, ROW_FORMAT TEXT, TABLE_ROWS INTEGER, CREATE_TIME TEXT, TABLE_COMMENT TEXT")


class Catalog:
    """Thread-safe (one RLock). Storage in sqlite (in memory by default)."""

    def __init__(self, path: str = ":memory:"):
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                     detect_types=sqlite3.PARSE_DECLTYPES)
        c = self._conn
        c.create_collation("EMUBIGNUM", _num_collation(Decimal))
        c.create_collation("EMUDECNUM", _num_collation(Decimal))
        c.create_function("emu_dec_add", 3, _dec_add, deterministic=True)
        c.create_function("emu_big_add", 2, lambda a, b: str(int(a) + int(b)), deterministic=True)
        c.create_aggregate("sum", 1, _ExactSum)
        c.create_function("version", 0, lambda: "5.7.99")
        c.create_function("database", 0, lambda: self._cur_db)
        c.create_function("schema", 0, lambda: self._cur_db)
        c.create_function("current_user", 0, lambda: "'root'@'%'")
        c.create_function("user", 0, lambda: "root@127.0.0.1")
        c.create_function("connection_id", 0, lambda: 0)
        c.create_function("now", 0, lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
        c.create_function("now", 1, lambda n: time.strftime("%Y-%m-%d %H:%M:%S"))
        c.create_function("curdate", 0, lambda: time.strftime("%Y-%m-%d"))
        c.execute("PRAGMA case_sensitive_like = ON")     # Doris LIKE is case sensitive
        c.execute("ATTACH DATABASE ':memory:' AS information_schema")
        c.execute(f"CREATE TABLE information_schema.columns ({_INFO_COLUMNS})")
        c.execute(f"CREATE TABLE information_schema.tables ({_INFO_TABLES})")
        c.execute("CREATE TABLE information_schema.schemata (CATALOG_NAME TEXT, SCHEMA_NAME TEXT, "
                  "DEFAULT_CHARACTER_SET_NAME TEXT, DEFAULT_COLLATION_NAME TEXT, SQL_PATH TEXT)")
        c.execute("CREATE TABLE IF NOT EXISTS _emu_meta (db TEXT, name TEXT, sqlname TEXT, def TEXT)")
        c.execute("CREATE TABLE IF NOT EXISTS _emu_dbs (name TEXT PRIMARY KEY)")
        self._cur_db: str | None = None
        self._dbs: dict[str, dict[str, TableDef]] = {}
        self._sqlname: dict[tuple[str, str], str] = {}
        self._next_table = 1
        self._txns: dict[str, list[Txn]] = {}
        # sequence-column tables: per (db, table), the sequence of each deleted key (the hidden
        # delete-signed row Doris keeps); in memory only, like a catalog that is never compacted
        self._deleted: dict[tuple[str, str], dict[tuple, object]] = {}
        self._txn_by_id: dict[int, Txn] = {}
        self._next_txn = 1000
        self._load_meta()

    # ------------------------------------------------------------------ persistence (file-backed only)

    def _load_meta(self) -> None:
        for (name,) in self._conn.execute("SELECT name FROM _emu_dbs").fetchall():
            self._dbs[name] = {}
            self._info_db(name)
        for db, name, sqlname, d in self._conn.execute("SELECT db, name, sqlname, def FROM _emu_meta").fetchall():
            raw = json.loads(d)
            raw["columns"] = [Column(**c) for c in raw["columns"]]
            td = TableDef(**raw)
            self._dbs.setdefault(db, {})[name] = td
            self._sqlname[(db, name)] = sqlname
            self._next_table = max(self._next_table, int(sqlname.split("_")[-1]) + 1)
            self._info_table(td)

    def _save_meta(self, td: TableDef) -> None:
        self._conn.execute("DELETE FROM _emu_meta WHERE db = ? AND name = ?", (td.db, td.name))
        self._conn.execute("INSERT INTO _emu_meta VALUES (?, ?, ?, ?)",
                           (td.db, td.name, self._sqlname[(td.db, td.name)], json.dumps(dataclasses.asdict(td))))

    # ------------------------------------------------------------------------------------- databases

    def create_database(self, name: str, if_not_exists: bool = False) -> None:
        with self._lock:
            if name in self._dbs:
                if if_not_exists:
                    return
                raise err(f"Can't create database '{name}'; database exists", 1007, "HY000")
            if name.lower() in ("information_schema", "mysql", "__internal_schema"):
                raise err(f"Can't create database '{name}': the name is reserved", 1007)
            self._dbs[name] = {}
            self._conn.execute("INSERT INTO _emu_dbs VALUES (?)", (name,))
            self._info_db(name)

    def drop_database(self, name: str, if_exists: bool = False) -> None:
        with self._lock:
            if name not in self._dbs:
                if if_exists:
                    return
                raise err(f"Can't drop database '{name}'; database doesn't exist", 1008)
            for t in list(self._dbs[name]):
                self.drop_table(name, t)
            del self._dbs[name]
            self._conn.execute("DELETE FROM _emu_dbs WHERE name = ?", (name,))
            self._conn.execute("DELETE FROM information_schema.schemata WHERE SCHEMA_NAME = ?", (name,))
            self._txns.pop(name, None)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def db_id(self, name: str) -> int:
        """A stable numeric id like the FE's (Doris messages name databases by id)."""
        with self._lock:
            names = list(self._dbs)
            return 10001 + (names.index(name) if name in names else len(names))

    def has_database(self, name: str) -> bool:
        with self._lock:
            return name in self._dbs

    def databases(self) -> list[str]:
        with self._lock:
            return sorted(self._dbs)

    def tables(self, db: str) -> list[str]:
        with self._lock:
            if db not in self._dbs:
                raise unknown_db(db)
            return sorted(self._dbs[db])

    # ---------------------------------------------------------------------------------------- tables

    def get_table(self, db: str, name: str) -> TableDef | None:
        with self._lock:
            return self._dbs.get(db, {}).get(name)

    def _table(self, db: str | None, name: str) -> TableDef:
        if not db:
            raise err("No database selected", 1046, "3D000")
        if db not in self._dbs:
            raise unknown_db(db)
        td = self._dbs[db].get(name)
        if td is None:
            raise unknown_table(db, name)
        return td

    def create_table(self, td: TableDef, if_not_exists: bool = False) -> bool:
        """Register a parsed table (td.db must be set); False when it existed and if_not_exists."""
        with self._lock:
            if td.db not in self._dbs:
                raise unknown_db(td.db)
            if td.name in self._dbs[td.db]:
                if if_not_exists:
                    return False
                raise err(f"Table '{td.name}' already exists", 1050, "42S01")
            sqlname = f"t_{self._next_table}"
            self._next_table += 1
            self._sqlname[(td.db, td.name)] = sqlname
            td.ddl = render_ddl(td)
            self._create_sqlite(sqlname, td)
            self._dbs[td.db][td.name] = td
            self._save_meta(td)
            self._info_table(td)
            return True

    def _create_sqlite(self, sqlname: str, td: TableDef) -> None:
        cols = ", ".join(f'"{c.name}" {_sqlite_decl(c)}' for c in td.columns)
        self._conn.execute(f'CREATE TABLE "{sqlname}" ({cols})')
        if td.keys_type in ("UNIQUE", "AGGREGATE"):
            keys = ", ".join(f'"{k}"' for k in td.key_columns)
            self._conn.execute(f'CREATE UNIQUE INDEX "{sqlname}_key" ON "{sqlname}" ({keys})')

    def drop_table(self, db: str, name: str, if_exists: bool = False) -> None:
        with self._lock:
            if if_exists and (db not in self._dbs or name not in self._dbs[db]):
                if db not in self._dbs:
                    raise unknown_db(db)
                return
            self._table(db, name)
            sqlname = self._sqlname.pop((db, name))
            del self._dbs[db][name]
            self._deleted.pop((db, name), None)
            self._conn.execute(f'DROP TABLE "{sqlname}"')
            self._conn.execute("DELETE FROM _emu_meta WHERE db = ? AND name = ?", (db, name))
            self._info_drop(db, name)

    def truncate_table(self, db: str, name: str) -> None:
        with self._lock:
            self._table(db, name)
            self._conn.execute(f'DELETE FROM "{self._sqlname[(db, name)]}"')
            self._deleted.pop((db, name), None)

    def add_column(self, db, table, column: Column, after: str | None = None) -> None:
        """ALTER TABLE ADD COLUMN: rebuilds the sqlite table so SELECT * keeps Doris's column order."""
        with self._lock:
            td = self._table(db, table)
            if td.column(column.name) is not None:
                raise err(f"Can not add column which already exists in base table: {column.name}", 1060)
            if td.keys_type == "AGGREGATE" and not column.is_key and not column.aggregation:
                raise err(f"The column[{column.name}] of an AGGREGATE KEY table must have an aggregation type")
            if td.keys_type != "AGGREGATE" and column.aggregation:
                raise err(f"Can not assign aggregation method on column in {td.keys_type} data model table: "
                           f"{column.name}")
            if not column.nullable and column.default is None:
                raise err(f"Can not add column {column.name} which is NOT NULL without a DEFAULT value")
            fill = default_value(column)
            if isinstance(fill, int) and column.base == "LARGEINT":
                fill = str(fill)
            pos = len(td.columns)
            if after is not None:
                if after == "":   # FIRST
                    pos = 0
                else:
                    ac = td.column(after)
                    if ac is None:
                        raise err(f"Column[{after}] does not exist in table {table}")
                    pos = td.columns.index(ac) + 1
            old_cols = [c.name for c in td.columns]
            # new lists, swapped in at the end: a loader holding td.columns never sees a half-changed list
            new_cols = td.columns[:pos] + [column] + td.columns[pos:]
            new_keys = [c.name for c in new_cols if c.is_key] if column.is_key else td.key_columns
            shape = dataclasses.replace(td, columns=new_cols, key_columns=new_keys)
            old = self._sqlname[(db, table)]
            new = f"t_{self._next_table}"
            self._next_table += 1
            self._conn.execute("BEGIN")
            try:
                self._create_sqlite(new, shape)
                names = ", ".join(f'"{n}"' for n in old_cols)
                self._conn.execute(f'INSERT INTO "{new}" ({names}, "{column.name}") '
                                   f'SELECT {names}, ? FROM "{old}"', (fill,))
                self._conn.execute(f'DROP TABLE "{old}"')
                self._conn.execute("COMMIT")
            except Exception:
                self._conn.execute("ROLLBACK")
                raise
            td.columns, td.key_columns = new_cols, new_keys
            self._sqlname[(db, table)] = new
            td.ddl = render_ddl(td)
            self._save_meta(td)
            self._info_table(td)

    # ------------------------------------------------------------------------------ information_schema

    def _info_db(self, db: str) -> None:
        self._conn.execute("INSERT INTO information_schema.schemata VALUES ('internal', ?, 'utf8', "
                           "'utf8_general_ci', NULL)", (db,))

    def _info_drop(self, db: str, name: str) -> None:
        self._conn.execute("DELETE FROM information_schema.columns WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                           (db, name))
        self._conn.execute("DELETE FROM information_schema.tables WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                           (db, name))

    def _info_table(self, td: TableDef) -> None:
        self._info_drop(td.db, td.name)
        key = {"DUPLICATE": "DUP", "UNIQUE": "UNI", "AGGREGATE": "AGG"}[td.keys_type]
        rows = []
        for i, c in enumerate(td.columns, 1):
            data_type, column_type = schema_type(c)
            rows.append(("internal", td.db, td.name, c.name, i, c.default, "YES" if c.nullable else "NO",
                         data_type, c.length, c.length, c.precision, c.scale if c.base == "DECIMAL" else None,
                         c.scale if c.base == "DATETIME" else None, None, None, column_type,
                         key if c.is_key else "", c.aggregation or "", "SELECT", c.comment,
                         c.length or c.precision, c.scale, None, None))
        self._conn.executemany("INSERT INTO information_schema.columns VALUES (" + ",".join("?" * 24) + ")", rows)
        self._conn.execute("INSERT INTO information_schema.tables VALUES ('internal', ?, ?, 'BASE TABLE', "
                           "'Doris', NULL, NULL, 0, ?, ?)",
                           (td.db, td.name, time.strftime("%Y-%m-%d %H:%M:%S"), td.comment))

    # ------------------------------------------------------------------------------------------ rows

    def insert_rows(self, db: str, table: str, rows: list[tuple], delete_sign: bool = False) -> None:
        """Atomic: all rows or none. Rows are in TableDef column order; with delete_sign (UNIQUE KEY
        tables) each row carries one more value, 1 to delete its key instead of writing it, in row order.
        A table with a sequence column (function_column.sequence_col) keeps, per key, the row with the
        highest sequence value: a row with a lower one neither replaces nor deletes."""
        if not rows:
            with self._lock:
                self._table(db, table)
            return
        with self._lock:
            td = self._table(db, table)
            sqlname = self._sqlname[(db, table)]
            big = [i for i, c in enumerate(td.columns) if c.base == "LARGEINT"]
            if big:
                rows = [_stringify(r, big) for r in rows]
            n = len(td.columns)
            marks = ",".join("?" * n)
            seq = td.properties.get("function_column.sequence_col") if td.keys_type == "UNIQUE" else None
            if td.keys_type == "DUPLICATE":
                stmt = f'INSERT INTO "{sqlname}" VALUES ({marks})'
            elif td.keys_type == "UNIQUE" and seq:
                stmt = f'INSERT INTO "{sqlname}" VALUES ({marks}) ' + _sequence_clause(td, sqlname, seq)
            elif td.keys_type == "UNIQUE":
                stmt = f'INSERT OR REPLACE INTO "{sqlname}" VALUES ({marks})'
            else:
                stmt = f'INSERT INTO "{sqlname}" VALUES ({marks}) ' + _upsert_clause(td)
            self._conn.execute("BEGIN")
            try:
                if seq:
                    self._write_sequenced(td, sqlname, stmt, seq, rows, delete_sign)
                elif delete_sign:
                    self._write_with_deletes(td, sqlname, stmt, seq, rows)
                else:
                    self._conn.executemany(stmt, rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                self._conn.execute("ROLLBACK")
                raise err(f"[INTERNAL_ERROR]insert into {db}.{table} failed: {e}") from e
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _write_with_deletes(self, td: TableDef, sqlname: str, stmt: str, seq: str | None, rows) -> None:
        """Runs of writes and runs of deletes, in the order the rows came (a later row wins)."""
        keys = [i for i, c in enumerate(td.columns) if c.is_key]
        where = " AND ".join(f'"{td.columns[i].name}" = ?' for i in keys)
        delete = f'DELETE FROM "{sqlname}" WHERE {where}'
        if seq:
            si = next(i for i, c in enumerate(td.columns) if c.name == seq)
            delete += f' AND ("{seq}" IS NULL OR ? >= "{seq}")'
        run: list[tuple] = []
        deleting = False
        for r in rows:
            is_delete = bool(r[-1])
            if is_delete != deleting and run:
                self._flush(stmt, delete, run, deleting)
                run = []
            deleting = is_delete
            if is_delete:
                run.append(tuple(r[i] for i in keys) + ((r[si],) if seq else ()))
            else:
                run.append(r[:-1])
        if run:
            self._flush(stmt, delete, run, deleting)

    def _write_sequenced(self, td: TableDef, sqlname: str, stmt: str, seq: str, rows, delete_sign: bool) -> None:
        """A sequence-column table keeps, per key, the row with the highest sequence value, and a
        delete is such a row too: a later-loaded change with a lower sequence does not bring a
        deleted key back. Equal values: the later-loaded row wins. Row by row, in load order."""
        keys = [i for i, c in enumerate(td.columns) if c.is_key]
        si = next(i for i, c in enumerate(td.columns) if c.name == seq)
        where = " AND ".join(f'"{td.columns[i].name}" = ?' for i in keys)
        select = f'SELECT "{seq}" FROM "{sqlname}" WHERE {where}'
        delete = f'DELETE FROM "{sqlname}" WHERE {where}'
        deleted = self._deleted.setdefault((td.db, td.name), {})
        prev = dict(deleted)                            # restored if the load rolls back
        try:
            for r in rows:
                k, s = tuple(r[i] for i in keys), r[si]
                if k in deleted and not _sequence_wins(s, deleted[k]):
                    continue                         # an older change of a deleted key
                if delete_sign and r[-1]:
                    stored = self._conn.execute(select, k).fetchone()
                    if stored is not None and not _sequence_wins(s, stored[0]):
                        continue                     # an older delete of a newer row
                    self._conn.execute(delete, k)
                    deleted[k] = s
                    continue
                deleted.pop(k, None)
                self._conn.execute(stmt, r[:-1] if delete_sign else r)
        except BaseException:
            self._deleted[(td.db, td.name)] = prev
            raise

    def _flush(self, stmt: str, delete: str, run: list[tuple], deleting: bool) -> None:
        self._conn.executemany(delete if deleting else stmt, run)

    def count_rows(self, db: str, table: str) -> int:
        with self._lock:
            self._table(db, table)
            return self._conn.execute(f'SELECT COUNT(*) FROM "{self._sqlname[(db, table)]}"').fetchone()[0]

    def fetch_rows(self, db: str, table: str, order_by: str | None = None) -> list[tuple]:
        """All rows in column order (test helper); order_by is raw SQL like '"id"'."""
        with self._lock:
            self._table(db, table)
            sql = f'SELECT * FROM "{self._sqlname[(db, table)]}"' + (f" ORDER BY {order_by}" if order_by else "")
            return self._conn.execute(sql).fetchall()

    # ----------------------------------------------------------------------------------- transactions

    def next_txn_id(self) -> int:
        with self._lock:
            self._next_txn += 1
            return self._next_txn

    def add_txn(self, txn: Txn) -> None:
        with self._lock:
            self._txns.setdefault(txn.db, []).append(txn)
            self._txn_by_id[txn.txn_id] = txn
            self._next_txn = max(self._next_txn, txn.txn_id)

    def find_txn(self, db: str, label: str | None = None, txn_id: int | None = None) -> Txn | None:
        with self._lock:
            if txn_id is not None:
                t = self._txn_by_id.get(txn_id)
                return t if t is not None and t.db == db and (label is None or t.label == label) else None
            for t in reversed(self._txns.get(db, [])):
                if t.label == label:
                    return t
            return None

    def list_txns(self, db: str) -> list[Txn]:
        with self._lock:
            return list(self._txns.get(db, []))

    # -------------------------------------------------------------------------------------------- SQL

    def execute(self, sql: str, current_db: str | None = None) -> tuple[list[str], list[tuple]]:
        """The contract's entry point: (column names, rows); statements without a result give ([], [])."""
        r = self.execute_full(sql, current_db)
        return r.columns, r.rows

    def execute_full(self, sql: str, current_db: str | None = None) -> sql_exec.Result:
        """Run one statement as Doris would answer it; raises DorisError."""
        with self._lock:
            self._cur_db = current_db
            return sql_exec.execute(self, sql, current_db)


def _stringify(row: tuple, idx: list[int]) -> tuple:
    r = list(row)
    for i in idx:
        v = r[i]
        if v is not None and not isinstance(v, str):
            r[i] = str(int(v))
    return tuple(r)


def _dec_add(a, b, scale):
    if a is None:
        return b
    if b is None:
        return a
    d = EXACT.add(Decimal(str(a)), Decimal(str(b)))
    return format(d.quantize(Decimal(1).scaleb(-scale), context=EXACT), "f")


def _sequence_wins(new, old) -> bool:
    """A row with sequence ``new`` replaces one with ``old``: not lower, and a NULL never wins over a value."""
    if old is None:
        return True
    if new is None:
        return False
    try:
        return Decimal(str(new)) >= Decimal(str(old))
    except InvalidOperation:
        return str(new) >= str(old)


def _sequence_clause(td: TableDef, sqlname: str, seq: str) -> str:
    """UNIQUE KEY with a sequence column: replace the stored row only when the new sequence value is not
    lower (a NULL one never wins over a stored value)."""
    keys = ", ".join(f'"{k}"' for k in td.key_columns)
    sets = ", ".join(f'"{c.name}" = excluded."{c.name}"' for c in td.columns if not c.is_key)
    if not sets:
        return f"ON CONFLICT({keys}) DO NOTHING"
    return (f'ON CONFLICT({keys}) DO UPDATE SET {sets} '
            f'WHERE "{sqlname}"."{seq}" IS NULL OR excluded."{seq}" >= "{sqlname}"."{seq}"')


def _upsert_clause(td: TableDef) -> str:
    """AGGREGATE KEY merge: ON CONFLICT(keys) DO UPDATE with each column's aggregation."""
    sets = []
    for c in td.columns:
        if c.is_key:
            continue
        q, ex = f'"{c.name}"', f'excluded."{c.name}"'
        agg = c.aggregation
        if agg == "SUM":
            if c.base == "DECIMAL":
                expr = f"emu_dec_add({q}, {ex}, {c.scale or 0})"
            elif c.base == "LARGEINT":
                expr = f"CASE WHEN {ex} IS NULL THEN {q} WHEN {q} IS NULL THEN {ex} ELSE emu_big_add({q}, {ex}) END"
            else:
                expr = f"CASE WHEN {ex} IS NULL THEN {q} WHEN {q} IS NULL THEN {ex} ELSE {q} + {ex} END"
        elif agg in ("MAX", "MIN"):
            expr = f"CASE WHEN {ex} IS NULL THEN {q} WHEN {q} IS NULL THEN {ex} ELSE {agg.lower()}({q}, {ex}) END"
        elif agg == "REPLACE_IF_NOT_NULL":
            expr = f"COALESCE({ex}, {q})"
        else:   # REPLACE and the types the emulator stores as text (HLL_UNION, BITMAP_UNION, ...)
            expr = ex
        sets.append(f"{q} = {expr}")
    keys = ", ".join(f'"{k}"' for k in td.key_columns)
    if not sets:
        return f"ON CONFLICT({keys}) DO NOTHING"
    return f"ON CONFLICT({keys}) DO UPDATE SET " + ", ".join(sets)


class _ExactSum:
    """SUM() that stays exact on DECIMAL/LARGEINT text (sqlite's would go through a float).

    Text inputs with a '.' sum to a DecimalText, integer text to an int; numbers sum like sqlite."""

    def __init__(self):
        self.total, self.text, self.frac, self.seen = 0, False, False, False

    def step(self, v):
        if v is None:
            return
        self.seen = True
        if isinstance(v, str):
            try:
                d = Decimal(v.strip())
            except InvalidOperation:
                d = Decimal(0)
            self.text = True
            self.frac = self.frac or "." in v
            if isinstance(self.total, float):
                self.total += float(d)
            else:
                self.total = EXACT.add(Decimal(self.total), d)
        elif isinstance(v, float) or isinstance(self.total, float):
            self.total = float(self.total) + float(v)
        else:
            self.total += v

    def finalize(self):
        if not self.seen:
            return None
        total = self.total
        if isinstance(total, Decimal):
            if self.frac:
                return format(total, "f")
            total = int(total)
        if isinstance(total, int) and not -(1 << 63) <= total < (1 << 63):
            return str(total)     # sqlite cannot hold it; _retype turns LARGEINT sums back into int
        return total
