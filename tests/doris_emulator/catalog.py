"""The Doris emulator's catalog: databases, tables, rows (in sqlite) and the SQL a client sends to port 9030.

Why sqlite: it gives WHERE / ORDER BY / GROUP BY / COUNT(DISTINCT) for free, so tests can query what
landed exactly like they would on real Doris. Doris-only behaviour (table models, DESCRIBE, SHOW
TRANSACTION, information_schema names) is emulated here; everything else is passed to sqlite after
rewriting table names. The HTTP side (loader) calls insert_rows(); see docs/architecture.md.

Value storage (so reads come back with the right Python types):
  integers/BOOLEAN -> INTEGER; FLOAT/DOUBLE -> REAL; LARGEINT -> decimal TEXT with a numeric collation
  (sqlite INTEGER is 64-bit) returned as int; DECIMAL -> exact TEXT with a numeric collation, returned as
  a ``DecimalText`` str; DATE/DATETIME -> TEXT returned as ``DateText``/``DateTimeText`` strs (the MySQL
  server marks those columns so pymysql gives Decimal/date/datetime like it does with real Doris);
  everything else -> TEXT.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation

_CTX = Context(prec=200)   # exact arithmetic for DECIMAL(38)/LARGEINT (the default context keeps 28 digits)

# ---------------------------------------------------------------------------------------------- errors


class DorisError(Exception):
    """An error the MySQL server sends as an ERR packet: ``code`` is the MySQL error number."""

    def __init__(self, message: str, code: int = 1105, sqlstate: str = "HY000"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.sqlstate = sqlstate


def _err(detail: str, code: int = 1105, sqlstate: str = "HY000") -> DorisError:
    """Doris wraps FE analysis errors as ``errCode = 2, detailMessage = ...``."""
    return DorisError(f"errCode = 2, detailMessage = {detail}", code, sqlstate)


def unknown_db(db: str) -> DorisError:
    return _err(f"Unknown database '{db}'", 1049, "42000")


def unknown_table(db: str, table: str) -> DorisError:
    return _err(f"Table [{table}] does not exist in database [{db}].", 1146, "42S02")


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


@dataclass
class Txn:
    txn_id: int
    db: str
    label: str
    status: str
    source_type: str = "BACKEND_STREAMING"
    coordinator: str = "BE: 127.0.0.1"
    prepare_time: float | None = None
    precommit_time: float | None = None
    commit_time: float | None = None
    publish_time: float | None = None
    finish_time: float | None = None
    reason: str = ""
    timeout_ms: int = 600000
    err_msg: str = ""
    pending: object = None


@dataclass
class Result:
    """What execute_full() returns: a result set (columns non-empty) or an OK (affected rows)."""
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    affected: int = 0
    new_db: str | None = None   # set by USE: the connection's current database changes


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
_COMPLEX = ("ARRAY", "MAP", "STRUCT")
_AGG_TYPES = {"SUM", "MAX", "MIN", "REPLACE", "REPLACE_IF_NOT_NULL", "HLL_UNION", "BITMAP_UNION",
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
            raise _err(f"Decimal precision must be in range [1, 38], but got {p}")
        if not 0 <= s <= p:
            raise _err(f"Decimal scale must be in range [0, {p}], but got {s}")
        return Column(name, f"decimal({p},{s})", "DECIMAL", precision=p, scale=s)
    if t in ("CHAR", "VARCHAR"):
        n = args[0] if args else (1 if t == "CHAR" else 65533)
        limit = 255 if t == "CHAR" else 65533
        if not 1 <= n <= limit:
            raise _err(f"{t} size must be in range [1, {limit}], but got {n}")
        return Column(name, f"{t.lower()}({n})", t, length=n)
    if t in ("DATETIME", "DATETIMEV2"):
        s = args[0] if args else 0
        if not 0 <= s <= 6:
            raise _err(f"Scale of Datetime/Time must between 0 and 6. Scale was set to: {s}")
        return Column(name, f"datetime({s})" if s else "datetime", "DATETIME", scale=s)
    if t in _COMPLEX:
        return Column(name, f"{t.lower()}<{inner.lower()}>", t)
    raise _err(f"Unknown data type: '{type_word}'. Supported: TINYINT SMALLINT INT BIGINT LARGEINT "
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


# ----------------------------------------------------------------------------------------- tokenizer

_TOKEN_RE = re.compile(r"""
 (?P<ws>\s+)
