"""The emulator's FE query port, driven by pymysql exactly as sinker and the tests use it."""
import datetime
import threading
from decimal import Decimal

import pymysql
import pytest

from tests.doris_emulator.storage import Catalog
from tests.doris_emulator.transactions import Txn
from tests.doris_emulator.mysql_server import MySQLServer


@pytest.fixture(scope="module")
def server():
    srv = MySQLServer(Catalog(), password="s3cret").start()
    yield srv
    srv.stop()


@pytest.fixture
def cur(server):
    conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="s3cret", autocommit=True)
    with conn.cursor() as c:
        c.execute("CREATE DATABASE IF NOT EXISTS db_9f8e")
        c.execute("USE db_9f8e")
        yield c
    conn.close()


def test_identity_queries(cur):
    cur.execute("SELECT @@version_comment")
    assert cur.fetchone()[0].startswith("Doris version doris-2.1")
    cur.execute("SELECT version()")
    assert cur.fetchone() == ("5.7.99",)
    cur.execute("SELECT 1")
    assert cur.fetchall() == ((1,),)
    cur.execute("SET NAMES utf8mb4")
    cur.execute("SELECT DATABASE()")
    assert cur.fetchone() == ("db_9f8e",)


def test_describe_information_schema_and_show_create(cur):
    cur.execute("CREATE TABLE `db_9f8e`.`ev` (`id` BIGINT NOT NULL, ts DATETIME(3) NOT NULL, amount DECIMAL(10,2), "
                "name VARCHAR(20) DEFAULT 'x', body STRING, doc JSON, big LARGEINT) "
                "DUPLICATE KEY(`id`) DISTRIBUTED BY HASH(`id`) BUCKETS 4 PROPERTIES (\"replication_num\" = \"1\")")
    cur.execute("DESCRIBE db_9f8e.ev")
    assert [d[0] for d in cur.description] == ["Field", "Type", "Null", "Key", "Default", "Extra"]
    assert cur.fetchall() == (
        ("id", "bigint", "NO", "true", "NULL", ""), ("ts", "datetime(3)", "NO", "false", "NULL", ""),
        ("amount", "decimal(10,2)", "YES", "false", "NULL", ""), ("name", "varchar(20)", "YES", "false", "x", ""),
        ("body", "text", "YES", "false", "NULL", ""), ("doc", "json", "YES", "false", "NULL", ""),
        ("big", "largeint", "YES", "false", "NULL", ""))
    cur.execute("SELECT COLUMN_NAME, ORDINAL_POSITION, IS_NULLABLE, DATA_TYPE, COLUMN_TYPE, COLUMN_KEY "
                "FROM information_schema.columns WHERE table_schema = 'db_9f8e' AND table_name = 'ev' "
                "ORDER BY ordinal_position")
    rows = cur.fetchall()
    assert rows[0] == ("id", 1, "NO", "bigint", "bigint(20)", "DUP")
    assert [r[4] for r in rows[1:]] == ["datetimev2(3)", "decimalv3(10,2)", "varchar(20)", "text", "json",
                                        "bigint unsigned"]
    cur.execute("SHOW CREATE TABLE ev")
    name, ddl = cur.fetchone()
    assert name == "ev" and ddl.startswith("CREATE TABLE `ev` (") and "DUPLICATE KEY(`id`)" in ddl
    assert "DISTRIBUTED BY HASH(`id`) BUCKETS 4" in ddl
    cur.execute("SHOW TABLES")
    assert ("ev",) in cur.fetchall()


