"""sinker run when things go wrong: each path ends in a clear message and loses nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sinker_lib.lifecycle import SAME_SIGNAL_S
from tests.integration.support import (
    ROOT, InProcess, committed_offsets, count_rows, nothing_consumed, read_dead_letters,
    scrape_when_up, stack_config, start_process, status_section, unique, wait_committed, wait_for,
    write_config)
from tests.stack.kafka import create_topic, produce

DDL = """CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, qty INT NOT NULL, name VARCHAR(8) NULL)
DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1"""


def make(doris, kafka_bootstrap, tmp_path, n=0, partitions=1, **sections):
    topic, db, table = unique("f"), unique("db"), unique("t")
    create_topic(kafka_bootstrap, topic, partitions)
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    doris.query(DDL.format(db=db, table=table))
    if n:
        produce(kafka_bootstrap, topic, (json.dumps({"id": i, "qty": i}).encode() for i in range(n)),
                partition=lambda i: i % partitions)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, **sections)
    return cfg, topic, db, table


def distinct_ids(doris, db, table) -> int:
    return int(doris.query(f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0])


def run_cli(path, timeout=120, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "sinker.py"), "run", "-c", str(path)],
                          capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=e)


def test_wrong_doris_password_stops_with_exit_3_and_commits_nothing(tmp_path, kafka_bootstrap, doris):
    cfg, topic, db, table = make(doris, kafka_bootstrap, tmp_path, n=10)
    cfg["doris"]["password"] = ""
    path = write_config(tmp_path, cfg)
    r = run_cli(path, env={"SINKER_DORIS_PASSWORD": "s3cret-wrong"})
    assert r.returncode == 3, r.stderr[-2000:]
    assert "SINKER_DORIS_PASSWORD" in r.stderr and "s3cret-wrong" not in r.stderr + r.stdout
    assert committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1) == {0: None}


def test_stream_load_auth_failure_is_fatal_not_retried(tmp_path, kafka_bootstrap, doris):
    # the schema is listed in the config, so the first thing Doris refuses is the Stream Load itself
    schema = [{"name": "id", "type": "bigint", "nullable": False},
              {"name": "qty", "type": "int", "nullable": False},
              {"name": "name", "type": "varchar(8)"}]
    cfg, topic, db, table = make(doris, kafka_bootstrap, tmp_path, n=10,
                                 mapping={"schema": schema})
    cfg["doris"]["password"] = "wrong"
    with InProcess(cfg) as run:
        run.thread.join(60)
    result = run.result
    assert result is not None and result.exit_code == 3, result
    assert "auth" in str(result.error) and "doris.user" in str(result.error)
    assert count_rows(doris, db, table) == 0
    assert nothing_consumed(committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1))


def test_missing_table_stops_with_exit_3_naming_it(tmp_path, kafka_bootstrap, doris):
    cfg, topic, db, table = make(doris, kafka_bootstrap, tmp_path, n=3)
    cfg["doris"]["table"] = "no_such_table"
    r = run_cli(write_config(tmp_path, cfg))
    assert r.returncode == 3
    assert "no_such_table" in r.stderr and "not found" in r.stderr
    assert committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1) == {0: None}


def test_retries_exhausted_exit_4_without_committing(tmp_path, kafka_bootstrap, doris):
    cfg, topic, db, table = make(doris, kafka_bootstrap, tmp_path, n=500,
                                 writer={"max_retries": 3, "backoff_initial_s": 0.01,
                                         "backoff_max_s": 0.02})
    doris.faults.set("http_500", rate=1.0)
    with InProcess(cfg) as run:
        run.thread.join(90)
    result = run.result
    assert result is not None and result.exit_code == 4, result
    assert "after 3 retries" in str(result.error) and "restart re-reads" in str(result.error)
    assert doris.faults.fired["http_500"] == 4          # the first try and 3 retries, one label
    assert nothing_consumed(committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1))
    doris.faults.clear()
    # a restart re-reads everything and loads it once
    with InProcess(cfg) as run:
        wait_for(lambda: count_rows(doris, db, table) >= 500, 60, 0.3, "rows after restart")
        assert run.stop().exit_code == 0
    assert count_rows(doris, db, table) == 500


def test_overloaded_table_backs_off_in_the_governor_and_loads_every_row_once(tmp_path, kafka_bootstrap,
                                                                            doris):
    """Doris answers -235 and the running-txn limit: the batches go back to the governor under
    their labels (the table backs off, counted per table), then every row loads once."""
    n, partitions = 600, 2
    cfg, topic, db, table = make(doris, kafka_bootstrap, tmp_path, n=n, partitions=partitions,
                                 batch={"max_rows": 100, "max_interval_s": 0.2,
                                        "min_load_interval_s": 0.05},
                                 writer={"max_retries": 8, "busy_backoff_s": 0.05,
                                         "backoff_max_s": 0.2})
    doris.faults.set("too_many_versions", rate=1.0, count=3)
    doris.faults.set("txn_limit", rate=1.0, count=2)
    try:
        with InProcess(cfg) as run:
            wait_committed(kafka_bootstrap, cfg["kafka"]["group_id"], topic, partitions, n)
            result = run.stop()
        fired = dict(doris.faults.fired)
    finally:
        doris.faults.clear()
    assert result.exit_code == 0, result.error
    assert fired == {"too_many_versions": 3, "txn_limit": 2}
    assert count_rows(doris, db, table) == n and distinct_ids(doris, db, table) == n
    sample = run.pipeline.metrics.registry.get_sample_value
    # an answer met by a load already under way while the table backs off adds no more backoff
    assert sum(sample("sinker_table_backoff_seconds_total",
                      {"table": f"{db}.{table}", "reason": reason}) or 0
               for reason in ("too_many_versions", "txn_limit")) > 0
    assert sample("sinker_governor_held_seconds_total", {"table": f"{db}.{table}"}) > 0


def test_broker_restart_mid_stream_loses_nothing(tmp_path, kafka_bootstrap, kafka_broker, doris):
    if kafka_broker is None:
        pytest.skip("SINKER_TEST_KAFKA points at a broker these tests do not own")
    n = 20_000
    cfg, topic, db, table = make(doris, kafka_bootstrap, tmp_path, n=n // 2, partitions=2,
                                 batch={"max_rows": 1000, "max_interval_s": 0.3})
    with InProcess(cfg) as run:
        wait_for(lambda: count_rows(doris, db, table) >= 2000, 60, 0.2, "loading started")
        kafka_broker.restart()
        produce(kafka_bootstrap, topic,
                (json.dumps({"id": i, "qty": i}).encode() for i in range(n // 2, n)),
                partition=lambda i: i % 2)
        wait_for(lambda: count_rows(doris, db, table) >= n, 120, 0.5, "all rows after the restart")
        wait_committed(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 2, n, 90, "offsets committed after the restart")
        result = run.stop()
    assert result.exit_code == 0, result.error
    assert distinct_ids(doris, db, table) == n
    assert count_rows(doris, db, table) == n, "a row was loaded twice"


def test_dead_letters_to_a_kafka_topic(tmp_path, kafka_bootstrap, doris):
    dlq = unique("dlq")
    create_topic(kafka_bootstrap, dlq, 1)
    cfg, topic, db, table = make(doris, kafka_bootstrap, tmp_path,
                                 dead_letter={"type": "kafka", "topic": dlq})
    produce(kafka_bootstrap, topic, [json.dumps({"id": 1, "qty": 1}).encode(), b"\xff{nope",
                                     json.dumps({"id": 3, "qty": "x"}).encode(),
                                     json.dumps({"id": 4, "qty": 4}).encode()])
    with InProcess(cfg) as run:
        wait_for(lambda: committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1)[0]
                 == 4, 60, 0.3, "offsets past the dead letters")
        assert run.stop().exit_code == 0
    assert count_rows(doris, db, table) == 2
    from kafka import KafkaConsumer
    c = KafkaConsumer(dlq, bootstrap_servers=[kafka_bootstrap], auto_offset_reset="earliest",
                      consumer_timeout_ms=5000, group_id=None)
    try:
        got = [json.loads(m.value) for m in c]
    finally:
        c.close()
    assert [(d["offset"], d["category"]) for d in got] == [(1, "invalid_json"), (2, "conversion")]
    import base64
    assert base64.b64decode(got[0]["value_b64"]) == b"\xff{nope" and "value" not in got[0]
    assert all(d["topic"] == topic and d["table"] == f"{db}.{table}" for d in got)
    assert read_dead_letters(tmp_path / "dead.jsonl") == []


def test_loads_straight_to_discovered_backends(tmp_path, kafka_bootstrap, doris):
    cfg, topic, db, table = make(doris, kafka_bootstrap, tmp_path, n=3000,
                                 batch={"max_rows": 500, "max_interval_s": 0.3})
    cfg["doris"]["discover_backends"] = True
    with InProcess(cfg) as run:
        wait_for(lambda: count_rows(doris, db, table) >= 3000, 60, 0.3, "rows")
        assert run.stop().exit_code == 0
    assert distinct_ids(doris, db, table) == 3000 == count_rows(doris, db, table)


def test_second_signal_exits_at_once_without_committing(tmp_path, kafka_bootstrap, doris):
    cfg, topic, db, table = make(doris, kafka_bootstrap, tmp_path, n=2000,
                                 batch={"max_rows": 500, "max_interval_s": 0.2})
    path = write_config(tmp_path, cfg)
    doris.faults.set("slow", rate=1.0, delay_s=5.0)    # every load hangs: the drain cannot finish
    proc = start_process(path, log_path=tmp_path / "run.log")
    try:
        wait_for(lambda: doris.faults.fired.get("slow", 0) >= 1, 60, 0.2, "a load in flight")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "got SIGTERM" in (tmp_path / "run.log").read_text(), 10, 0.05,
                 "the first signal handled")
        time.sleep(SAME_SIGNAL_S + 0.2)     # later than a signal delivered twice at once
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "run.log").read_text()
    assert code == 5, log[-2000:]
    assert "second signal" in log
    assert nothing_consumed(committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1))


def test_one_stop_delivered_twice_at_once_is_still_a_clean_stop(tmp_path, kafka_bootstrap, doris):
    """Ctrl-C in a terminal reaches every process of the group, and the one-file binary's
    bootloader forwards it too: sinker sees the signal twice within milliseconds. That is one
    request to stop: load, commit, exit 0."""
    server, port = status_section()
    cfg, topic, db, table = make(doris, kafka_bootstrap, tmp_path, n=200, server=server,
                                 batch={"max_rows": 1_000_000, "max_interval_s": 3600})
    path = write_config(tmp_path, cfg)
    proc = start_process(path, log_path=tmp_path / "run.log")
    try:
        # every message read and held in the open batch: the stop has something to load
        wait_for(lambda: (m := scrape_when_up(port)) and m.value("sinker_messages_consumed_total")
                 == 200, 60, 0.1, "the messages consumed")
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "run.log").read_text()
    assert code == 0 and "second signal" not in log, log[-2000:]
    assert count_rows(doris, db, table) == 200
    assert committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1) == {0: 200}
