"""Many tables from one process, on the real broker and the Doris emulator: three topics into
their own tables (one by a `table_from` field), one topic split into two tables by a `where`
field, messages no route takes dead-lettered as no_route; a kill -9 mid-run loses nothing in any
table, and with exactly-once duplicates nothing either (small batches, so one partition's
records sit in several tables' open and in-flight batches at the kill; dead letters are
at-least-once, as documented); a table dropped mid-run
either dead-letters its rows while the others keep flowing, or stops the process without
committing past them."""
from __future__ import annotations

import json

import pytest

from tests.integration.support import (
    InProcess, committed_offsets, read_dead_letters, stack_config, start_process, stop_process,
    unique, wait_committed, wait_for, write_config)
from tests.stack.kafka import create_topic, produce

DDL = """CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, name VARCHAR(32) NULL)
DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1 PROPERTIES ("replication_num" = "1")"""
PARTS = 3


def make_tables(doris, *names) -> str:
    db = unique("db")
    doris.query(f"CREATE DATABASE `{db}`")
    for n in names:
        doris.query(DDL.format(db=db, table=n))
    return db


def ids(doris, db, table) -> list[int]:
    return [int(r[0]) for r in doris.query(f"SELECT id FROM `{db}`.`{table}` ORDER BY id")]


def base_config(tmp_path, kafka_bootstrap, doris, db, **sections) -> dict:
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, "unused", db, "unused", **sections)
    del cfg["kafka"]["topics"], cfg["doris"]["table"]
    return cfg


class Stream:
    """The messages of one run, and what each table must end with."""

    def __init__(self, topics: dict):
        self.topics = topics                   # role -> topic name
        self.sent = {t: [0] * PARTS for t in topics.values()}
        self.want: dict[str, list[int]] = {}   # table -> ids
        self.dead: list[tuple[str, int, int]] = []   # (topic, partition, offset) of no_route/invalid

    def send(self, bootstrap, start: int, n: int) -> None:
        by_topic: dict[str, list[tuple[int, bytes]]] = {t: [] for t in self.topics.values()}
        for i in range(start, start + n):
            part = i % PARTS
            by_topic[self.topics["orders"]].append((part, _msg(i)))
            self.want.setdefault("orders", []).append(i)
            by_topic[self.topics["users"]].append((part, json.dumps({"id": i, "name": f"u{i}"}).encode()))
            self.want.setdefault("users", []).append(i)
            audit = "audit_a" if i % 2 else "audit_b"
            by_topic[self.topics["audit"]].append((part, _msg(i, table=audit)))
            self.want.setdefault(audit, []).append(i)
            kind = ("click", "view", "view", "other", "bad")[i % 5]
            if kind == "bad":
                value = b"{not json"
            else:
                value = _msg(i, type=kind)
            if kind in ("click", "view"):
                self.want.setdefault(kind + "s", []).append(i)
            by_topic[self.topics["events"]].append((part, value))
        for topic, msgs in by_topic.items():
            for part, value in msgs:
                if topic == self.topics["events"] and (value.startswith(b"{not")
                                                       or b'"other"' in value):
                    self.dead.append((topic, part, self.sent[topic][part]))
                self.sent[topic][part] += 1
            produce(bootstrap, topic, [v for _, v in msgs], partition=lambda k, m=msgs: m[k][0])

    def total(self, topic: str) -> int:
        return sum(self.sent[topic])


def _msg(i: int, **extra) -> bytes:
    return json.dumps({"id": i, "name": f"n{i}", **extra}).encode()


def routes_config(tmp_path, kafka_bootstrap, doris, db, topics, delivery) -> dict:
    cfg = base_config(tmp_path, kafka_bootstrap, doris, db, delivery=delivery,
                      batch={"max_rows": 7, "max_interval_s": 0.2})
    cfg["routes"] = [
        {"topics": [topics["orders"]], "table": "orders"},
        {"topics": [topics["users"]], "table": "users", "mapping": {"format": "json"}},
        {"topics": [topics["audit"]], "table_from": "table", "tables": ["audit_a", "audit_b"]},
        {"topics": [topics["events"]], "where": {"field": "type", "equals": "click"},
         "table": "clicks", "batch": {"max_rows": 3}},
        {"topics": [topics["events"]], "where": {"field": "type", "equals": "view"},
         "table": "views"},
    ]
    return cfg