def test_select_types_and_clauses(server, cur):
    cur.execute("CREATE TABLE sel (id INT, ts DATETIME(3), d DATE, amount DECIMAL(10,2), f DOUBLE, s STRING, "
                "big LARGEINT) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1")
    server.catalog.insert_rows("db_9f8e", "sel", [
        (i, f"2024-05-0{i} 10:00:00.250", f"2024-05-0{i}", f"{i}.25", i / 4, ["a", "b", "a"][i % 3], 2 ** 100 * i)
        for i in range(1, 7)])
    cur.execute("SELECT * FROM sel WHERE id = 1")
    assert cur.fetchone() == (1, datetime.datetime(2024, 5, 1, 10, 0, 0, 250000), datetime.date(2024, 5, 1),
                              Decimal("1.25"), 0.25, "b", 2 ** 100)
    cur.execute("SELECT id FROM sel WHERE amount > 2 AND s = 'a' ORDER BY id DESC LIMIT 2")
    assert cur.fetchall() == ((6,), (5,))
    cur.execute("SELECT COUNT(*), COUNT(DISTINCT s), MAX(id), MIN(id), SUM(id) FROM db_9f8e.sel")
    assert cur.fetchone() == (6, 2, 6, 1, 21)
    cur.execute("SELECT s, COUNT(*) FROM sel GROUP BY s ORDER BY s")
    assert cur.fetchall() == (("a", 4), ("b", 2))
    cur.execute(f"SELECT id FROM sel WHERE big = {2 ** 100 * 5}")
    assert cur.fetchall() == ((5,),)


def test_largeint_round_trip_through_insert(cur):
    cur.execute("CREATE TABLE li (k LARGEINT NOT NULL, v LARGEINT) UNIQUE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 1")
    cur.execute(f"INSERT INTO li VALUES ({2 ** 100}, {-(2 ** 100)})")
    cur.execute("SELECT k, v FROM li")
    assert cur.fetchall() == ((2 ** 100, -(2 ** 100)),)


def test_unique_upsert_and_aggregate_sum(server, cur):
    cur.execute("CREATE TABLE uq (k INT, v VARCHAR(10)) UNIQUE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 1")
    server.catalog.insert_rows("db_9f8e", "uq", [(1, "a"), (2, "b")])
    server.catalog.insert_rows("db_9f8e", "uq", [(1, "z")])
    cur.execute("SELECT * FROM uq ORDER BY k")
    assert cur.fetchall() == ((1, "z"), (2, "b"))
    cur.execute("CREATE TABLE ag (k INT, n BIGINT SUM, last VARCHAR(5) REPLACE) AGGREGATE KEY(k) "
                "DISTRIBUTED BY HASH(k) BUCKETS 1")
    cur.execute("DESC ag")
    assert [r[5] for r in cur.fetchall()] == ["", "SUM", "REPLACE"]
    server.catalog.insert_rows("db_9f8e", "ag", [(1, 2, "x"), (1, 3, "y")])
    cur.execute("INSERT INTO ag VALUES (1, 10, 'w')")
    assert cur.rowcount == 1
    cur.execute("SELECT * FROM ag")
    assert cur.fetchall() == ((1, 15, "w"),)


def test_alter_add_column(server, cur):
    cur.execute("CREATE TABLE alt (a INT, b STRING) DISTRIBUTED BY HASH(a) BUCKETS 1")
    server.catalog.insert_rows("db_9f8e", "alt", [(1, "x")])
    cur.execute("ALTER TABLE alt ADD COLUMN c INT DEFAULT '5' AFTER a")
    cur.execute("DESC alt")
    assert [r[0] for r in cur.fetchall()] == ["a", "c", "b"]
    cur.execute("SELECT * FROM alt")
    assert cur.fetchall() == ((1, 5, "x"),)