|(?P<comment>--[^\n]*|\#[^\n]*|/\*.*?\*/)
|(?P<str>'(?:[^'\\]+|\\.|'')*')
|(?P<dstr>"(?:[^"\\]+|\\.|"")*")
|(?P<bq>`(?:[^`]+|``)*`)
|(?P<var>@@?[A-Za-z_][\w.$]*)
|(?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
|(?P<word>[A-Za-z_$][\w$]*)
|(?P<op><=>|<=|>=|<>|!=|\|\||&&|[-+*/%=<>(),.;!~^&|?:\[\]{}])
""", re.S | re.X)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "Z": "\x1a", "\\": "\\",
            "'": "'", '"': '"'}


@dataclass
class Tok:
    kind: str      # str dstr bq var num word op
    text: str
    start: int
    end: int

    @property
    def up(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def value(self) -> str:
        """Identifier name or string contents, unquoted."""
        if self.kind == "bq":
            return self.text[1:-1].replace("``", "`")
        if self.kind in ("str", "dstr"):
            q = self.text[0]
            body = self.text[1:-1].replace(q + q, q)
            return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body, flags=re.S)
        return self.text


def tokenize(sql: str) -> list[Tok]:
    """Significant tokens (no whitespace/comments) with their spans in ``sql``."""
    out, pos = [], 0
    while pos < len(sql):
        m = _TOKEN_RE.match(sql, pos)
        if not m:
            raise _err(f"Syntax error near '{sql[pos:pos + 20]}'", 1064, "42000")
        kind = m.lastgroup
        if kind not in ("ws", "comment"):
            out.append(Tok(kind, m.group(), m.start(), m.end()))
        pos = m.end()
    return out


def _is_ident(t: Tok | None) -> bool:
    return t is not None and t.kind in ("word", "bq")


class _Parser:
    """A cursor over tokens with the few helpers the DDL parser needs."""

    def __init__(self, sql: str, toks: list[Tok] | None = None):
        self.sql = sql
        self.toks = tokenize(sql) if toks is None else toks
        while self.toks and self.toks[-1].text == ";":
            self.toks.pop()
        self.i = 0

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def next(self) -> Tok:
        t = self.peek()
        if t is None:
            raise _err("Syntax error: unexpected end of statement", 1064, "42000")
        self.i += 1
        return t

    def at_end(self) -> bool:
        return self.i >= len(self.toks)

    def word(self, *words: str) -> bool:
        """Consume the given keywords if they come next."""
        for k, w in enumerate(words):
            t = self.peek(k)
            if t is None or t.up != w:
                return False
        self.i += len(words)
        return True

    def op(self, text: str) -> bool:
        t = self.peek()
        if t is not None and t.kind == "op" and t.text == text:
            self.i += 1
            return True
        return False

    def expect_op(self, text: str) -> None:
        if not self.op(text):
            t = self.peek()
            raise _err(f"Syntax error: expected '{text}' near '{t.text if t else 'end'}'", 1064, "42000")

    def ident(self) -> str:
        t = self.next()
        if not _is_ident(t):
            raise _err(f"Syntax error: expected a name near '{t.text}'", 1064, "42000")
        return t.value

    def qualified(self) -> tuple[str | None, str]:
        """``[catalog.][db.]name`` -> (db or None, name)."""
        parts = [self.ident()]
        while self.op("."):
            parts.append(self.ident())
        if len(parts) == 3 and parts[0].lower() == "internal":
            parts = parts[1:]
        if len(parts) == 1:
            return None, parts[0]
        if len(parts) == 2:
            return parts[0], parts[1]
        raise _err(f"Syntax error: bad name {'.'.join(parts)}", 1064, "42000")

    def ident_list(self) -> list[str]:
        self.expect_op("(")
        names = [self.ident()]
        while self.op(","):
            names.append(self.ident())
        self.expect_op(")")
        return names

    def skip_balanced(self) -> int:
        """Skip a parenthesised group starting at '('; return the index of its last token."""
        depth = 0
        while True:
            t = self.next()
            if t.text == "(":
                depth += 1
            elif t.text == ")":
                depth -= 1
                if depth == 0:
                    return self.i - 1

    def literal(self) -> str | None:
        """A DEFAULT value: string, number, NULL, or a function word like CURRENT_TIMESTAMP."""
        t = self.next()
        if t.kind in ("str", "dstr"):
            return t.value
        if t.text in ("-", "+"):
            n = self.next()
            return (t.text if t.text == "-" else "") + n.text
        if t.up == "NULL":
            return None
        text = t.text
        if self.peek() is not None and self.peek().text == "(":
            start = self.i
            end = self.skip_balanced()
            inner = "".join(x.text for x in self.toks[start + 1:end])
            if t.up == "CURRENT_TIMESTAMP" and inner:
                return f"CURRENT_TIMESTAMP({inner})"
            return "CURRENT_TIMESTAMP" if t.up in ("NOW", "CURRENT_TIMESTAMP") else f"{text}({inner})"
        return text.upper() if t.kind == "word" else text


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
            d = Decimal(str(v)).quantize(Decimal(1).scaleb(-(c.scale or 0)), context=_CTX)
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
        raise _err(f"[INVALID_ARGUMENT]Invalid value '{v}' for column '{c.name}' of type {c.type_str}")


