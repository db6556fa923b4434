"""sinker run, end to end: the real Kafka broker, the Doris emulator, and what a user would query."""
from __future__ import annotations

import datetime
import json
import math
import signal
import subprocess
import sys
from decimal import Decimal

import pytest

from tests.stack.kafka import create_topic, produce
from tests.integration.support import (
    ROOT, InProcess, committed_offsets, count_rows, create_table, read_dead_letters, scrape,
    scrape_when_up, stack_config, start_process, status_section, stop_process, unique,
    wait_committed, wait_for, write_config)

ALL_TYPES_DDL = """
CREATE TABLE `{db}`.`{table}` (
  id BIGINT NOT NULL,
  k_tiny TINYINT NULL, k_small SMALLINT NULL, k_int INT NULL, k_large LARGEINT NULL,
  flag BOOLEAN NULL, f FLOAT NULL, d DOUBLE NULL, amount DECIMAL(20, 4) NULL,
  code CHAR(8) NULL, name VARCHAR(48) NULL, note STRING NULL, day DATE NULL, ts DATETIME(3) NULL,
  payload JSON NULL, status VARCHAR(16) NOT NULL DEFAULT 'new',
  src_partition INT NULL, src_offset BIGINT NULL
) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 4 PROPERTIES ("replication_num" = "1")
"""

NAMES = ["plain", "comma,semi;colon", "tab\there", "new\nline", 'quote"d', "back\\slash",
         "ünïcødé 中文", "\\N", "sep\x01arated", "cr\rhere", ""]


def all_types_message(i: int) -> dict:
    m = {
        "id": i,
        "k_tiny": (i % 256) - 128,
        "k_small": (i * 7) % 65536 - 32768,
        "k_int": i * 1000 - 2_000_000_000 if i % 2 else i,
        "k_large": (2 ** 100 + i) * (-1 if i % 3 == 0 else 1),
        "flag": i % 2 == 0,
        "f": i / 8,
        "d": i * 1.0000001,
        "amount": f"{i}.{i % 10000:04d}" if i % 2 else i * 0.25,
        "code": f"C{i % 1000:03d}",
        "user": {"name": f"{NAMES[i % len(NAMES)]}#{i}"},
        "day": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
        "ts": f"2024-03-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1000:03d}",
        "payload": {"i": i, "tags": ["a", "b"][: i % 3], "nested": {"x": i % 5}},
        "unknown_field": "ignored",
    }
    if i % 5:
        m["note"] = f"note {i}"
    if i % 7 == 0:
        m["status"] = "seen"
    return m


def expected_row(i: int, partition: int, offset: int) -> dict:
    m = all_types_message(i)
    amount = Decimal(str(m["amount"])).quantize(Decimal("0.0001"))
    return {
        "id": i, "k_tiny": m["k_tiny"], "k_small": m["k_small"], "k_int": m["k_int"],
        "k_large": m["k_large"], "flag": 1 if m["flag"] else 0, "f": m["f"], "d": m["d"],
        "amount": amount, "code": m["code"], "name": m["user"]["name"], "note": m.get("note"),
        "day": m["day"], "ts": m["ts"], "payload": m["payload"], "status": m.get("status", "new"),
        "src_partition": partition, "src_offset": offset,
    }


def normalize(col: str, v):
    """Bring a value read over the MySQL protocol to the shape of expected_row."""
    if v is None:
        return None
    if col in ("id", "k_tiny", "k_small", "k_int", "k_large", "src_partition", "src_offset"):
        return int(v)
    if col == "flag":
        return 1 if v in (1, "1", True, "true") else 0
    if col in ("f", "d"):
        return float(v)
    if col == "amount":
        return Decimal(str(v))
    if col == "payload":
        return json.loads(v) if isinstance(v, (str, bytes)) else v
    if col == "ts" and isinstance(v, datetime.datetime):      # pymysql decodes DATETIME(3)
        return v.strftime("%Y-%m-%d %H:%M:%S") + f".{v.microsecond:06d}"[:4]
    if col == "day" and isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode()
    return str(v)