TABLES = ("orders", "users", "audit_a", "audit_b", "clicks", "views")


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_many_tables_across_a_kill(tmp_path, kafka_bootstrap, doris, delivery):
    db = make_tables(doris, *TABLES)
    topics = {role: unique(role) for role in ("orders", "users", "audit", "events")}
    for t in topics.values():
        create_topic(kafka_bootstrap, t, partitions=PARTS)
    cfg = routes_config(tmp_path, kafka_bootstrap, doris, db, topics, delivery)
    path = write_config(tmp_path, cfg)
    stream = Stream(topics)
    stream.send(kafka_bootstrap, 0, 150)
    doris.faults.set("slow", rate=0.5, delay_s=0.1)      # loads in flight when the kill comes
    try:
        proc = start_process(path, log_path=tmp_path / "killed.log")
        wait_for(lambda: len(ids(doris, db, "clicks")) > 3 and len(ids(doris, db, "orders")) > 0,
                 90, 0.1, "the first run loading several tables")
        proc.kill()
        proc.wait(30)
    finally:
        doris.faults.clear()
    stream.send(kafka_bootstrap, 150, 100)               # more arrives after the restart
    proc = start_process(path, log_path=tmp_path / "final.log")
    try:
        for t in topics.values():
            wait_committed(kafka_bootstrap, cfg["kafka"]["group_id"], t, PARTS, stream.total(t),
                           90, f"every message of {t} committed")
    finally:
        assert stop_process(proc) == 0, (tmp_path / "final.log").read_text()[-3000:]
    # the restart read every chunk's cut back (one cut for all the tables a chunk feeds)
    assert "cut afresh" not in (tmp_path / "final.log").read_text()
    for table in TABLES:
        got, want = ids(doris, db, table), sorted(stream.want[table])
        if delivery == "exactly_once":
            assert got == want, f"{table}: {len(got)} rows, {len(want)} expected"
        else:
            assert sorted(set(got)) == want, f"{table}: rows lost"
    # every no_route / invalid message is a dead letter; the dead-letter output is at-least-once
    # (README): one written before the kill is written again when its batch is read again
    letters = read_dead_letters(tmp_path / "dead.jsonl")
    got_dead = sorted({(d["topic"], d["partition"], d["offset"]) for d in letters})
    assert got_dead == sorted(stream.dead)
    reasons = {d["reason"].split(":")[0] for d in letters}
    assert reasons == {"no_route", "invalid_json"}, reasons


def test_unmatched_skip_counts_and_loads_the_rest(tmp_path, kafka_bootstrap, doris):
    db = make_tables(doris, "clicks")
    topic = unique("ev")
    create_topic(kafka_bootstrap, topic, partitions=1)
    values = [_msg(i, type="click" if i % 2 else "view") for i in range(20)]
    produce(kafka_bootstrap, topic, values, partition=0)
    cfg = base_config(tmp_path, kafka_bootstrap, doris, db, unmatched="skip",
                      batch={"max_rows": 4, "max_interval_s": 0.2})
    cfg["routes"] = [{"topics": [topic], "where": {"field": "type", "equals": "click"},
                      "table": "clicks"}]
    with InProcess(cfg) as run:
        wait_committed(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1, 20)
        result = run.stop()
    assert result.exit_code == 0, result.error
    assert ids(doris, db, "clicks") == list(range(1, 20, 2))
    acc = run.pipeline.accounting.snapshot()
    assert acc["skipped"] == 10 and acc["pending"] == 0, acc
    assert read_dead_letters(tmp_path / "dead.jsonl") == []


@pytest.mark.parametrize("on_error", ["dead_letter", "stop"])
def test_a_table_dropped_mid_run(tmp_path, kafka_bootstrap, doris, on_error):
    db = make_tables(doris, "kept", "dropped")
    kept, dropped = unique("kept"), unique("dropped")
    for t in (kept, dropped):
        create_topic(kafka_bootstrap, t, partitions=1)
    cfg = base_config(tmp_path, kafka_bootstrap, doris, db,
                      batch={"max_rows": 5, "max_interval_s": 0.2})
    cfg["routes"] = [{"topics": [kept], "table": "kept"},
                     {"topics": [dropped], "table": "dropped", "on_table_error": on_error}]
    group = cfg["kafka"]["group_id"]
    first = [_msg(i) for i in range(10)]
    for t in (kept, dropped):
        produce(kafka_bootstrap, t, first, partition=0)
    with InProcess(cfg) as run:
        wait_committed(kafka_bootstrap, group, dropped, 1, 10, what="the first rows committed")
        doris.query(f"DROP TABLE `{db}`.`dropped`")
        second = [_msg(i) for i in range(10, 30)]
        produce(kafka_bootstrap, dropped, second, partition=0)
        produce(kafka_bootstrap, kept, second, partition=0)
        if on_error == "dead_letter":
            wait_committed(kafka_bootstrap, group, dropped, 1, 30, what="the dropped table's rows")
            wait_committed(kafka_bootstrap, group, kept, 1, 30, what="the kept table's rows")
            result = run.stop()
            assert result.exit_code == 0, result.error
        else:
            wait_for(lambda: run.result is not None, 60, 0.1, "the process stopping")
            result = run.result
            assert result.exit_code != 0 and "dropped" in str(result.error), result.error
    letters = read_dead_letters(tmp_path / "dead.jsonl")
    if on_error == "dead_letter":
        assert ids(doris, db, "kept") == list(range(30))
        assert sorted(d["offset"] for d in letters) == list(range(10, 30))
        assert all(d["reason"].startswith("table_error: table_not_found") for d in letters)
        assert {d["table"] for d in letters} == {f"{db}.dropped"}
    else:
        assert letters == []
        assert committed_offsets(kafka_bootstrap, group, dropped, 1)[0] == 10