def _default_value(c: Column) -> object:
    if c.default is None:
        return None
    if c.default.upper().startswith("CURRENT_TIMESTAMP"):
        now = _dt.datetime.now()
        return coerce_value(c, now.strftime("%Y-%m-%d %H:%M:%S.%f"))
    return coerce_value(c, c.default)


# ---------------------------------------------------------------------------------------- DDL parser

_NO_ALIAS = {"WHERE", "GROUP", "ORDER", "LIMIT", "JOIN", "LEFT", "RIGHT", "INNER", "OUTER", "CROSS", "ON",
             "USING", "UNION", "HAVING", "FULL", "NATURAL", "WINDOW", "EXCEPT", "INTERSECT", "FOR",
             "LATERAL", "SET", "VALUES", "OFFSET", "INTO", "STRAIGHT_JOIN", "SEMI", "ANTI"}


def parse_create_table(sql: str, p: _Parser) -> tuple[TableDef, bool]:
    """Parse what follows ``CREATE TABLE``; returns (TableDef with db possibly None, if_not_exists)."""
    if_not_exists = p.word("IF", "NOT", "EXISTS")
    db, name = p.qualified()
    if p.word("LIKE") or p.word("AS"):
        raise _err("CREATE TABLE ... LIKE/AS SELECT is not supported by the emulator: write the columns")
    p.expect_op("(")
    columns: list[Column] = []
    while True:
        t = p.peek()
        if t is not None and t.up in ("INDEX", "KEY") and _is_ident(p.peek(1)) and t.kind == "word":
            while not (p.peek() is None or p.peek().text in (",", ")")):   # skip INDEX definitions
                if p.peek().text == "(":
                    p.skip_balanced()
                else:
                    p.next()
        else:
            columns.append(_parse_column(p))
        if p.op(","):
            continue
        p.expect_op(")")
        break
    seen = set()
    for c in columns:
        if c.name.lower() in seen:
            raise _err(f"Duplicate column name '{c.name}'", 1060, "42S21")
        seen.add(c.name.lower())

    keys_type, key_cols, distribution, partition, comment, props = None, None, "", "", "", {}
    while not p.at_end():
        t = p.peek()
        if p.word("ENGINE"):
            p.op("=")
            engine = p.ident()
            if engine.upper() != "OLAP":
                raise _err(f"Unknown engine name: {engine}; the emulator only has OLAP tables")
        elif t.up in ("DUPLICATE", "UNIQUE", "AGGREGATE") and p.peek(1) is not None and p.peek(1).up == "KEY":
            p.i += 2
            keys_type, key_cols = t.up, p.ident_list()
        elif p.word("COMMENT"):
            comment = p.next().value
        elif t.up in ("PARTITION", "AUTO"):
            start = p.i
            while not p.at_end() and p.peek().up not in ("DISTRIBUTED", "PROPERTIES", "ROLLUP"):
                if p.peek().text == "(":
                    p.skip_balanced()
                else:
                    p.next()
            partition = sql[p.toks[start].start:p.toks[p.i - 1].end]
        elif p.word("DISTRIBUTED", "BY"):
            if p.word("HASH"):
                cols = p.ident_list()
                for cn in cols:
                    if not any(c.name.lower() == cn.lower() for c in columns):
                        raise _err(f"Distribution column[{cn}] is not found in the table's columns")
                distribution = "DISTRIBUTED BY HASH(" + ", ".join(f"`{x}`" for x in cols) + ")"
            elif p.word("RANDOM"):
                distribution = "DISTRIBUTED BY RANDOM"
            else:
                raise _err("Syntax error: DISTRIBUTED BY needs HASH(cols) or RANDOM", 1064, "42000")
            if p.word("BUCKETS"):
                distribution += " BUCKETS " + p.next().text.upper()
        elif p.word("ROLLUP"):
            p.skip_balanced()
        elif p.word("PROPERTIES"):
            p.expect_op("(")
            while not p.op(")"):
                k = p.next().value
                p.expect_op("=")
                props[k] = p.next().value
                p.op(",")
        else:
            raise _err(f"Syntax error near '{t.text}' in CREATE TABLE", 1064, "42000")

    if keys_type is None:
        keys_type, key_cols = "DUPLICATE", _default_keys(columns)
    for c in columns:
        c.is_key = False
    for k, cn in enumerate(key_cols):
        if k >= len(columns):
            raise _err(f"Key column[{cn}] doesn't exist.")
        if columns[k].name.lower() != cn.lower():
            if not any(c.name.lower() == cn.lower() for c in columns):
                raise _err(f"Key column[{cn}] doesn't exist.")
            raise _err(f"Key columns should be a ordered prefix of the schema. KeyColumns[{k}] (starts from "
                       f"zero) is {cn}, but corresponding column is {columns[k].name} in the previous columns "
                       "declaration.")
        columns[k].is_key = True
    for c in columns:
        if keys_type == "AGGREGATE":
            if c.is_key and c.aggregation:
                raise _err(f"Key column {c.name} can not set aggregation type")
            if not c.is_key and not c.aggregation:
                raise _err(f"The column[{c.name}] of an AGGREGATE KEY table must have an aggregation type "
                           "(SUM, MAX, MIN, REPLACE, REPLACE_IF_NOT_NULL)")
        elif c.aggregation:
            raise _err(f"The column[{c.name}] can not set aggregation type {c.aggregation}: only AGGREGATE "
                       "KEY tables have them")
    if not distribution:
        distribution = "DISTRIBUTED BY RANDOM BUCKETS AUTO"
    key_cols = [columns[k].name for k in range(len(key_cols))]
    td = TableDef(db or "", name, columns, keys_type, key_cols, "", props, distribution, partition, comment)
    return td, if_not_exists


