"""The emulator's catalog on its own: Doris DDL, table models, value storage, SQL rewriting."""
import pytest

from tests.doris_emulator.schema import Column, DorisError
from tests.doris_emulator.storage import Catalog
from tests.doris_emulator.transactions import Txn

EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS `db_1a2b`.`events` (
  `event_id` BIGINT NOT NULL COMMENT "id",
  event_time DATETIME(3) NOT NULL,
  user_id INT NULL,
  event_type VARCHAR(32) NULL,
  country CHAR(2),
  amount DECIMAL(12, 2) NULL,
  is_mobile BOOLEAN NULL,
  properties JSON NULL,
  big LARGEINT NULL,
  status VARCHAR(16) NOT NULL DEFAULT 'new',
  INDEX idx_type (event_type) USING INVERTED COMMENT 'x'
) DUPLICATE KEY(event_id, event_time)
COMMENT 'events table'
PARTITION BY RANGE(event_time) ()
DISTRIBUTED BY HASH(`event_id`) BUCKETS AUTO
PROPERTIES ("replication_num" = "1", "compression" = "zstd");
"""


@pytest.fixture
def cat():
    c = Catalog()
    c.execute("CREATE DATABASE db_1a2b", None)
    return c


def q(cat, sql, db="db_1a2b"):
    return cat.execute(sql, db)


def test_create_table_parses_doris_ddl(cat):
    q(cat, EVENTS_DDL)
    td = cat.get_table("db_1a2b", "events")
    assert td.keys_type == "DUPLICATE" and td.key_columns == ["event_id", "event_time"]
    assert [c.type_str for c in td.columns] == ["bigint", "datetime(3)", "int", "varchar(32)", "char(2)",
                                                "decimal(12,2)", "boolean", "json", "largeint", "varchar(16)"]
    amount = td.column("AMOUNT")
    assert (amount.base, amount.precision, amount.scale) == ("DECIMAL", 12, 2)
    assert td.column("event_time").scale == 3 and td.column("event_type").length == 32
    assert td.column("status").default == "new" and not td.column("status").nullable
    assert td.column("event_id").comment == "id"
    assert td.properties == {"replication_num": "1", "compression": "zstd"}
    assert "DISTRIBUTED BY HASH(`event_id`) BUCKETS AUTO" in td.ddl and "PARTITION BY RANGE" in td.ddl
    q(cat, EVENTS_DDL)                       # IF NOT EXISTS: no error
    with pytest.raises(DorisError, match="already exists") as e:
        q(cat, "CREATE TABLE events (a INT) DISTRIBUTED BY HASH(a) BUCKETS 1")
    assert e.value.code == 1050


@pytest.mark.parametrize("ddl, message", [
    ("CREATE TABLE t (a INT, b FOO) DUPLICATE KEY(a)", "Unknown data type: 'FOO'"),
    ("CREATE TABLE t (a INT, b INT) DUPLICATE KEY(b)", "ordered prefix"),
    ("CREATE TABLE t (a INT, b INT) DUPLICATE KEY(c)", "Key column\\[c\\] doesn't exist"),
    ("CREATE TABLE t (a INT, b INT) AGGREGATE KEY(a)", "aggregation type"),
    ("CREATE TABLE t (a INT, b INT SUM) UNIQUE KEY(a)", "aggregation type"),
    ("CREATE TABLE t (a INT, a INT)", "Duplicate column name"),
    ("CREATE TABLE t (a DECIMAL(40, 2))", "precision"),
    ("CREATE TABLE nope.t (a INT)", "Unknown database 'nope'"),
])
def test_bad_ddl_reads_like_doris(cat, ddl, message):
    with pytest.raises(DorisError, match=message) as e:
        q(cat, ddl)
    assert e.value.message.startswith("errCode = 2, detailMessage = ")


def test_describe_and_information_schema(cat):
    q(cat, "CREATE TABLE a (k INT, s BIGINT SUM DEFAULT '0', r VARCHAR(5) REPLACE, x DATETIME MAX NOT NULL) "
           "AGGREGATE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 1")
    cols, rows = q(cat, "DESC a")
    assert cols == ["Field", "Type", "Null", "Key", "Default", "Extra"]
    assert rows == [("k", "int", "YES", "true", "NULL", ""), ("s", "bigint", "YES", "false", "0", "SUM"),
                    ("r", "varchar(5)", "YES", "false", "NULL", "REPLACE"),
                    ("x", "datetime", "NO", "false", "NULL", "MAX")]


def test_aggregate_value_column_needs_type_in_alter(cat):
    q(cat, "CREATE TABLE a (k INT, s BIGINT SUM) AGGREGATE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 1")
    with pytest.raises(DorisError, match="aggregation type"):
        q(cat, "ALTER TABLE a ADD COLUMN z INT")


def test_information_schema_internal_names(cat):
    q(cat, EVENTS_DDL)
    cols, rows = q(cat, "SELECT COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE, DATA_TYPE, COLUMN_TYPE, "
                        "COLUMN_KEY FROM information_schema.columns WHERE table_schema = 'db_1a2b' AND "
                        "table_name = 'events' ORDER BY ordinal_position")
    assert rows[0] == ("event_id", 1, None, "NO", "bigint", "bigint(20)", "DUP")
    by_name = {r[0]: r for r in rows}
    assert by_name["event_time"][5] == "datetimev2(3)" and by_name["event_time"][6] == "DUP"
    assert by_name["amount"][4:6] == ("decimalv3", "decimalv3(12,2)")
    assert by_name["big"][4:6] == ("bigint unsigned", "bigint unsigned")
    assert by_name["status"][2:4] == ("new", "NO") and by_name["status"][6] == ""
    assert by_name["is_mobile"][5] == "tinyint(1)"


def test_insert_rows_duplicate_and_select_rewrites(cat):
    q(cat, EVENTS_DDL)
    rows = [(i, f"2024-01-01 00:00:0{i}.000", i % 3, ["view", "click"][i % 2], "US", f"{i}.50", i % 2,
             '{"a":1}', 2 ** 100 + i, "new") for i in range(6)]
    cat.insert_rows("db_1a2b", "events", rows)
    assert cat.count_rows("db_1a2b", "events") == 6
    assert q(cat, "SELECT COUNT(*), COUNT(DISTINCT event_type), MAX(event_id) FROM `db_1a2b`.`events`",
             None)[1] == [(6, 2, 5)]
    cols, got = q(cat, "SELECT events.event_id, db_1a2b.events.amount FROM events WHERE amount > 2 "
                       "ORDER BY amount DESC LIMIT 1, 2")
    assert [r[0] for r in got] == [4, 3] and got[0][1] == "4.50"
    got = q(cat, "SELECT event_type, COUNT(*) AS n FROM db_1a2b.events AS e GROUP BY event_type ORDER BY n, "
                 "event_type")[1]
    assert got == [("click", 3), ("view", 3)]
    assert q(cat, f"SELECT event_id FROM events WHERE big = {2 ** 100 + 3}")[1] == [(3,)]
    assert q(cat, "SELECT big FROM events ORDER BY big DESC LIMIT 1")[1] == [(2 ** 100 + 5,)]
    assert q(cat, "SELECT event_id FROM events WHERE event_type = \"click\" AND event_id < 2")[1] == [(1,)]
    assert q(cat, "SELECT 'it\\'s', @@version_comment, version(), database()")[1] == \
        [("it's", "Doris version doris-2.1.x-emulator", "5.7.99", "db_1a2b")]


def test_insert_rows_is_atomic(cat):
    q(cat, "CREATE TABLE t (a INT, b STRING) DISTRIBUTED BY HASH(a) BUCKETS 1")
    with pytest.raises(DorisError):
        cat.insert_rows("db_1a2b", "t", [(1, "x"), (2,)])
    assert cat.count_rows("db_1a2b", "t") == 0


def test_unique_key_keeps_latest_row(cat):
    q(cat, "CREATE TABLE u (k INT, k2 VARCHAR(4), v STRING) UNIQUE KEY(k, k2) DISTRIBUTED BY HASH(k) BUCKETS 1")
    cat.insert_rows("db_1a2b", "u", [(1, "a", "old"), (2, "a", "x"), (1, "a", "mid")])
    cat.insert_rows("db_1a2b", "u", [(1, "a", "new")])
    assert q(cat, "SELECT * FROM u ORDER BY k")[1] == [(1, "a", "new"), (2, "a", "x")]


def test_aggregate_key_merges(cat):
    q(cat, "CREATE TABLE a (k INT, s BIGINT SUM, r VARCHAR(5) REPLACE, mx INT MAX, mn INT MIN, "
           "ds DECIMAL(10,2) SUM, b LARGEINT SUM, rn STRING REPLACE_IF_NOT_NULL) AGGREGATE KEY(k) "
           "DISTRIBUTED BY HASH(k) BUCKETS 1")
    cat.insert_rows("db_1a2b", "a", [(1, 5, "a", 3, 3, "1.10", 2 ** 70, "p"),
                                     (2, 1, None, None, None, None, None, None)])
    cat.insert_rows("db_1a2b", "a", [(1, 7, "b", 1, 1, "2.25", 2 ** 70, None), (2, 1, "c", 9, 9, "0.01", 1, "q")])
    assert q(cat, "SELECT * FROM a ORDER BY k")[1] == [
        (1, 12, "b", 3, 1, "3.35", 2 ** 71, "p"), (2, 2, "c", 9, 9, "0.01", 1, "q")]


def test_alter_add_column_keeps_order_and_fills_default(cat):
    q(cat, "CREATE TABLE t (a INT, b STRING) DISTRIBUTED BY HASH(a) BUCKETS 1")
    cat.insert_rows("db_1a2b", "t", [(1, "x")])
    q(cat, "ALTER TABLE t ADD COLUMN c INT NULL DEFAULT \"7\" AFTER a")
    q(cat, "ALTER TABLE t ADD COLUMN d VARCHAR(3)")
    assert [c.name for c in cat.get_table("db_1a2b", "t").columns] == ["a", "c", "b", "d"]
    assert q(cat, "SELECT * FROM t")[1] == [(1, 7, "x", None)]
    cat.add_column("db_1a2b", "t", Column("e", "bigint", "BIGINT", default="0", nullable=False))
    assert q(cat, "SELECT e FROM t")[1] == [(0,)]
    assert "`c` int NULL DEFAULT \"7\"" in q(cat, "SHOW CREATE TABLE t")[1][0][1]
    with pytest.raises(DorisError, match="already exists"):
        q(cat, "ALTER TABLE t ADD COLUMN b INT")


def test_insert_values_converts_like_doris(cat):
    q(cat, EVENTS_DDL)
    n = cat.execute_full("INSERT INTO events (event_id, event_time, amount, big) VALUES "
                         "(1, '2024-01-03 10:00:00', 1.5, 170141183460469231731687303715884105727), "
                         "(2, '2024-01-03', -2, NULL)", "db_1a2b").affected
    assert n == 2
    assert q(cat, "SELECT event_time, amount, status, big FROM events ORDER BY event_id")[1] == [
        ("2024-01-03 10:00:00.000", "1.50", "new", 2 ** 127 - 1), ("2024-01-03 00:00:00.000", "-2.00", "new", None)]
    with pytest.raises(DorisError, match="NOT NULL|no default"):
        q(cat, "INSERT INTO events (event_id) VALUES (3)")
    with pytest.raises(DorisError, match="Invalid value"):
        q(cat, "INSERT INTO events (event_id, event_time, country) VALUES (3, '2024-01-01', 'USA')")


def test_truncate_drop_and_errors(cat):
    q(cat, "CREATE TABLE t (a INT) DISTRIBUTED BY HASH(a) BUCKETS 1")
    cat.insert_rows("db_1a2b", "t", [(1,), (2,)])
    q(cat, "TRUNCATE TABLE t")
    assert cat.count_rows("db_1a2b", "t") == 0
    q(cat, "DROP TABLE db_1a2b.t")
    assert cat.get_table("db_1a2b", "t") is None
    q(cat, "DROP TABLE IF EXISTS t")
    with pytest.raises(DorisError, match=r"Table \[t\] does not exist in database \[db_1a2b\]"):
        q(cat, "SELECT * FROM t")
    with pytest.raises(DorisError, match="Unknown database 'zz'") as e:
        q(cat, "SELECT * FROM zz.t")
    assert e.value.code == 1049
    with pytest.raises(DorisError, match="No database selected"):
        q(cat, "SHOW TABLES", None)
    q(cat, "DROP DATABASE db_1a2b")
    assert not cat.has_database("db_1a2b")


def test_show_statements(cat):
    q(cat, "CREATE TABLE t1 (a INT) DISTRIBUTED BY HASH(a) BUCKETS 1")
    assert q(cat, "SHOW TABLES") == (["Tables_in_db_1a2b"], [("t1",)])
    assert ("db_1a2b",) in q(cat, "SHOW DATABASES")[1]
    assert q(cat, "SHOW COLUMNS FROM t1")[1] == [("a", "int", "YES", "true", "NULL", "")]
    assert cat.execute_full("USE db_1a2b", None).new_db == "db_1a2b"
    assert q(cat, "SET enable_profile = true") == ([], [])


def test_transactions_registry_and_show_transaction(cat):
    t1 = Txn(cat.next_txn_id(), "db_1a2b", "sinker-a-1", "ABORTED", prepare_time=1700000000.0, reason="boom")
    t2 = Txn(cat.next_txn_id(), "db_1a2b", "sinker-a-1", "VISIBLE", prepare_time=1700000001.0,
             commit_time=1700000002.0, finish_time=1700000002.5)
    assert t2.txn_id > t1.txn_id
    cat.add_txn(t1)
    cat.add_txn(t2)
    cat.add_txn(Txn(cat.next_txn_id(), "db_1a2b", "other", "PRECOMMITTED"))
    assert cat.find_txn("db_1a2b", label="sinker-a-1") is t2
    assert cat.find_txn("db_1a2b", txn_id=t1.txn_id) is t1
    assert cat.find_txn("elsewhere", txn_id=t1.txn_id) is None
    assert len(cat.list_txns("db_1a2b")) == 3
    cols, rows = q(cat, "SHOW TRANSACTION FROM db_1a2b WHERE LABEL = 'sinker-a-1'", None)
    assert cols[:4] == ["TransactionId", "Label", "Coordinator", "TransactionStatus"] and len(cols) == 15
    assert rows[0][0] == str(t2.txn_id) and rows[0][3] == "VISIBLE" and rows[0][6] is None
    assert len(rows[0][5]) == len("2023-11-14 22:13:21")
    assert q(cat, f"SHOW TRANSACTION WHERE ID = {t1.txn_id}")[1][0][10] == "boom"
    assert len(q(cat, "SHOW TRANSACTION WHERE LABEL LIKE 'sinker-%'")[1]) == 2
    with pytest.raises(DorisError, match="does not exist"):
        q(cat, "SHOW TRANSACTION WHERE ID = 1")


def test_file_backed_catalog_survives_reopen(tmp_path):
    path = str(tmp_path / "emu.sqlite")
    c = Catalog(path)
    c.execute("CREATE DATABASE d", None)
    c.execute("CREATE TABLE d.t (a LARGEINT, b DECIMAL(5,1)) UNIQUE KEY(a) DISTRIBUTED BY HASH(a) BUCKETS 1", None)
    c.insert_rows("d", "t", [(2 ** 90, "1.5")])
    c2 = Catalog(path)
    assert c2.get_table("d", "t").keys_type == "UNIQUE"
    assert c2.execute("SELECT * FROM d.t", None)[1] == [(2 ** 90, "1.5")]


def test_aggregates_keep_exact_types(cat):
    q(cat, "CREATE TABLE m (k INT, d DECIMAL(20,2), b LARGEINT, t DATETIME(3), f DOUBLE) "
           "DISTRIBUTED BY HASH(k) BUCKETS 1")
    cat.insert_rows("db_1a2b", "m", [(1, "0.10", 2 ** 100, "2024-01-01 00:00:00.500", 0.5),
                                     (2, "0.20", 2 ** 100, "2024-01-02 00:00:00.000", 1.0),
                                     (3, None, None, None, None)])
    row = q(cat, "SELECT SUM(d), SUM(b), MAX(b), MIN(t), SUM(k), SUM(f), MAX(d) FROM m")[1][0]
    assert row == ("0.30", 2 ** 101, 2 ** 100, "2024-01-01 00:00:00.500", 6, 1.5, "0.20")
    assert type(row[0]).__name__ == "DecimalText" and type(row[3]).__name__ == "DateTimeText"
    assert q(cat, "SELECT SUM(d) FROM m WHERE k > 5")[1] == [(None,)]
