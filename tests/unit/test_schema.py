"""Doris type strings in every spelling, DESCRIBE / information_schema rows, fetch_schema's errors."""
import pymysql
import pytest

from sinker_lib import schema
from sinker_lib.config import DorisConfig, MappingConfig, SchemaColumn
from sinker_lib.errors import DorisFatalError, SchemaError, TransportError
from sinker_lib.doris_types import Column, DorisType, parse_type


@pytest.mark.parametrize("text,base,length,precision,scale", [
    ("int", "INT", None, None, None),
    ("INT", "INT", None, None, None),
    ("int(11)", "INT", None, None, None),
    ("bigint(20)", "BIGINT", None, None, None),
    ("largeint", "LARGEINT", None, None, None),
    ("bigint unsigned", "LARGEINT", None, None, None),
    ("bigint(20) unsigned", "LARGEINT", None, None, None),
    ("tinyint", "TINYINT", None, None, None),
    ("tinyint(1)", "TINYINT", None, None, None),
    ("smallint(6)", "SMALLINT", None, None, None),
    ("boolean", "BOOLEAN", None, None, None),
    ("BOOL", "BOOLEAN", None, None, None),
    ("float", "FLOAT", None, None, None),
    ("DOUBLE", "DOUBLE", None, None, None),
    ("decimal(10,2)", "DECIMAL", None, 10, 2),
    ("DECIMAL(10, 2)", "DECIMAL", None, 10, 2),
    ("DECIMALV3(10, 2)", "DECIMAL", None, 10, 2),
    ("decimalv3( 38 , 9 )", "DECIMAL", None, 38, 9),
    ("DECIMALV2(27, 9)", "DECIMAL", None, 27, 9),
    ("decimal(12)", "DECIMAL", None, 12, 0),
    ("decimal", "DECIMAL", None, 9, 0),
    ("char(8)", "CHAR", 8, None, None),
    ("CHAR", "CHAR", 1, None, None),
    ("varchar(20)", "VARCHAR", 20, None, None),
    ("VARCHAR( 255 )", "VARCHAR", 255, None, None),
    ("varchar(*)", "VARCHAR", 65533, None, None),
    ("text", "STRING", None, None, None),
    ("STRING", "STRING", None, None, None),
    ("date", "DATE", None, None, None),
    ("DATEV2", "DATE", None, None, None),
    ("datetime", "DATETIME", None, None, 0),
    ("datetime(3)", "DATETIME", None, None, 3),
    ("DATETIMEV2(6)", "DATETIME", None, None, 6),
    ("datetimev2", "DATETIME", None, None, 0),
    ("json", "JSON", None, None, None),
    ("JSONB", "JSON", None, None, None),
    ("variant", "VARIANT", None, None, None),
    ("ipv4", "IPV4", None, None, None),
    ("IPV6", "IPV6", None, None, None),
    ("hll", "HLL", None, None, None),
    ("BITMAP", "BITMAP", None, None, None),
    ("quantile_state", "QUANTILE_STATE", None, None, None),
    ("ARRAY<INT>", "ARRAY", None, None, None),
    ("array<varchar(10)>", "ARRAY", None, None, None),
    ("MAP<STRING,INT>", "MAP", None, None, None),
    ("struct<a:int,b:array<text>>", "STRUCT", None, None, None),
    ("geometry", "GEOMETRY", None, None, None),
])
def test_parse_type(text, base, length, precision, scale):
    t = parse_type(text)
    assert (t.base, t.length, t.precision, t.scale) == (base, length, precision, scale)
    assert t.raw == text.strip()


def test_complex_types_keep_raw_inner_text():
    assert parse_type("MAP<STRING, ARRAY<INT>>").raw == "MAP<STRING, ARRAY<INT>>"


def test_columns_from_describe_tuples():
    rows = [
        ("id", "bigint", "No", "true", None, ""),
        ("name", "varchar(32)", "YES", "false", "NULL", "NONE"),
        ("amount", "DECIMALV3(10, 2)", "yes", "false", "0", "SUM"),
        ("ts", "datetime(3)", "NO", "false", "CURRENT_TIMESTAMP", "REPLACE"),
        ("__DORIS_DELETE_SIGN__", "tinyint", "NO", "false", "0", "REPLACE"),
    ]
    cols = schema.columns_from_describe(rows)
    assert [c.name for c in cols] == ["id", "name", "amount", "ts"]
    assert cols[0] == Column("id", DorisType("bigint", "BIGINT"), nullable=False, default=None,
                             is_key=True, aggregation=None)
    assert cols[1].nullable and cols[1].default is None and cols[1].aggregation is None
    assert cols[2].type.precision == 10 and cols[2].default == "0" and cols[2].aggregation == "SUM"
    assert cols[3].type.scale == 3 and not cols[3].nullable and cols[3].aggregation == "REPLACE"
    assert not any(c.auto_increment for c in cols)


def test_auto_increment_columns_are_recognised():
    cols = schema.columns_from_describe([("id", "BIGINT", "NO", "true", None, "AUTO_INCREMENT"),
                                          ("v", "INT", "YES", "false", None, "")])
    assert [c.auto_increment for c in cols] == [True, False]


def test_columns_from_describe_dicts_any_case():
    rows = [{"Field": "k", "Type": "INT", "Null": "NO", "Key": "TRUE", "Default": None, "Extra": ""},
            {"FIELD": "v", "TYPE": "text", "NULL": "YES", "KEY": "FALSE", "DEFAULT": "NULL", "EXTRA": None}]
    cols = schema.columns_from_describe(rows)
    assert [(c.name, c.type.base, c.nullable, c.is_key) for c in cols] == [
        ("k", "INT", False, True), ("v", "STRING", True, False)]