_COLUMN_STOP = {"AFTER", "FIRST", "TO", "PROPERTIES"}   # ends a column definition inside ALTER TABLE


def _parse_column(p: _Parser) -> Column:
    name = p.ident()
    tt = p.next()
    if tt.kind != "word":
        raise _err(f"Syntax error: expected a type for column {name} near '{tt.text}'", 1064, "42000")
    args: list[int] = []
    inner = ""
    if tt.up in _COMPLEX and p.op("<"):
        depth, start = 1, p.i
        while depth:
            t = p.next()
            depth += (t.text == "<") - (t.text == ">")
        inner = p.sql[p.toks[start].start:p.toks[p.i - 2].end]
        inner = re.sub(r"\s+", "", inner.replace("`", ""))
    elif p.op("("):
        while not p.op(")"):
            t = p.next()
            if t.kind == "num":
                args.append(int(t.text))
            elif t.text != ",":
                raise _err(f"Syntax error in type of column {name} near '{t.text}'", 1064, "42000")
    col = make_column(name, tt.text, args, inner)
    if tt.up in ("INT", "INTEGER", "TINYINT", "SMALLINT", "BIGINT") and p.word("UNSIGNED"):
        pass
    while True:
        t = p.peek()
        if t is None or t.text in (",", ")") or t.up in _COLUMN_STOP:
            return col
        if t.up in _AGG_TYPES:
            p.next()
            col.aggregation = t.up
        elif p.word("NOT", "NULL"):
            col.nullable = False
        elif p.word("NULL"):
            col.nullable = True
        elif p.word("KEY"):
            col.is_key = True
        elif p.word("DEFAULT"):
            col.default = p.literal()
        elif p.word("COMMENT"):
            col.comment = p.next().value
        elif p.word("AUTO_INCREMENT"):
            if p.peek() is not None and p.peek().text == "(":
                p.skip_balanced()
        elif p.word("ON", "UPDATE"):
            p.literal()
        else:
            raise _err(f"Syntax error near '{t.text}' in the definition of column {name}", 1064, "42000")