def make_table(doris, ddl=ALL_TYPES_DDL):
    return create_table(doris, ddl)


def produce_numbered(bootstrap, topic, n, partitions, make=all_types_message, start=0):
    """Message i goes to partition i % partitions; returns {i: (partition, offset)} implicitly by
    order: within a partition, offsets follow i."""
    values = (json.dumps(make(i)).encode() for i in range(start, start + n))
    produce(bootstrap, topic, values, partition=lambda idx: (start + idx) % partitions)


def offsets_of(n, partitions, start=0):
    """(partition, offset) of message i when messages start..start+n-1 were produced in order with
    i % partitions as the partition, onto an empty topic."""
    return {i: (i % partitions, i // partitions) for i in range(start, start + n)}


def all_types_sources():
    return {"name": "user.name", "src_partition": "@kafka.partition", "src_offset": "@kafka.offset"}


def fetch_all(doris, db, table, cols):
    return doris.query(f"SELECT {', '.join(cols)} FROM `{db}`.`{table}` ORDER BY id")


def assert_rows_exact(doris, db, table, n, partitions):
    cols = list(expected_row(0, 0, 0))
    rows = fetch_all(doris, db, table, cols)
    assert len(rows) == n, f"expected {n} rows, Doris holds {len(rows)}"
    where = offsets_of(n, partitions)
    mismatches = []
    for row in rows:
        got = {c: normalize(c, v) for c, v in zip(cols, row)}
        want = expected_row(got["id"], *where[got["id"]])
        for c in cols:
            a, b = got[c], want[c]
            same = math.isclose(a, b, rel_tol=1e-6) if c in ("f", "d") and a is not None else a == b
            if not same:
                mismatches.append((got["id"], c, a, b))
    assert not mismatches, f"{len(mismatches)} values differ, first: {mismatches[:5]}"


def wait_loaded_and_committed(doris, db, table, kafka_bootstrap, cfg, topic, partitions, n, timeout):
    """Every row is in the table and the group committed every offset."""
    wait_for(lambda: count_rows(doris, db, table) >= n, timeout, 0.5, "all rows loaded")
    wait_committed(kafka_bootstrap, cfg["kafka"]["group_id"], topic, partitions, n, 60, "offsets committed")


def test_100k_messages_every_type_land_once_exactly(tmp_path, kafka_bootstrap, doris):
    n, partitions = 100_000, 4
    topic = unique("all_types")
    create_topic(kafka_bootstrap, topic, partitions)
    db, table = make_table(doris)
    produce_numbered(kafka_bootstrap, topic, n, partitions)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       mapping={"format": "csv", "columns": all_types_sources()})
    with InProcess(cfg) as run:
        wait_loaded_and_committed(doris, db, table, kafka_bootstrap, cfg, topic, partitions, n,
                                  timeout=240)
        result = run.stop()
    assert result.exit_code == 0, result.error
    assert count_rows(doris, db, table) == n
    assert_rows_exact(doris, db, table, n, partitions)
    assert read_dead_letters(tmp_path / "dead.jsonl") == []
    acc = run.pipeline.accounting.snapshot()
    assert acc["consumed"] == acc["loaded"] == n, acc


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_faults_lose_nothing_and_duplicate_nothing(tmp_path, kafka_bootstrap, doris, fmt):
    n, partitions = 30_000, 4
    topic = unique("faults")
    create_topic(kafka_bootstrap, topic, partitions)
    db, table = make_table(doris)
    produce_numbered(kafka_bootstrap, topic, n, partitions)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       mapping={"format": fmt, "columns": all_types_sources()},
                       batch={"max_rows": 1500, "max_interval_s": 0.3},
                       writer={"max_retries": 30, "backoff_initial_s": 0.02, "backoff_max_s": 0.2,
                               "busy_backoff_s": 0.05})
    kinds = ["http_500", "reset", "publish_timeout", "commit_then_drop", "too_many_versions", "slow"]
    for kind in kinds:
        doris.faults.set(kind, rate=0.15, delay_s=0.3 if kind == "slow" else 0.0, seed=7)
    try:
        with InProcess(cfg) as run:
            wait_loaded_and_committed(doris, db, table, kafka_bootstrap, cfg, topic, partitions, n,
                                      timeout=240)
            result = run.stop()
        fired = dict(doris.faults.fired)
    finally:
        doris.faults.clear()
    assert result.exit_code == 0, result.error
    for kind in kinds:
        assert fired.get(kind, 0) > 0, f"fault {kind} never fired: {fired}"
    assert count_rows(doris, db, table) == n
    distinct = doris.query(f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0]
    assert int(distinct) == n, "a row was loaded twice"
    if fmt == "csv":
        assert_rows_exact(doris, db, table, n, partitions)