def test_check_describe_and_dry_run_cover_every_table(tmp_path, kafka_bootstrap, doris):
    from tests.integration.test_commands import sinker
    db = make_tables(doris, "clicks", "views")
    topic = unique("ev")
    create_topic(kafka_bootstrap, topic, partitions=1)
    produce(kafka_bootstrap, topic, [_msg(i, type="click" if i % 3 else "view") for i in range(30)],
            partition=0)
    cfg = base_config(tmp_path, kafka_bootstrap, doris, db)
    cfg["routes"] = [
        {"topics": [topic], "where": {"field": "type", "equals": "click"}, "table": "clicks"},
        {"topics": [topic], "where": {"field": "type", "equals": "view"}, "table": "views",
         "mapping": {"format": "json"}}]
    path = str(write_config(tmp_path, cfg))
    r = sinker("check", "-c", path, "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    steps = {s["name"]: s for s in json.loads(r.stdout)}
    assert steps[f"schema fits messages ({db}.clicks)"]["detail"].startswith("20 sampled, 20 map cleanly")
    assert steps[f"schema fits messages ({db}.views)"]["detail"].startswith("10 sampled, 10 map cleanly")
    r = sinker("schema", "describe", "-c", path, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert [t["table"] for t in json.loads(r.stdout)["tables"]] == [f"{db}.clicks", f"{db}.views"]
    r = sinker("dry-run", "-c", path, "--from", "earliest", "--wait", "1")
    assert r.returncode == 2 and "pick one with --table" in r.stderr, r.stderr
    r = sinker("dry-run", "-c", path, "--from", "earliest", "--wait", "1", "--table", f"{db}.views")
    assert r.returncode == 0, r.stderr
    body = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["id"] for x in body] == list(range(0, 30, 3))
    assert "20 routed to other tables" in r.stderr


def test_a_topic_created_mid_run_goes_to_the_route_whose_pattern_matches(tmp_path, kafka_bootstrap,
                                                                         doris):
    db = make_tables(doris, "regional", "fixed")
    prefix, fixed = unique("reg"), unique("fixed")
    create_topic(kafka_bootstrap, f"{prefix}.eu", partitions=1)
    create_topic(kafka_bootstrap, fixed, partitions=1)
    produce(kafka_bootstrap, f"{prefix}.eu", [_msg(i) for i in range(10)], partition=0)
    produce(kafka_bootstrap, fixed, [_msg(i) for i in range(100, 110)], partition=0)
    cfg = base_config(tmp_path, kafka_bootstrap, doris, db,
                      kafka={"metadata_max_age_ms": 1000}, batch={"max_interval_s": 0.2})
    cfg["routes"] = [{"topics_pattern": f"{prefix}\\.[a-z]+", "table": "regional"},
                     {"topics": [fixed], "table": "fixed"}]
    group = cfg["kafka"]["group_id"]
    with InProcess(cfg) as run:
        wait_committed(kafka_bootstrap, group, f"{prefix}.eu", 1, 10, what="the first region")
        create_topic(kafka_bootstrap, f"{prefix}.us", partitions=1)
        produce(kafka_bootstrap, f"{prefix}.us", [_msg(i) for i in range(10, 20)], partition=0)
        wait_committed(kafka_bootstrap, group, f"{prefix}.us", 1, 10, timeout=90,
                       what="the region created mid-run")
        wait_committed(kafka_bootstrap, group, fixed, 1, 10, what="the fixed topic")
        result = run.stop()
    assert result.exit_code == 0, result.error
    assert ids(doris, db, "regional") == list(range(20))
    assert ids(doris, db, "fixed") == list(range(100, 110))