def _default_keys(columns: list[Column]) -> list[str]:
    """Doris's implicit DUPLICATE KEY: up to 3 leading columns within 36 bytes, stopping after a string."""
    sizes = {"TINYINT": 1, "BOOLEAN": 1, "SMALLINT": 2, "INT": 4, "FLOAT": 4, "DATE": 4, "BIGINT": 8,
             "DOUBLE": 8, "DATETIME": 8, "LARGEINT": 16, "DECIMAL": 16}
    keys, total = [], 0
    for c in columns[:3]:
        if c.base not in sizes and c.base not in ("CHAR", "VARCHAR"):
            break
        total += sizes.get(c.base, 0)
        if total > 36:
            break
        keys.append(c.name)
        if c.base in ("CHAR", "VARCHAR"):
            break
    return keys or [columns[0].name]


def render_ddl(td: TableDef) -> str:
    """SHOW CREATE TABLE text in Doris's layout."""
    lines = []
    for c in td.columns:
        s = f"  `{c.name}` {c.type_str}"
        if c.aggregation:
            s += f" {c.aggregation}"
        s += " NULL" if c.nullable else " NOT NULL"
        if c.default is not None:
            s += (f" DEFAULT {c.default}" if c.default.upper().startswith("CURRENT_TIMESTAMP")
                  else f' DEFAULT "{c.default}"')
        if c.comment:
            s += f" COMMENT '{c.comment}'"
        lines.append(s)
    out = f"CREATE TABLE `{td.name}` (\n" + ",\n".join(lines) + "\n) ENGINE=OLAP\n"
    out += f"{td.keys_type} KEY(" + ", ".join(f"`{k}`" for k in td.key_columns) + ")\n"
    out += f"COMMENT '{td.comment or 'OLAP'}'\n"
    if td.partition:
        out += td.partition + "\n"
    out += td.distribution + "\n"
    props = {"replication_allocation": "tag.location.default: 1"}
    props.update(td.properties)
    props.pop("replication_num", None)
    out += "PROPERTIES (\n" + ",\n".join(f'"{k}" = "{v}"' for k, v in props.items()) + "\n);"
    return out


# ------------------------------------------------------------------------------------------- catalog

_INFO_COLUMNS = ("TABLE_CATALOG TEXT, TABLE_SCHEMA TEXT, TABLE_NAME TEXT, COLUMN_NAME TEXT, "
                 "ORDINAL_POSITION INTEGER, COLUMN_DEFAULT TEXT, IS_NULLABLE TEXT, DATA_TYPE TEXT, "
                 "CHARACTER_MAXIMUM_LENGTH INTEGER, CHARACTER_OCTET_LENGTH INTEGER, NUMERIC_PRECISION INTEGER, "
                 "NUMERIC_SCALE INTEGER, DATETIME_PRECISION INTEGER, CHARACTER_SET_NAME TEXT, "
                 "COLLATION_NAME TEXT, COLUMN_TYPE TEXT, COLUMN_KEY TEXT, EXTRA TEXT, PRIVILEGES TEXT, "
                 "COLUMN_COMMENT TEXT, COLUMN_SIZE INTEGER, DECIMAL_DIGITS INTEGER, GENERATION_EXPRESSION TEXT, "
                 "SRS_ID INTEGER")
