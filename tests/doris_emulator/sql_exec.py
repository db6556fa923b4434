"""Runs one SQL statement against the catalog as Doris would answer it over port 9030.

Doris-only statements (DDL, DESCRIBE, SHOW TRANSACTION, SHOW ..., INSERT VALUES) are handled here;
SELECTs are rewritten for sqlite (table names, quoting, string escapes, @@variables) and run there.
"""
from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .schema import (Column, DateText, DateTimeText, DecimalText, DorisError, coerce_value, default_value, err,
                     unknown_db)
from .sql_parser import Parser, Tok, is_ident, like_regex, parse_column, parse_create_table, tokenize

if TYPE_CHECKING:
    from .storage import Catalog


@dataclass
class Result:
    """What execute_full() returns: a result set (columns non-empty) or an OK (affected rows)."""
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    affected: int = 0
    new_db: str | None = None   # set by USE: the connection's current database changes


_NO_ALIAS = {"WHERE", "GROUP", "ORDER", "LIMIT", "JOIN", "LEFT", "RIGHT", "INNER", "OUTER", "CROSS", "ON",
             "USING", "UNION", "HAVING", "FULL", "NATURAL", "WINDOW", "EXCEPT", "INTERSECT", "FOR",
             "LATERAL", "SET", "VALUES", "OFFSET", "INTO", "STRAIGHT_JOIN", "SEMI", "ANTI"}

_VARIABLES = {"version_comment": "Doris version doris-2.1.x-emulator", "version": "5.7.99",
              "autocommit": 1, "max_allowed_packet": 16777216, "sql_mode": "ONLY_FULL_GROUP_BY",
              "time_zone": "Asia/Shanghai", "system_time_zone": "UTC", "lower_case_table_names": 0,
              "tx_isolation": "REPEATABLE-READ", "transaction_isolation": "REPEATABLE-READ",
              "character_set_client": "utf8mb4", "character_set_connection": "utf8mb4",
              "character_set_results": "utf8mb4", "character_set_server": "utf8mb4",
              "collation_connection": "utf8mb4_0900_bin", "collation_server": "utf8mb4_0900_bin",
              "net_write_timeout": 600, "wait_timeout": 28800, "interactive_timeout": 3600,
              "query_timeout": 900, "license": "Apache License, Version 2.0", "auto_increment_increment": 1,
              "performance_schema": 0, "session.auto_increment_increment": 1, "show_hidden_columns": 0}
_TXN_COLUMNS = ["TransactionId", "Label", "Coordinator", "TransactionStatus", "LoadJobSourceType",
                "PrepareTime", "PreCommitTime", "CommitTime", "PublishTime", "FinishTime", "Reason",
                "ErrorReplicasCount", "ListenerId", "TimeoutMs", "ErrMsg"]


