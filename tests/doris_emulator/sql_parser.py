"""MySQL/Doris SQL text -> tokens, and the DDL parser (CREATE TABLE, column definitions) -> TableDef.

Also renders a TableDef back as SHOW CREATE TABLE prints it, and turns LIKE patterns into regexes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .schema import AGG_TYPES, COMPLEX_TYPES, Column, TableDef, err, make_column


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


def _unescape(m: re.Match) -> str:
    """MySQL string escapes; `\\%` and `\\_` stay two characters so LIKE can still see them as literals."""
    ch = m.group(1)
    return "\\" + ch if ch in "%_" else _ESCAPES.get(ch, ch)


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
            return re.sub(r"\\(.)", _unescape, body, flags=re.S)
        return self.text


def tokenize(sql: str) -> list[Tok]:
    """Significant tokens (no whitespace/comments) with their spans in ``sql``."""
    out, pos = [], 0
    while pos < len(sql):
        m = _TOKEN_RE.match(sql, pos)
        if not m:
            raise err(f"Syntax error near '{sql[pos:pos + 20]}'", 1064, "42000")
        kind = m.lastgroup
        if kind not in ("ws", "comment"):
            out.append(Tok(kind, m.group(), m.start(), m.end()))
        pos = m.end()
    return out


def is_ident(t: Tok | None) -> bool:
    return t is not None and t.kind in ("word", "bq")


class Parser:
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
            raise err("Syntax error: unexpected end of statement", 1064, "42000")
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
            raise err(f"Syntax error: expected '{text}' near '{t.text if t else 'end'}'", 1064, "42000")

    def ident(self) -> str:
        t = self.next()
        if not is_ident(t):
            raise err(f"Syntax error: expected a name near '{t.text}'", 1064, "42000")
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
        raise err(f"Syntax error: bad name {'.'.join(parts)}", 1064, "42000")

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


# ---------------------------------------------------------------------------------------- DDL parser

def parse_create_table(sql: str, p: Parser) -> tuple[TableDef, bool]:
    """Parse what follows ``CREATE TABLE``; returns (TableDef with db possibly None, if_not_exists)."""
    if_not_exists = p.word("IF", "NOT", "EXISTS")
    db, name = p.qualified()
    if p.word("LIKE") or p.word("AS"):
        raise err("CREATE TABLE ... LIKE/AS SELECT is not supported by the emulator: write the columns")
    p.expect_op("(")
    columns: list[Column] = []
    while True:
        t = p.peek()
        if t is not None and t.up in ("INDEX", "KEY") and is_ident(p.peek(1)) and t.kind == "word":
            while not (p.peek() is None or p.peek().text in (",", ")")):   # skip INDEX definitions
                if p.peek().text == "(":
                    p.skip_balanced()
                else:
                    p.next()
        else:
            columns.append(parse_column(p))
        if p.op(","):
            continue
        p.expect_op(")")
        break
    seen = set()
    for c in columns:
        if c.name.lower() in seen:
            raise err(f"Duplicate column name '{c.name}'", 1060, "42S21")
        seen.add(c.name.lower())

    keys_type, key_cols, distribution, partition, comment, props = None, None, "", "", "", {}
    while not p.at_end():
        t = p.peek()
        if p.word("ENGINE"):
            p.op("=")
            engine = p.ident()
            if engine.upper() != "OLAP":
                raise err(f"Unknown engine name: {engine}; the emulator only has OLAP tables")
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
                        raise err(f"Distribution column[{cn}] is not found in the table's columns")
                distribution = "DISTRIBUTED BY HASH(" + ", ".join(f"`{x}`" for x in cols) + ")"
            elif p.word("RANDOM"):
                distribution = "DISTRIBUTED BY RANDOM"
            else:
                raise err("Syntax error: DISTRIBUTED BY needs HASH(cols) or RANDOM", 1064, "42000")
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
            raise err(f"Syntax error near '{t.text}' in CREATE TABLE", 1064, "42000")

    if keys_type is None:
        keys_type, key_cols = "DUPLICATE", _default_keys(columns)
    for c in columns:
        c.is_key = False
    for k, cn in enumerate(key_cols):
        if k >= len(columns):
            raise err(f"Key column[{cn}] doesn't exist.")
        if columns[k].name.lower() != cn.lower():
            if not any(c.name.lower() == cn.lower() for c in columns):
                raise err(f"Key column[{cn}] doesn't exist.")
            raise err(f"Key columns should be a ordered prefix of the schema. KeyColumns[{k}] (starts from "
                       f"zero) is {cn}, but corresponding column is {columns[k].name} in the previous columns "
                       "declaration.")
        columns[k].is_key = True
    for c in columns:
        if keys_type == "AGGREGATE":
            if c.is_key and c.aggregation:
                raise err(f"Key column {c.name} can not set aggregation type")
            if not c.is_key and not c.aggregation:
                raise err(f"The column[{c.name}] of an AGGREGATE KEY table must have an aggregation type "
                           "(SUM, MAX, MIN, REPLACE, REPLACE_IF_NOT_NULL)")
        elif c.aggregation:
            raise err(f"The column[{c.name}] can not set aggregation type {c.aggregation}: only AGGREGATE "
                       "KEY tables have them")
    seq = props.get("function_column.sequence_col")
    if seq is not None:
        if keys_type != "UNIQUE":
            raise err("Sequence column only support UNIQUE_KEYS")
        hit = next((c for c in columns if c.name.lower() == seq.lower()), None)
        if hit is None:
            raise err(f"The specified sequence column[{seq}] not exists")
        props["function_column.sequence_col"] = hit.name
    if not distribution:
        distribution = "DISTRIBUTED BY RANDOM BUCKETS AUTO"
    key_cols = [columns[k].name for k in range(len(key_cols))]
    td = TableDef(db or "", name, columns, keys_type, key_cols, "", props, distribution, partition, comment)
    return td, if_not_exists


_COLUMN_STOP = {"AFTER", "FIRST", "TO", "PROPERTIES"}   # ends a column definition inside ALTER TABLE


def parse_column(p: Parser) -> Column:
    name = p.ident()
    tt = p.next()
    if tt.kind != "word":
        raise err(f"Syntax error: expected a type for column {name} near '{tt.text}'", 1064, "42000")
    args: list[int] = []
    inner = ""
    if tt.up in COMPLEX_TYPES and p.op("<"):
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
                raise err(f"Syntax error in type of column {name} near '{t.text}'", 1064, "42000")
    col = make_column(name, tt.text, args, inner)
    if tt.up in ("INT", "INTEGER", "TINYINT", "SMALLINT", "BIGINT") and p.word("UNSIGNED"):
        pass
    while True:
        t = p.peek()
        if t is None or t.text in (",", ")") or t.up in _COLUMN_STOP:
            return col
        if t.up in AGG_TYPES:
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
            raise err(f"Syntax error near '{t.text}' in the definition of column {name}", 1064, "42000")


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


def like_regex(pattern: str, ignore_case: bool = True) -> re.Pattern:
    """A LIKE pattern as MySQL reads it: `%` any run, `_` one char, backslash makes the next char literal."""
    parts, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(parts) + r"\Z", (re.I if ignore_case else 0) | re.S)