def test_doris_down_no_commits_then_full_catch_up(tmp_path, kafka_bootstrap, doris):
    n, partitions = 20_000, 2
    topic = unique("down")
    create_topic(kafka_bootstrap, topic, partitions)
    db, table = make_table(doris)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       mapping={"columns": all_types_sources()},
                       writer={"max_retries": 1000, "backoff_initial_s": 0.2, "backoff_max_s": 2})
    group = cfg["kafka"]["group_id"]
    with InProcess(cfg) as run:
        produce_numbered(kafka_bootstrap, topic, n // 2, partitions)
        wait_for(lambda: count_rows(doris, db, table) == n // 2, 120, 0.5, "first half loaded")
        wait_committed(kafka_bootstrap, group, topic, partitions, n // 2, 60, "first half committed")
        doris.take_down()
        try:
            before = committed_offsets(kafka_bootstrap, group, topic, partitions)
            retries = run.pipeline.metrics.snapshot()["retries"]
            produce_numbered(kafka_bootstrap, topic, n // 2, partitions, start=n // 2)
            # the second half is read and its loads keep failing: commits had every chance
            wait_for(lambda: run.pipeline.accounting.snapshot()["consumed"] == n, 120, 0.2,
                     "the second half consumed")
            wait_for(lambda: run.pipeline.metrics.snapshot()["retries"] >= retries + 5, 120, 0.2,
                     "loads retried while Doris is down")
            during = committed_offsets(kafka_bootstrap, group, topic, partitions)
        finally:
            doris.bring_up()
        assert during == before, "offsets were committed while Doris was down"
        wait_for(lambda: count_rows(doris, db, table) >= n, 120, 0.5, "catch-up")
        wait_committed(kafka_bootstrap, group, topic, partitions, n, 60, "all committed")
        result = run.stop()
    assert result.exit_code == 0, result.error
    assert count_rows(doris, db, table) == n
    distinct = doris.query(f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0]
    assert int(distinct) == n


def _process_config(tmp_path, kafka_bootstrap, doris, topic, db, table, **extra):
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       mapping={"columns": all_types_sources()}, **extra)
    return cfg, write_config(tmp_path, cfg)


def test_kill_9_mid_stream_then_restart_loses_nothing(tmp_path, kafka_bootstrap, doris):
    n, partitions = 60_000, 4
    topic = unique("kill9")
    create_topic(kafka_bootstrap, topic, partitions)
    db, table = make_table(doris)
    produce_numbered(kafka_bootstrap, topic, n, partitions)
    cfg, path = _process_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                                batch={"max_rows": 2000, "max_interval_s": 0.5})
    doris.faults.set("slow", rate=1.0, delay_s=0.2)
    try:
        proc = start_process(path, log_path=tmp_path / "run1.log")
        wait_for(lambda: count_rows(doris, db, table) >= n // 4, 120, 0.2, "a quarter loaded")
        proc.kill()
        proc.wait(30)
    finally:
        doris.faults.clear()
    proc = start_process(path, log_path=tmp_path / "run2.log")
    try:
        wait_for(lambda: count_rows(doris, db, table) >= n, 180, 0.5, "all rows after restart")
        wait_committed(kafka_bootstrap, cfg["kafka"]["group_id"], topic, partitions, n, 60, "all committed")
    finally:
        code = stop_process(proc)
    assert code == 0, (tmp_path / "run2.log").read_text()[-3000:]
    total = count_rows(doris, db, table)
    distinct = int(doris.query(f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0])
    assert distinct == n, "rows were lost"
    # exactly-once: the restart cuts the batches recorded in the commit metadata again, under the
    # same labels, so Doris answers "Label Already Exists" for those the killed run had loaded
    assert total == distinct, f"{total - distinct} rows loaded twice"


def test_sigterm_loads_and_commits_the_partial_batch(tmp_path, kafka_bootstrap, doris):
    n, partitions = 1234, 2
    topic = unique("sigterm")
    create_topic(kafka_bootstrap, topic, partitions)
    db, table = make_table(doris)
    server, port = status_section()
    cfg, path = _process_config(tmp_path, kafka_bootstrap, doris, topic, db, table, server=server,
                                batch={"max_rows": 1_000_000, "max_interval_s": 3600})
    proc = start_process(path, log_path=tmp_path / "run.log")
    try:
        wait_for(lambda: (m := scrape_when_up(port)) and m.value("sinker_partitions_assigned") == 2,
                 90, 0.2, "the process owns both partitions")
        produce_numbered(kafka_bootstrap, topic, n, partitions)
        wait_for(lambda: scrape(port).value("sinker_messages_consumed_total") == n, 60, 0.2,
                 "every message consumed")
        assert count_rows(doris, db, table) == 0   # the open batch is far from any seal condition
    finally:
        code = stop_process(proc, signal.SIGTERM)
    log = (tmp_path / "run.log").read_text()
    assert code == 0, log[-3000:]
    assert count_rows(doris, db, table) == n
    offsets = committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, partitions)
    assert sum(v or 0 for v in offsets.values()) == n
    # a restart owns the partitions, finds nothing left to read, and loads nothing again
    proc = start_process(path, log_path=tmp_path / "run2.log")
    try:
        wait_for(lambda: (m := scrape_when_up(port)) and m.value("sinker_partitions_assigned") == 2
                 and len(m.all("sinker_consumer_lag")) == 2 and m.value("sinker_consumer_lag") == 0,
                 90, 0.2, "the restart owns both partitions with no lag")
        assert scrape(port).value("sinker_messages_consumed_total") == 0
    finally:
        assert stop_process(proc) == 0
    assert count_rows(doris, db, table) == n


def test_two_processes_one_killed_the_other_takes_over(tmp_path, kafka_bootstrap, doris):
    n, partitions = 40_000, 4
    topic = unique("twoproc")
    create_topic(kafka_bootstrap, topic, partitions)
    db, table = make_table(doris)
    cfg, path = _process_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                                batch={"max_rows": 2000, "max_interval_s": 0.5})
    a = start_process(path, log_path=tmp_path / "a.log")
    b = start_process(path, log_path=tmp_path / "b.log")
    try:
        produce_numbered(kafka_bootstrap, topic, n // 2, partitions)
        wait_for(lambda: count_rows(doris, db, table) >= n // 2, 120, 0.5, "first half")
        a.kill()
        a.wait(30)
        produce_numbered(kafka_bootstrap, topic, n // 2, partitions, start=n // 2)
        wait_for(lambda: int(doris.query(
            f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0]) >= n, 180, 0.5,
            "the survivor loads everything")
    finally:
        if a.poll() is None:
            a.kill()
        code = stop_process(b)
    assert code == 0, (tmp_path / "b.log").read_text()[-3000:]
    distinct = int(doris.query(f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0])
    assert distinct == n
    assert count_rows(doris, db, table) == n, "rows loaded twice after the takeover"


POISON_DDL = """
CREATE TABLE `{db}`.`{table}` (
  id BIGINT NOT NULL, qty INT NOT NULL, name VARCHAR(8) NULL, day DATE NULL
) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1 PROPERTIES ("replication_num" = "1")
"""


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_poison_messages_go_to_dead_letters_good_rows_load(tmp_path, kafka_bootstrap, doris, fmt):
    topic = unique("poison")
    create_topic(kafka_bootstrap, topic, 1)
    db, table = make_table(doris, POISON_DDL)
    good = [json.dumps({"id": i, "qty": i, "name": f"n{i}", "day": "2024-01-01"}).encode()
            for i in range(100)]
    poison = {
        100: b"{not json",
        101: json.dumps({"id": 101, "qty": "many", "name": "x"}).encode(),         # wrong type
        102: json.dumps({"id": 102, "qty": 1, "name": "much too long"}).encode(),  # > varchar(8)
        103: json.dumps({"id": 103, "qty": 3, "day": "2024-02-30"}).encode(),      # Doris rejects
        104: json.dumps([1, 2, 3]).encode(),                                        # not an object
    }
    values = good[:50] + list(poison.values()) + good[50:]
    produce(kafka_bootstrap, topic, values, partition=lambda idx: 0)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       mapping={"format": fmt})
    with InProcess(cfg) as run:
        wait_for(lambda: count_rows(doris, db, table) >= 100, 60, 0.3, "good rows")
        wait_for(lambda: committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1)[0]
                 == len(values), 60, 0.3, "offsets advance past the poison")
        result = run.stop()
    assert result.exit_code == 0, result.error
    assert count_rows(doris, db, table) == 100
    dead = read_dead_letters(tmp_path / "dead.jsonl")
    by_offset = {d["offset"]: d for d in dead}
    assert sorted(by_offset) == list(range(50, 55)), dead
    for d in dead:
        assert d["topic"] == topic and d["partition"] == 0 and d["reason"]
        assert d["timestamp"] is not None
    assert by_offset[50]["value"] == "{not json"          # UTF-8: kept once, as text
    assert "doris" in by_offset[53]["reason"].lower() or fmt == "csv"


def test_bad_config_exits_2_names_the_key_and_consumes_nothing(tmp_path, kafka_bootstrap, doris):
    topic = unique("badcfg")
    create_topic(kafka_bootstrap, topic, 1)
    produce(kafka_bootstrap, topic, [b'{"id": 1}'])
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, "d", "t")
    cfg["batch"]["max_row"] = 10
    path = write_config(tmp_path, cfg)
    proc = subprocess.run([sys.executable, str(ROOT / "sinker.py"), "run", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert proc.returncode == 2
    assert "batch.max_row" in proc.stderr and "max_rows" in proc.stderr
    assert committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1) == {0: None}


def test_added_column_is_picked_up_without_restart(tmp_path, kafka_bootstrap, doris):
    topic = unique("schema")
    create_topic(kafka_bootstrap, topic, 1)
    db, table = make_table(doris, POISON_DDL)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       mapping={"schema_refresh_s": 0.5})
    with InProcess(cfg) as run:
        produce(kafka_bootstrap, topic, [json.dumps({"id": 1, "qty": 1, "color": "red"}).encode()])
        wait_for(lambda: count_rows(doris, db, table) == 1, 60, 0.3, "first row")
        doris.query(f"ALTER TABLE `{db}`.`{table}` ADD COLUMN color VARCHAR(16) NULL")
        wait_for(lambda: run.pipeline.schema.generation >= 1, 30, 0.1, "the schema refreshed")
        produce(kafka_bootstrap, topic, [json.dumps({"id": 2, "qty": 2, "color": "blue"}).encode()])
        wait_for(lambda: count_rows(doris, db, table) == 2, 60, 0.3, "second row")
        result = run.stop()
    assert result.exit_code == 0, result.error
    rows = doris.query(f"SELECT id, color FROM `{db}`.`{table}` ORDER BY id")
    assert [(int(a), b) for a, b in rows] == [(1, None), (2, "blue")]


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_a_small_memory_budget_pauses_reading_and_still_loads_everything_once(
        tmp_path, kafka_bootstrap, doris, delivery):
    """batch.max_bytes_in_flight far below the backlog: reading pauses while batches hold the
    budget and resumes as loads free it — no stall (also for exactly-once batches that must be
    completed where they were recorded), no row lost or loaded twice."""
    n, partitions = 6000, 4
    topic = unique("budget")
    create_topic(kafka_bootstrap, topic, partitions)
    db, table = make_table(doris)
    produce_numbered(kafka_bootstrap, topic, n, partitions)
    doris.faults.set("slow", rate=1.0, delay_s=0.1)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, delivery=delivery,
                       mapping={"format": "csv", "columns": all_types_sources()},
                       kafka={"max_poll_records": 200},
                       batch={"max_rows": 500, "max_bytes": 100_000, "max_bytes_in_flight": 400_000,
                              "max_interval_s": 0.3})
    try:
        with InProcess(cfg) as run:
            wait_loaded_and_committed(doris, db, table, kafka_bootstrap, cfg, topic, partitions, n,
                                      timeout=180)
            result = run.stop()
    finally:
        doris.faults.clear()
    assert result.exit_code == 0, result.error
    assert_rows_exact(doris, db, table, n, partitions)
    budget = run.pipeline.budget
    assert budget.pauses >= 1, "the budget never paused reading: the test did not test it"
    assert budget.held == 0 or run.pipeline.accounting.snapshot()["pending"] == 0


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_open_batches_that_reach_the_memory_budget_first_are_sealed_not_left_to_age(
        tmp_path, kafka_bootstrap, doris, delivery):
    """The budget is reached while every batch is still open (four partitions' batches, each far
    below batch.max_bytes): reading pauses, and nothing sealed is left to free memory. The
    largest open batches are sealed for memory at once instead of waiting out max_interval_s (10
    minutes here, far beyond the wait below): every round holds about a tenth of the backlog, so
    half of it loaded proves several such seals. The stop loads what was read; a second run, with
    a short max_interval_s, reads and loads the rest. Nothing is lost or loaded twice."""
    n, partitions = 4000, 4
    topic = unique("budget-open")
    create_topic(kafka_bootstrap, topic, partitions)
    db, table = make_table(doris)
    produce_numbered(kafka_bootstrap, topic, n, partitions)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, delivery=delivery,
                       mapping={"format": "csv", "columns": all_types_sources()},
                       kafka={"max_poll_records": 200},
                       batch={"max_rows": 100_000, "max_bytes": 100_000,
                              "max_bytes_in_flight": 200_000, "max_interval_s": 600})
    with InProcess(cfg) as run:
        wait_for(lambda: count_rows(doris, db, table) >= n // 2, 120, 0.5,
                 "half the backlog loaded, long before any batch is max_interval_s old")
        sealed = run.pipeline.metrics.registry.get_sample_value(
            "sinker_batches_sealed_total", {"table": f"{db}.{table}", "reason": "memory"})
        pauses = run.pipeline.budget.pauses
        result = run.stop()
    assert result.exit_code == 0, result.error
    assert sealed and sealed >= 2
    assert pauses >= 1
    cfg["batch"]["max_interval_s"] = 0.3
    with InProcess(cfg) as run:
        wait_loaded_and_committed(doris, db, table, kafka_bootstrap, cfg, topic, partitions, n,
                                  timeout=120)
        result = run.stop()
    assert result.exit_code == 0, result.error
    assert_rows_exact(doris, db, table, n, partitions)