def _fmt_time(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


# ------------------------------------------------------------------------------------ SQL statements

def _sqlite_error(e: sqlite3.Error) -> DorisError:
    """Turn sqlite's message into the Doris/MySQL error a client would see."""
    msg = str(e)
    m = re.match(r"no such column: (.+)", msg)
    if m:
        return err(f"Unknown column '{m.group(1)}' in 'table list'", 1054, "42S22")
    m = re.match(r"no such table: (.+)", msg)
    if m:
        return err(f"Unknown table '{m.group(1)}'", 1051, "42S02")
    m = re.match(r"no such function: (.+)", msg)
    if m:
        return err(f"Can not found function '{m.group(1)}' (the emulator runs SELECTs on sqlite)")
    if "syntax error" in msg or "incomplete input" in msg:
        return err(f"Syntax error: {msg} (the emulator runs SELECTs on sqlite)", 1064, "42000")
    return err(msg)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"



_FROM_WORDS = {"FROM", "JOIN", "STRAIGHT_JOIN", "UPDATE"}
_CLAUSES = {"SELECT", "FROM", "WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "ON", "SET", "UNION", "VALUES",
            "USING", "WINDOW", "EXCEPT", "INTERSECT"}


def execute(cat: "Catalog", sql: str, current_db: str | None) -> Result:
    """One statement; the caller holds the catalog's lock."""
    toks = tokenize(sql)
    while toks and toks[-1].text == ";":
        toks.pop()
    if not toks:
        raise DorisError("Query was empty", 1065, "42000")
    try:
        return _Statement(cat, sql, toks, current_db).run()
    except sqlite3.Error as e:
        raise _sqlite_error(e) from e


class _Statement:
    """One SQL statement: dispatch on its first words (Doris-specific) or rewrite it for sqlite."""

    def __init__(self, cat: "Catalog", sql: str, toks: list[Tok], db: str | None):
        self.cat, self.sql, self.toks, self.db = cat, sql, toks, db
        self.p = Parser(sql, toks)
        self.ref_cols: dict[str, Column] = {}    # columns of the tables a query reads (for _retype)

    def run(self) -> Result:
        head = self.toks[0].up
        if head in ("SELECT", "WITH") or self.toks[0].text == "(":
            return self._query(self.sql, self.toks)
        handler = {"CREATE": self._create, "DROP": self._drop, "ALTER": self._alter, "TRUNCATE": self._truncate,
                   "USE": self._use, "SET": self._ok, "BEGIN": self._ok, "COMMIT": self._ok,
                   "ROLLBACK": self._ok, "START": self._ok, "KILL": self._ok, "SHOW": self._show,
                   "DESC": self._describe, "DESCRIBE": self._describe, "INSERT": self._insert,
                   "DELETE": self._passthrough, "UPDATE": self._passthrough}.get(head)
        if handler is None:
            raise err(f"The emulator does not support this statement: {self.sql[:80]!r}", 1064, "42000")
        self.p.next()
        return handler()

    # ----------------------------------------------------------------------------------- helpers

    def _db_or_current(self, db: str | None) -> str:
        db = db or self.db
        if not db:
            raise err("No database selected", 1046, "3D000")
        if not self.cat.has_database(db):
            raise unknown_db(db)
        return db

    def _table_ref(self) -> tuple[str, str]:
        db, name = self.p.qualified()
        return self._db_or_current(db), name

    def _end(self) -> None:
        if not self.p.at_end():
            t = self.p.peek()
            raise err(f"Syntax error near '{t.text}'", 1064, "42000")

    # ------------------------------------------------------------------------------------- DDL

    def _create(self) -> Result:
        p = self.p
        if p.word("DATABASE") or p.word("SCHEMA"):
            ine = p.word("IF", "NOT", "EXISTS")
            _, name = p.qualified()
            self.cat.create_database(name, ine)
            return Result(affected=1)
        p.word("EXTERNAL")
        if p.word("TABLE"):
            td, ine = parse_create_table(self.sql, p)
            td.db = self._db_or_current(td.db or None)
            self.cat.create_table(td, ine)
            return Result()
        raise err(f"The emulator only supports CREATE DATABASE and CREATE TABLE: {self.sql[:80]!r}")

    def _drop(self) -> Result:
        p = self.p
        if p.word("DATABASE") or p.word("SCHEMA"):
            ie = p.word("IF", "EXISTS")
            _, name = p.qualified()
            p.word("FORCE")
            self._end()
            self.cat.drop_database(name, ie)
            return Result()
        if p.word("TABLE"):
            ie = p.word("IF", "EXISTS")
            db, name = p.qualified()
            p.word("FORCE")
            self._end()
            db = db or self.db
            if not db:
                raise err("No database selected", 1046, "3D000")
            self.cat.drop_table(db, name, ie)
            return Result()
        raise err(f"The emulator only supports DROP DATABASE and DROP TABLE: {self.sql[:80]!r}")

    def _truncate(self) -> Result:
        self.p.word("TABLE")
        db, name = self._table_ref()
        self.cat.truncate_table(db, name)
        return Result()

    def _alter(self) -> Result:
        p = self.p
        if not p.word("TABLE"):
            raise err("The emulator only supports ALTER TABLE ... ADD COLUMN")
        db, name = self._table_ref()
        while True:
            if not p.word("ADD", "COLUMN") and not p.word("ADD"):
                raise err("The emulator only supports ALTER TABLE ... ADD COLUMN; recreate the table "
                           "for other schema changes")
            if p.op("("):
                cols = [parse_column(p)]
                while p.op(","):
                    cols.append(parse_column(p))
                p.expect_op(")")
                for c in cols:
                    self.cat.add_column(db, name, c)
            else:
                col = parse_column(p)
                after = None
                if p.word("AFTER"):
                    after = p.ident()
                elif p.word("FIRST"):
                    after = ""
                self.cat.add_column(db, name, col, after)
            if p.word("TO"):
                p.ident()
            if p.word("PROPERTIES"):
                p.skip_balanced() if p.peek() and p.peek().text == "(" else None
            if not p.op(","):
                break
        self._end()
        return Result()

    def _use(self) -> Result:
        db, name = self.p.qualified()
        if not self.cat.has_database(name):
            raise unknown_db(name)
        return Result(new_db=name)

    def _ok(self) -> Result:
        """SET / BEGIN / COMMIT ...: accepted and ignored (every load is its own transaction)."""
        return Result()

    # ------------------------------------------------------------------------------------ SHOW

    def _show(self) -> Result:
        p = self.p
        full = p.word("FULL")
        p.word("SESSION") or p.word("GLOBAL")
        if p.word("DATABASES") or p.word("SCHEMAS"):
            names = ["information_schema"] + self.cat.databases()
            return Result(["Database"], [(n,) for n in self._filter_like(names)])
        if p.word("TABLES"):
            db = None
            if p.word("FROM") or p.word("IN"):
                db = p.ident()
            db = self._db_or_current(db)
            names = self._filter_like(self.cat.tables(db))
            if full:
                return Result([f"Tables_in_{db}", "Table_type"], [(n, "BASE TABLE") for n in names])
            return Result([f"Tables_in_{db}"], [(n,) for n in names])
        if p.word("COLUMNS") or p.word("FIELDS"):
            if not (p.word("FROM") or p.word("IN")):
                raise err("Syntax error: SHOW COLUMNS FROM table", 1064, "42000")
            db, name = p.qualified()
            if p.word("FROM") or p.word("IN"):
                db = p.ident()
            return self._describe_table(self._db_or_current(db), name)
        if p.word("CREATE", "TABLE"):
            db, name = self._table_ref()
            td = self.cat._table(db, name)
            return Result(["Table", "Create Table"], [(td.name, td.ddl)])
        if p.word("CREATE", "DATABASE") or p.word("CREATE", "SCHEMA"):
            name = p.ident()
            self._db_or_current(name)
            return Result(["Database", "Create Database"], [(name, f"CREATE DATABASE `{name}`")])
        if p.word("TRANSACTION"):
            return self._show_transaction()
        if p.word("VARIABLES") or p.word("STATUS"):
            names = sorted(_VARIABLES)
            if p.word("WHERE"):
                p.ident()
                p.expect_op("=")
                want = p.next().value.lower()
                names = [n for n in names if n == want]
            else:
                names = self._filter_like(names)
            return Result(["Variable_name", "Value"], [(n, str(_VARIABLES[n])) for n in names])
        if p.word("WARNINGS") or p.word("ERRORS"):
            return Result(["Level", "Code", "Message"], [])
        if p.word("PROCESSLIST"):
            return Result(["Id", "User", "Host", "Db", "Command", "Time", "State", "Info"], [])
        raise err(f"The emulator does not support this SHOW statement: {self.sql[:80]!r}")

    def _filter_like(self, names: list[str]) -> list[str]:
        if self.p.word("LIKE"):
            rx = like_regex(self.p.next().value)
            return [n for n in names if rx.match(n)]
        return names

    def _show_transaction(self) -> Result:
        p = self.p
        db = None
        if p.word("FROM") or p.word("IN"):
            db = p.ident()
        db = self._db_or_current(db)
        if not p.word("WHERE"):
            raise err("should specify a WHERE clause: SHOW TRANSACTION WHERE ID = n | LABEL = 'x' | "
                       "LABEL LIKE 'x%'")
        key = p.ident().upper()
        like = p.word("LIKE")
        if not like:
            p.expect_op("=")
        val = p.next().value
        txns = self.cat.list_txns(db)
        if key == "ID" and not like:
            try:
                tid = int(val)
            except ValueError:
                raise err(f"Invalid transaction id: {val}") from None
            found = [t for t in txns if t.txn_id == tid]
            if not found:
                raise err(f"transaction with id {tid} does not exist")
        elif key == "LABEL" and like:
            rx = like_regex(val, ignore_case=False)
            found = [t for t in txns if rx.match(t.label)]
        elif key == "LABEL":
            t = self.cat.find_txn(db, label=val)
            if t is None:
                raise err(f"transaction with label {val} does not exist")
            found = [t]
        elif key == "STATUS" and not like:
            found = [t for t in txns if t.status.upper() == val.upper()]
        else:
            raise err("Where clause should looks like one of them: id = 123 or label = 'label' or "
                       "label like 'label%' or status = 'prepare/precommitted/committed/visible/aborted'")
        rows = [(str(t.txn_id), t.label, t.coordinator, t.status, t.source_type, _fmt_time(t.prepare_time),
                 _fmt_time(t.precommit_time), _fmt_time(t.commit_time), _fmt_time(t.publish_time),
                 _fmt_time(t.finish_time), t.reason, "0", "-1", str(t.timeout_ms), t.err_msg) for t in found]
        return Result(list(_TXN_COLUMNS), rows)

    def _describe(self) -> Result:
        db, name = self.p.qualified()
        self.p.word("ALL")
        self._end()
        return self._describe_table(self._db_or_current(db), name)

    def _describe_table(self, db: str, name: str) -> Result:
        td = self.cat._table(db, name)
        rows = [(c.name, c.type_str, "YES" if c.nullable else "NO", "true" if c.is_key else "false",
                 "NULL" if c.default is None else c.default, c.aggregation or "") for c in td.columns]
        return Result(["Field", "Type", "Null", "Key", "Default", "Extra"], rows)

    # ------------------------------------------------------------------------------------ DML

    def _insert(self) -> Result:
        p = self.p
        if not p.word("INTO"):
            raise err("Syntax error: INSERT INTO table ...", 1064, "42000")
        db, name = self._table_ref()
        td = self.cat._table(db, name)
        if p.word("WITH", "LABEL"):
            p.next()
        names = None
        if p.peek() is not None and p.peek().text == "(" and p.peek(1) is not None and p.peek(1).up != "SELECT":
            names = p.ident_list()
        cols = td.columns if names is None else []
        for n in names or []:
            c = td.column(n)
            if c is None:
                raise err(f"Unknown column '{n}' in '{name}'", 1054, "42S22")
            cols.append(c)
        if p.word("VALUES"):
            raw_rows = self._values(len(cols))
        else:
            rest = self.toks[p.i:]
            if not rest:
                raise err("Syntax error: INSERT needs VALUES or SELECT", 1064, "42000")
            raw_rows = self._query(self.sql, rest).rows
            if raw_rows and len(raw_rows[0]) != len(cols):
                raise err("Column count doesn't match value count", 1136, "21S01")
        rows = []
        for raw in raw_rows:
            given = {c.name: v for c, v in zip(cols, raw)}
            row = []
            for c in td.columns:
                if c.name in given and given[c.name] is not _DEFAULT:
                    v = coerce_value(c, given[c.name])
                else:
                    if c.default is None and not c.nullable:
                        raise err(f"Column has no default value, column={c.name}")
                    v = default_value(c)
                if v is None and not c.nullable:
                    raise err(f"Insert has filtered data in strict mode: NULL value in the NOT NULL "
                               f"column {c.name}")
                row.append(v)
            rows.append(tuple(row))
        self.cat.insert_rows(db, name, rows)
        return Result(affected=len(rows))

    def _values(self, width: int) -> list[tuple]:
        p, rows = self.p, []
        while True:
            p.expect_op("(")
            vals = []
            while True:
                t = p.next()
                if t.kind in ("str", "dstr"):
                    vals.append(t.value)
                elif t.kind == "num":
                    vals.append(t.text)
                elif t.text in ("-", "+") and p.peek() is not None and p.peek().kind == "num":
                    vals.append(("-" if t.text == "-" else "") + p.next().text)
                elif t.up == "NULL":
                    vals.append(None)
                elif t.up in ("TRUE", "FALSE"):
                    vals.append(t.up.lower())
                elif t.up == "DEFAULT":
                    vals.append(_DEFAULT)
                else:
                    raise err(f"The emulator's INSERT takes literal values only, not '{t.text}'")
                if p.op(")"):
                    break
                p.expect_op(",")
            if len(vals) != width:
                raise err("Column count doesn't match value count", 1136, "21S01")
            rows.append(tuple(vals))
            if not p.op(","):
                break
        self._end()
        return rows

    def _passthrough(self) -> Result:
        return self._query(self.sql, self.toks)

    # ----------------------------------------------------------------------------------- queries

    def _query(self, sql: str, toks: list[Tok]) -> Result:
        cur = self.cat._conn.execute(self._rewrite(sql, toks))
        if cur.description is None:
            return Result(affected=max(cur.rowcount, 0))
        names = [d[0] for d in cur.description]
        return Result(names, self._retype(names, cur.fetchall()))

    def _retype(self, names: list[str], rows: list[tuple]) -> list[tuple]:
        """MAX/MIN(col) lose sqlite's per-column converters: give LARGEINT/DECIMAL/DATE(TIME) results back
        their type (matched by the result column's text, so an alias hides it)."""
        fixes = []
        for i, name in enumerate(names):
            m = _AGG_NAME_RE.match(name)
            col = self.ref_cols.get(m.group(1).strip('`"').split(".")[-1].strip('`"').lower()) if m else None
            conv = _RETYPE.get(col.base) if col is not None else None
            if conv is not None:
                fixes.append((i, conv))
        if not fixes or not rows:
            return rows
        out = []
        for r in rows:
            r = list(r)
            for i, conv in fixes:
                if r[i] is not None:
                    r[i] = conv(r[i])
            out.append(tuple(r))
        return out

    def _rewrite(self, sql: str, toks: list[Tok]) -> str:
        """MySQL/Doris SELECT -> sqlite: table names, quoting, string escapes, @@variables."""
        ctes = {toks[k].value for k in range(1, len(toks) - 2)
                if is_ident(toks[k]) and toks[k + 1].up == "AS" and toks[k + 2].text == "("
                and (toks[k - 1].up in ("WITH", "RECURSIVE") or toks[k - 1].text == ",")}
        out: list[str] = []
        prev_end = toks[0].start
        depth, clause = 0, {}
        i, n = 0, len(toks)

        def emit(t_start: int, t_end: int, text: str) -> None:
            nonlocal prev_end
            out.append(sql[prev_end:t_start] if t_start >= prev_end else " ")
            out.append(text)
            prev_end = t_end

        while i < n:
            t = toks[i]
            prev = toks[i - 1] if i > 0 else None
            if is_ident(t) and not (t.kind == "word" and t.up in _CLAUSES):
                j, parts = i + 1, [t.value]
                while j + 1 < n and toks[j].text == "." and is_ident(toks[j + 1]):
                    parts.append(toks[j + 1].value)
                    j += 2
                from_pos = prev is not None and (prev.up in _FROM_WORDS or (
                    prev.text == "," and clause.get(depth) == "FROM"))
                nxt = toks[j] if j < n else None
                if from_pos and not (nxt is not None and nxt.text == "("):
                    emit(t.start, toks[j - 1].end, self._from_table(parts, ctes, nxt))
                    i = j
                    continue
                idents = toks[i:j:2]
                if len(parts) == 3 and self.cat.get_table(parts[0], parts[1]) is not None:
                    idents = idents[1:]    # db.table.column -> table.column (tables are aliased by name)
                emit(t.start, toks[j - 1].end,
                     ".".join('"' + x.value.replace('"', '""') + '"' if x.kind == "bq" else x.text
                              for x in idents))
                if t.kind == "word" and t.up in ("STRING",) and prev is not None and prev.up == "AS":
                    out[-1] = "TEXT"
                i = j
                continue
            if t.kind == "word":
                if t.up in _CLAUSES:
                    clause[depth] = t.up
                if t.up == "JOIN":
                    clause[depth] = "FROM"
                emit(t.start, t.end, t.text)
            elif t.kind == "bq":
                emit(t.start, t.end, '"' + t.value.replace('"', '""') + '"')
            elif t.kind in ("str", "dstr"):
                lit = _sql_str(t.value)
                if prev is not None and prev.up == "LIKE" and "\\" in t.value:
                    lit += " ESCAPE '\\'"          # MySQL's LIKE escape is the backslash; sqlite has none
                emit(t.start, t.end, lit)
            elif t.kind == "num" and t.text.isdigit() and int(t.text) >= 1 << 63:
                emit(t.start, t.end, _sql_str(t.text))    # LARGEINT literal: sqlite would make it a float
            elif t.kind == "var":
                emit(t.start, t.end, self._variable(t, prev, toks[i + 1] if i + 1 < n else None))
            else:
                if t.text == "(":
                    depth += 1
                elif t.text == ")":
                    clause.pop(depth, None)
                    depth -= 1
                emit(t.start, t.end, t.text)
            i += 1
        return "".join(out)

    def _from_table(self, parts: list[str], ctes: set[str], nxt: Tok | None) -> str:
        if len(parts) == 3 and parts[0].lower() == "internal":
            parts = parts[1:]
        if len(parts) == 1 and (parts[0] in ctes or parts[0].lower() == "dual"):
            return "(SELECT 1)" if parts[0].lower() == "dual" else f'"{parts[0]}"'
        if len(parts) == 2 and parts[0].lower() == "information_schema":
            return f'information_schema."{parts[1].lower()}"'
        if len(parts) == 1:
            db = self._db_or_current(None)
            name = parts[0]
        elif len(parts) == 2:
            db, name = parts
            if not self.cat.has_database(db):
                raise unknown_db(db)
        else:
            raise err(f"Syntax error: bad table name {'.'.join(parts)}", 1064, "42000")
        td = self.cat._table(db, name)
        for c in td.columns:
            self.ref_cols.setdefault(c.name.lower(), c)
        text = f'"{self.cat._sqlname[(db, name)]}"'
        has_alias = nxt is not None and (nxt.up == "AS" or (is_ident(nxt) and nxt.up not in _NO_ALIAS
                                                            and nxt.up not in _CLAUSES))
        return text if has_alias else f'{text} AS "{name}"'

    @staticmethod
    def _variable(t: Tok, prev: Tok | None, nxt: Tok | None) -> str:
        name = t.text.lstrip("@").lower()
        for pre in ("session.", "global.", "local."):
            if name.startswith(pre):
                name = name[len(pre):]
        if name not in _VARIABLES:
            if t.text.startswith("@@"):
                raise err(f"Unknown system variable '{name}'", 1193, "HY000")
            return "NULL"
        v = _VARIABLES[name]
        lit = str(v) if isinstance(v, int) else _sql_str(v)
        in_select_list = prev is not None and (prev.up == "SELECT" or prev.text == ",")
        ends_item = nxt is None or nxt.text == "," or nxt.up == "FROM"
        if in_select_list and ends_item:
            return f'{lit} AS "{t.text}"'
        return lit


_DEFAULT = object()   # INSERT ... VALUES (DEFAULT)
_AGG_NAME_RE = re.compile(r"^\s*(?:max|min|sum|any_value)\s*\(\s*([\w`\".]+)\s*\)\s*$", re.I)
_RETYPE = {"LARGEINT": int, "DECIMAL": DecimalText, "DATE": DateText, "DATETIME": DateTimeText}