_INFO_TABLES = ("TABLE_CATALOG TEXT, TABLE_SCHEMA TEXT, TABLE_NAME TEXT, TABLE_TYPE TEXT, ENGINE TEXT, "
                "VERSION INTEGER, ROW_FORMAT TEXT, TABLE_ROWS INTEGER, CREATE_TIME TEXT, TABLE_COMMENT TEXT")
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
                raise _err(f"Can't create database '{name}'; database exists", 1007, "HY000")
            if name.lower() in ("information_schema", "mysql", "__internal_schema"):
                raise _err(f"Can't create database '{name}': the name is reserved", 1007)
            self._dbs[name] = {}
            self._conn.execute("INSERT INTO _emu_dbs VALUES (?)", (name,))
            self._info_db(name)

    def drop_database(self, name: str, if_exists: bool = False) -> None:
        with self._lock:
            if name not in self._dbs:
                if if_exists:
                    return
                raise _err(f"Can't drop database '{name}'; database doesn't exist", 1008)
            for t in list(self._dbs[name]):
                self.drop_table(name, t)
            del self._dbs[name]
            self._conn.execute("DELETE FROM _emu_dbs WHERE name = ?", (name,))
            self._conn.execute("DELETE FROM information_schema.schemata WHERE SCHEMA_NAME = ?", (name,))
            self._txns.pop(name, None)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

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
            raise _err("No database selected", 1046, "3D000")
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
                raise _err(f"Table '{td.name}' already exists", 1050, "42S01")
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
            self._conn.execute(f'DROP TABLE "{sqlname}"')
            self._conn.execute("DELETE FROM _emu_meta WHERE db = ? AND name = ?", (db, name))
            self._info_drop(db, name)

    def truncate_table(self, db: str, name: str) -> None:
        with self._lock:
            self._table(db, name)
            self._conn.execute(f'DELETE FROM "{self._sqlname[(db, name)]}"')

    def add_column(self, db, table, column: Column, after: str | None = None) -> None:
        """ALTER TABLE ADD COLUMN: rebuilds the sqlite table so SELECT * keeps Doris's column order."""
        with self._lock:
            td = self._table(db, table)
            if td.column(column.name) is not None:
                raise _err(f"Can not add column which already exists in base table: {column.name}", 1060)
            if td.keys_type == "AGGREGATE" and not column.is_key and not column.aggregation:
                raise _err(f"The column[{column.name}] of an AGGREGATE KEY table must have an aggregation type")
            if td.keys_type != "AGGREGATE" and column.aggregation:
                raise _err(f"Can not assign aggregation method on column in {td.keys_type} data model table: "
                           f"{column.name}")
            if not column.nullable and column.default is None:
                raise _err(f"Can not add column {column.name} which is NOT NULL without a DEFAULT value")
            fill = _default_value(column)
            if isinstance(fill, int) and column.base == "LARGEINT":
                fill = str(fill)
            pos = len(td.columns)
            if after is not None:
                if after == "":   # FIRST
                    pos = 0
                else:
                    ac = td.column(after)
                    if ac is None:
                        raise _err(f"Column[{after}] does not exist in table {table}")
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

    def insert_rows(self, db: str, table: str, rows: list[tuple]) -> None:
        """Atomic: all rows or none. Rows are in TableDef column order (see the contract)."""
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
            if td.keys_type == "DUPLICATE":
                stmt = f'INSERT INTO "{sqlname}" VALUES ({marks})'
            elif td.keys_type == "UNIQUE":
                stmt = f'INSERT OR REPLACE INTO "{sqlname}" VALUES ({marks})'
            else:
                stmt = f'INSERT INTO "{sqlname}" VALUES ({marks}) ' + _upsert_clause(td)
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(stmt, rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                self._conn.execute("ROLLBACK")
                raise _err(f"[INTERNAL_ERROR]insert into {db}.{table} failed: {e}") from e
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

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

    def execute_full(self, sql: str, current_db: str | None = None) -> Result:
        """Run one statement as Doris would answer it; raises DorisError."""
        toks = tokenize(sql)
        while toks and toks[-1].text == ";":
            toks.pop()
        if not toks:
            raise DorisError("Query was empty", 1065, "42000")
        with self._lock:
            self._cur_db = current_db
            try:
                return _Statement(self, sql, toks, current_db).run()
            except sqlite3.Error as e:
                raise _sqlite_error(e) from e


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
    d = _CTX.add(Decimal(str(a)), Decimal(str(b)))
    return format(d.quantize(Decimal(1).scaleb(-scale), context=_CTX), "f")


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


# ------------------------------------------------------------------------------------ SQL statements

def _sqlite_error(e: sqlite3.Error) -> DorisError:
    """Turn sqlite's message into the Doris/MySQL error a client would see."""
    msg = str(e)
    m = re.match(r"no such column: (.+)", msg)
    if m:
        return _err(f"Unknown column '{m.group(1)}' in 'table list'", 1054, "42S22")
    m = re.match(r"no such table: (.+)", msg)
    if m:
        return _err(f"Unknown table '{m.group(1)}'", 1051, "42S02")
    m = re.match(r"no such function: (.+)", msg)
    if m:
        return _err(f"Can not found function '{m.group(1)}' (the emulator runs SELECTs on sqlite)")
    if "syntax error" in msg or "incomplete input" in msg:
        return _err(f"Syntax error: {msg} (the emulator runs SELECTs on sqlite)", 1064, "42000")
    return _err(msg)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _like(pattern: str) -> re.Pattern:
    rx = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile(rx + r"\Z", re.I | re.S)


_FROM_WORDS = {"FROM", "JOIN", "STRAIGHT_JOIN", "UPDATE"}
_CLAUSES = {"SELECT", "FROM", "WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "ON", "SET", "UNION", "VALUES",
            "USING", "WINDOW", "EXCEPT", "INTERSECT"}


class _Statement:
    """One SQL statement: dispatch on its first words (Doris-specific) or rewrite it for sqlite."""

    def __init__(self, cat: Catalog, sql: str, toks: list[Tok], db: str | None):
        self.cat, self.sql, self.toks, self.db = cat, sql, toks, db
        self.p = _Parser(sql, toks)
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
            raise _err(f"The emulator does not support this statement: {self.sql[:80]!r}", 1064, "42000")
        self.p.next()
        return handler()

    # ----------------------------------------------------------------------------------- helpers

    def _db_or_current(self, db: str | None) -> str:
        db = db or self.db
        if not db:
            raise _err("No database selected", 1046, "3D000")
        if not self.cat.has_database(db):
            raise unknown_db(db)
        return db

    def _table_ref(self) -> tuple[str, str]:
        db, name = self.p.qualified()
        return self._db_or_current(db), name

    def _end(self) -> None:
        if not self.p.at_end():
            t = self.p.peek()
            raise _err(f"Syntax error near '{t.text}'", 1064, "42000")

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
        raise _err(f"The emulator only supports CREATE DATABASE and CREATE TABLE: {self.sql[:80]!r}")

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
                raise _err("No database selected", 1046, "3D000")
            self.cat.drop_table(db, name, ie)
            return Result()
        raise _err(f"The emulator only supports DROP DATABASE and DROP TABLE: {self.sql[:80]!r}")

    def _truncate(self) -> Result:
        self.p.word("TABLE")
        db, name = self._table_ref()
        self.cat.truncate_table(db, name)
        return Result()

    def _alter(self) -> Result:
        p = self.p
        if not p.word("TABLE"):
            raise _err("The emulator only supports ALTER TABLE ... ADD COLUMN")
        db, name = self._table_ref()
        while True:
            if not p.word("ADD", "COLUMN") and not p.word("ADD"):
                raise _err("The emulator only supports ALTER TABLE ... ADD COLUMN; recreate the table "
                           "for other schema changes")
            if p.op("("):
                cols = [_parse_column(p)]
                while p.op(","):
                    cols.append(_parse_column(p))
                p.expect_op(")")
                for c in cols:
                    self.cat.add_column(db, name, c)
            else:
                col = _parse_column(p)
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
                raise _err("Syntax error: SHOW COLUMNS FROM table", 1064, "42000")
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
        raise _err(f"The emulator does not support this SHOW statement: {self.sql[:80]!r}")

    def _filter_like(self, names: list[str]) -> list[str]:
        if self.p.word("LIKE"):
            rx = _like(self.p.next().value)
            return [n for n in names if rx.match(n)]
        return names

    def _show_transaction(self) -> Result:
        p = self.p
        db = None
        if p.word("FROM") or p.word("IN"):
            db = p.ident()
        db = self._db_or_current(db)
        if not p.word("WHERE"):
            raise _err("should specify a WHERE clause: SHOW TRANSACTION WHERE ID = n | LABEL = 'x' | "
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
                raise _err(f"Invalid transaction id: {val}") from None
            found = [t for t in txns if t.txn_id == tid]
            if not found:
                raise _err(f"transaction with id {tid} does not exist")
        elif key == "LABEL" and like:
            rx = re.compile("".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch)
                                    for ch in val) + r"\Z", re.S)
            found = [t for t in txns if rx.match(t.label)]
        elif key == "LABEL":
            t = self.cat.find_txn(db, label=val)
            if t is None:
                raise _err(f"transaction with label {val} does not exist")
            found = [t]
        elif key == "STATUS" and not like:
            found = [t for t in txns if t.status.upper() == val.upper()]
        else:
            raise _err("Where clause should looks like one of them: id = 123 or label = 'label' or "
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
            raise _err("Syntax error: INSERT INTO table ...", 1064, "42000")
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
                raise _err(f"Unknown column '{n}' in '{name}'", 1054, "42S22")
            cols.append(c)
        if p.word("VALUES"):
            raw_rows = self._values(len(cols))
        else:
            rest = self.toks[p.i:]
            if not rest:
                raise _err("Syntax error: INSERT needs VALUES or SELECT", 1064, "42000")
            raw_rows = self._query(self.sql, rest).rows
            if raw_rows and len(raw_rows[0]) != len(cols):
                raise _err("Column count doesn't match value count", 1136, "21S01")
        rows = []
        for raw in raw_rows:
            given = {c.name: v for c, v in zip(cols, raw)}
            row = []
            for c in td.columns:
                if c.name in given and given[c.name] is not _DEFAULT:
                    v = coerce_value(c, given[c.name])
                else:
                    if c.default is None and not c.nullable:
                        raise _err(f"Column has no default value, column={c.name}")
                    v = _default_value(c)
                if v is None and not c.nullable:
                    raise _err(f"Insert has filtered data in strict mode: NULL value in the NOT NULL "
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
                    raise _err(f"The emulator's INSERT takes literal values only, not '{t.text}'")
                if p.op(")"):
                    break
                p.expect_op(",")
            if len(vals) != width:
                raise _err("Column count doesn't match value count", 1136, "21S01")
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
                if _is_ident(toks[k]) and toks[k + 1].up == "AS" and toks[k + 2].text == "("
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
            if _is_ident(t) and not (t.kind == "word" and t.up in _CLAUSES):
                j, parts = i + 1, [t.value]
                while j + 1 < n and toks[j].text == "." and _is_ident(toks[j + 1]):
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
                emit(t.start, t.end, _sql_str(t.value))
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
            raise _err(f"Syntax error: bad table name {'.'.join(parts)}", 1064, "42000")
        td = self.cat._table(db, name)
        for c in td.columns:
            self.ref_cols.setdefault(c.name.lower(), c)
        text = f'"{self.cat._sqlname[(db, name)]}"'
        has_alias = nxt is not None and (nxt.up == "AS" or (_is_ident(nxt) and nxt.up not in _NO_ALIAS
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
                raise _err(f"Unknown system variable '{name}'", 1193, "HY000")
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
                self.total = _CTX.add(Decimal(self.total), d)
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