def test_columns_from_information_schema():
    rows = [("id", "bigint(20)", "NO", "DUP", None, "bigint"),
            ("big", "bigint unsigned", "YES", "", None, "bigint unsigned"),
            ("ts", "datetimev2(3)", "YES", "", "NULL", "datetimev2"),
            ("__DORIS_VERSION_COL__", "bigint", "NO", "", None, "bigint")]
    cols = schema.columns_from_information_schema(rows)
    assert [(c.name, c.type.base, c.nullable, c.is_key) for c in cols] == [
        ("id", "BIGINT", False, True), ("big", "LARGEINT", True, False), ("ts", "DATETIME", True, False)]
    assert cols[2].type.scale == 3 and cols[2].default is None


def test_columns_from_config():
    m = MappingConfig(schema=(SchemaColumn("id", "bigint", False), SchemaColumn("n", "varchar(8)", True, "x")))
    cols = schema.columns_from_config(m)
    assert cols == [Column("id", parse_type("bigint"), False, None),
                    Column("n", parse_type("varchar(8)"), True, "x")]


# -- fetch_schema with a fake pymysql connection ----------------------------------------------------
class FakeCursor:
    def __init__(self, conn):
        self.conn = conn
        self.description = None
        self._rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, args=None):
        self.conn.queries.append((sql, args))
        answer = self.conn.answers.get("DESCRIBE" if sql.startswith("DESCRIBE") else "INFO")
        if isinstance(answer, Exception):
            raise answer
        names, rows = answer if answer else ((), [])
        self.description = [(n,) for n in names] or None
        self._rows = rows

    def fetchall(self):
        return list(self._rows)


class FakeConn:
    def __init__(self, answers):
        self.answers = answers
        self.queries = []
        self.closed = False

    def cursor(self):
        return FakeCursor(self)

    def close(self):
        self.closed = True


DESC_NAMES = ("Field", "Type", "Null", "Key", "Default", "Extra")


def fake_connect(monkeypatch, by_host):
    calls = []

    def connect(**kw):
        calls.append(kw)
        what = by_host[kw["host"]]
        if isinstance(what, Exception):
            raise what
        return what
    monkeypatch.setattr(pymysql, "connect", connect)
    return calls


CFG = DorisConfig(fe_hosts=("fe1:8030", "fe2", "fe3"), query_port=9031, user="loader", password="pw",
                  connect_timeout_s=2.5)


def test_fetch_schema_fails_over_to_the_next_fe(monkeypatch):
    conn = FakeConn({"DESCRIBE": (DESC_NAMES, [("id", "int", "NO", "true", None, "")])})
    calls = fake_connect(monkeypatch, {
        "fe1": pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'fe1'"),
        "fe2": conn})
    cols = schema.fetch_schema(CFG, "db", "t")
    assert [c.name for c in cols] == ["id"]
    assert [c["host"] for c in calls] == ["fe1", "fe2"]
    assert calls[1]["port"] == 9031 and calls[1]["user"] == "loader" and calls[1]["password"] == "pw"
    assert calls[1]["connect_timeout"] == 2.5
    assert conn.queries[0][0] == "DESCRIBE `db`.`t`"
    assert conn.closed


def test_fetch_schema_falls_back_to_information_schema(monkeypatch):
    conn = FakeConn({"DESCRIBE": (DESC_NAMES, []),
                     "INFO": ((), [("k", "decimalv3(10, 2)", "NO", "UNI", None, "decimalv3")])})
    fake_connect(monkeypatch, {"fe1": conn})
    cols = schema.fetch_schema(CFG, "db", "t")
    assert cols[0].type.base == "DECIMAL" and cols[0].is_key
    assert conn.queries[1][1] == ("db", "t") and "ORDINAL_POSITION" in conn.queries[1][0]


def test_fetch_schema_unknown_table(monkeypatch):
    conn = FakeConn({"DESCRIBE": pymysql.err.OperationalError(
        1105, "errCode = 2, detailMessage = Unknown table 'nope'")})
    fake_connect(monkeypatch, {"fe1": conn})
    with pytest.raises(SchemaError, match=r"table db\.nope not found in Doris.*doris\.database / doris\.table"):
        schema.fetch_schema(CFG, "db", "nope")


def test_fetch_schema_empty_everywhere_is_not_found(monkeypatch):
    fake_connect(monkeypatch, {"fe1": FakeConn({"DESCRIBE": (DESC_NAMES, []), "INFO": ((), [])})})
    with pytest.raises(SchemaError, match="not found"):
        schema.fetch_schema(CFG, "db", "t")


def test_fetch_schema_auth(monkeypatch):
    fake_connect(monkeypatch, {"fe1": pymysql.err.OperationalError(
        1045, "Access denied for user 'loader'@'10.0.0.1' (using password: YES)")})
    with pytest.raises(DorisFatalError, match="SINKER_DORIS_PASSWORD") as e:
        schema.fetch_schema(CFG, "db", "t")
    assert "doris.user" in str(e.value) and not isinstance(e.value, TransportError)


def test_fetch_schema_no_fe_reachable(monkeypatch):
    fake_connect(monkeypatch, {h: pymysql.err.OperationalError(2003, f"Can't connect to {h}")
                               for h in ("fe1", "fe2", "fe3")})
    with pytest.raises(TransportError) as e:
        schema.fetch_schema(CFG, "db", "t")
    assert e.value.exit_code == 4
    for h in ("fe1:9031", "fe2:9031", "fe3:9031"):
        assert h in str(e.value)
