"""Reading the table's schema over the MySQL protocol, as `run` does at start and on refresh."""
from __future__ import annotations

import socket

import pytest

from sinker_lib.config import DorisConfig
from sinker_lib.errors import DorisFatalError, SchemaError, TransportError
from sinker_lib.schema import fetch_schema
from tests.integration.support import unique


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cfg_for(doris, **kw):
    base = dict(fe_hosts=(f"127.0.0.1:{doris.fe_http_port}",), query_port=doris.query_port,
                user=doris.user, password=doris.password, connect_timeout_s=2)
    base.update(kw)
    return DorisConfig(**base)


def test_fetch_schema_types_nullability_keys_defaults_in_order(doris):
    db, table = unique("db"), unique("t")
    doris.query(f"CREATE DATABASE `{db}`")
    doris.query(f"""CREATE TABLE `{db}`.`{table}` (
        id BIGINT NOT NULL, name VARCHAR(8) NULL, amount DECIMAL(10, 2) NULL,
        ts DATETIME(3) NULL, status VARCHAR(8) NOT NULL DEFAULT 'new', big LARGEINT NULL
    ) UNIQUE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1""")
    cols = fetch_schema(cfg_for(doris), db, table)
    assert [c.name for c in cols] == ["id", "name", "amount", "ts", "status", "big"]
    by = {c.name: c for c in cols}
    assert by["id"].is_key and not by["id"].nullable and by["id"].type.base == "BIGINT"
    assert by["name"].type.base == "VARCHAR" and by["name"].type.length == 8 and by["name"].nullable
    assert (by["amount"].type.precision, by["amount"].type.scale) == (10, 2)
    assert by["ts"].type.base == "DATETIME" and by["ts"].type.scale == 3
    assert by["status"].default == "new" and by["name"].default is None
    assert by["big"].type.base == "LARGEINT"


def test_fetch_schema_errors_say_what_to_fix(doris):
    db = unique("db")
    doris.query(f"CREATE DATABASE `{db}`")
    with pytest.raises(SchemaError, match="not found"):
        fetch_schema(cfg_for(doris), db, "no_such_table")
    with pytest.raises(DorisFatalError) as e:
        fetch_schema(cfg_for(doris, password="wrong"), db, "t")
    assert not isinstance(e.value, TransportError)
    port = closed_port()
    with pytest.raises(TransportError) as e:
        fetch_schema(cfg_for(doris, query_port=port), db, "t")
    assert str(port) in str(e.value)


def test_fetch_schema_fails_over_to_the_next_fe(doris):
    db, table = unique("db"), unique("t")
    doris.query(f"CREATE DATABASE `{db}`")
    doris.query(f"CREATE TABLE `{db}`.`{table}` (id INT NOT NULL) DUPLICATE KEY(id) "
                "DISTRIBUTED BY HASH(id) BUCKETS 1")
    # 127.0.0.2 is loopback too, but nothing listens there: the first FE refuses the connection
    cfg = cfg_for(doris, fe_hosts=("127.0.0.2:8030", f"127.0.0.1:{doris.fe_http_port}"))
    assert [c.name for c in fetch_schema(cfg, db, table)] == ["id"]