def test_show_transaction(server, cur):
    cat = server.catalog
    txn = Txn(cat.next_txn_id(), "db_9f8e", "sinker_ev_0_1_9", "PRECOMMITTED", prepare_time=1700000000.0,
              precommit_time=1700000001.0)
    cat.add_txn(txn)
    cur.execute("SHOW TRANSACTION FROM db_9f8e WHERE LABEL = 'sinker_ev_0_1_9'")
    cols = [d[0] for d in cur.description]
    assert cols == ["TransactionId", "Label", "Coordinator", "TransactionStatus", "LoadJobSourceType", "PrepareTime",
                    "PreCommitTime", "CommitTime", "PublishTime", "FinishTime", "Reason", "ErrorReplicasCount",
                    "ListenerId", "TimeoutMs", "ErrMsg"]
    row = dict(zip(cols, cur.fetchone()))
    assert row["TransactionId"] == str(txn.txn_id) and row["TransactionStatus"] == "PRECOMMITTED"
    assert row["CommitTime"] is None and len(row["PreCommitTime"]) == 19
    txn.status = "VISIBLE"
    cur.execute(f"SHOW TRANSACTION WHERE ID = {txn.txn_id}")
    assert cur.fetchone()[3] == "VISIBLE"
    cur.execute("SHOW TRANSACTION WHERE LABEL LIKE 'sinker\\_ev%'")
    assert len(cur.fetchall()) == 1


def test_errors_reach_the_client(server, cur):
    with pytest.raises(pymysql.err.MySQLError) as e:
        cur.execute("SELECT * FROM no_such_db.t")
    assert e.value.args[0] == 1049 and "Unknown database 'no_such_db'" in e.value.args[1]
    with pytest.raises(pymysql.err.MySQLError) as e:
        cur.execute("SELECT * FROM missing_table")
    assert "missing_table" in e.value.args[1] and e.value.args[1].startswith("errCode = 2, detailMessage =")
    with pytest.raises(pymysql.err.MySQLError) as e:
        cur.execute("CREATE TABLE bad (a NOTATYPE)")
    assert "Unknown data type" in e.value.args[1]
    with pytest.raises(pymysql.err.MySQLError) as e:
        cur.execute("USE nowhere")
    assert e.value.args[0] == 1049
    cur.execute("SELECT 2")            # the connection survives errors
    assert cur.fetchone() == (2,)


def test_wrong_password_and_unknown_database(server):
    with pytest.raises(pymysql.err.OperationalError) as e:
        pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="wrong")
    assert e.value.args[0] == 1045 and "Access denied" in e.value.args[1]
    with pytest.raises(pymysql.err.OperationalError) as e:
        pymysql.connect(host="127.0.0.1", port=server.port, user="admin", password="s3cret")
    assert e.value.args[0] == 1045
    with pytest.raises(pymysql.err.OperationalError) as e:
        pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="s3cret", database="nope")
    assert e.value.args[0] == 1049


def test_ping_init_db_and_concurrent_connections(server, cur):
    cur.execute("CREATE TABLE cc (a INT) DISTRIBUTED BY HASH(a) BUCKETS 1")
    errors, barrier = [], threading.Barrier(2)

    def worker(base):
        try:
            conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="s3cret",
                                   database="db_9f8e", autocommit=True)
            conn.ping()
            conn.select_db("db_9f8e")
            barrier.wait(timeout=10)
            with conn.cursor() as c:
                for i in range(50):
                    c.execute(f"INSERT INTO cc VALUES ({base + i})")
                    c.execute("SELECT COUNT(*) FROM cc")
                    c.fetchone()
            conn.close()
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(b,)) for b in (0, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    cur.execute("SELECT COUNT(*), COUNT(DISTINCT a) FROM cc")
    assert cur.fetchone() == (100, 100)


def test_large_result_and_long_query(server, cur):
    cur.execute("CREATE TABLE wide (a INT, s STRING) DISTRIBUTED BY HASH(a) BUCKETS 1")
    server.catalog.insert_rows("db_9f8e", "wide", [(i, "x" * 300) for i in range(5000)])
    cur.execute("SELECT * FROM wide")
    assert len(cur.fetchall()) == 5000
    long_text = "y" * (17 * 1024 * 1024)      # > one 16 MB packet: exercises multi-packet reads
    cur.execute("INSERT INTO wide VALUES (%s, %s)", (-1, long_text))
    cur.execute("SELECT LENGTH(s) FROM wide WHERE a = -1")
    assert cur.fetchone() == (len(long_text),)
