"""Change data end to end, on the real broker and the Doris emulator: a Debezium stream of
inserts, updates and deletes (with tombstones, and one key's changes spread over partitions and
batches) ends with exactly the source table's final state, also across a kill -9 of `sinker run`
and in json bodies (tombstones counted as skipped, nothing left pending); delete_when deletes in
json bodies; a group-commit at-least-once run loads everything without labels; check and schema
describe judge the table a CDC mapping targets."""
from __future__ import annotations

import json
import random

from tests.integration.support import (
    InProcess, committed_offsets, count_rows, create_table, read_dead_letters, stack_config,
    start_process, stop_process, unique, wait_committed, wait_for, write_config)
from tests.stack.kafka import create_topic, produce

UNIQUE_SEQ = """
CREATE TABLE `{db}`.`{table}` (
  id BIGINT NOT NULL, name VARCHAR(32) NOT NULL, qty INT NULL, lsn BIGINT NULL
) UNIQUE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1
PROPERTIES ("replication_num" = "1", "function_column.sequence_col" = "lsn")
"""
PARTITIONS = 3
WANDERING = (0, 1, 2)       # keys whose changes go to any partition (a re-partitioned topic)


def source_changes(rng: random.Random, n: int, first_lsn: int, alive: dict) -> list[tuple]:
    """n changes of a small source table as (partition, kafka value or None, lsn); updates
    ``alive`` (id -> row) to the table's state after them."""
    out = []
    lsn = first_lsn
    for _ in range(n):
        lsn += 1
        key = rng.randrange(12)
        part = rng.randrange(PARTITIONS) if key in WANDERING else key % PARTITIONS
        if key in alive and rng.random() < 0.3:
            event = {"op": "d", "before": alive.pop(key), "after": None}
        else:
            row = {"id": key, "name": f"n{key}-{lsn}", "qty": rng.choice([None, lsn % 97])}
            event = {"op": "u" if key in alive else rng.choice("cr"), "before": alive.get(key),
                     "after": row}
            alive[key] = row
        event.update(source={"lsn": lsn, "db": "shop", "table": "items"}, ts_ms=lsn)
        op = event["op"]
        if rng.random() < 0.5:
            event = {"schema": {"type": "struct", "name": "shop.items.Envelope"}, "payload": event}
        out.append((part, json.dumps(event).encode(), lsn))
        if op == "d":
            out.append((part, None, lsn))            # Debezium's tombstone for log compaction
    return out


def send(bootstrap, topic, changes) -> None:
    produce(bootstrap, topic, [v for _, v, _ in changes], partition=lambda i: changes[i][0],
            key=lambda i: str(i).encode())


def table_state(doris, db, table) -> list[tuple]:
    return [tuple(r) for r in doris.query(f"SELECT id, name, qty FROM `{db}`.`{table}` ORDER BY id")]


def expected(alive: dict) -> list[tuple]:
    return [(k, r["name"], r["qty"]) for k, r in sorted(alive.items())]


def all_committed(bootstrap, group, topic, changes) -> bool:
    ends = [0] * PARTITIONS
    for part, _, _ in changes:
        ends[part] += 1
    return list(committed_offsets(bootstrap, group, topic, PARTITIONS).values()) == ends


def test_debezium_stream_ends_with_the_source_state_across_a_kill(tmp_path, kafka_bootstrap, doris):
    db, table = create_table(doris, UNIQUE_SEQ)
    topic = unique("cdc")
    create_topic(kafka_bootstrap, topic, partitions=PARTITIONS)
    rng = random.Random(13)
    alive: dict = {}
    first = source_changes(rng, 150, 0, alive)
    second = source_changes(rng, 150, first[-1][2], alive)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       mapping={"envelope": "debezium", "sequence_from": "source.lsn"},
                       batch={"max_rows": 15, "max_interval_s": 0.2})
    path = write_config(tmp_path, cfg)
    group = cfg["kafka"]["group_id"]
    send(kafka_bootstrap, topic, first)
    doris.faults.set("slow", rate=0.5, delay_s=0.1)      # loads in flight when the kill comes
    try:
        proc = start_process(path, log_path=tmp_path / "killed.log")
        wait_for(lambda: count_rows(doris, db, table) > 0, 90, 0.1, "the first run loading")
        proc.kill()
        proc.wait(30)
    finally:
        doris.faults.clear()
    send(kafka_bootstrap, topic, second)                  # the rest arrives after the restart
    proc = start_process(path, log_path=tmp_path / "final.log")
    try:
        changes = first + second
        wait_for(lambda: all_committed(kafka_bootstrap, group, topic, changes), 90, 0.3,
                 "every change committed")
    finally:
        assert stop_process(proc) == 0, (tmp_path / "final.log").read_text()[-3000:]
    assert table_state(doris, db, table) == expected(alive)
    assert read_dead_letters(tmp_path / "dead.jsonl") == []


def test_debezium_json_bodies_count_tombstones_as_skipped(tmp_path, kafka_bootstrap, doris):
    db, table = create_table(doris, UNIQUE_SEQ)
    topic = unique("cdcj")
    create_topic(kafka_bootstrap, topic, partitions=PARTITIONS)
    alive: dict = {}
    changes = source_changes(random.Random(7), 80, 0, alive)
    send(kafka_bootstrap, topic, changes)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, delivery="at_least_once",
                       mapping={"format": "json", "envelope": "debezium", "sequence_from": "source.lsn"},
                       batch={"max_rows": 10, "max_interval_s": 0.2})
    with InProcess(cfg) as run:
        wait_for(lambda: all_committed(kafka_bootstrap, cfg["kafka"]["group_id"], topic, changes),
                 60, 0.3, "every change committed")
        result = run.stop()
    assert result.exit_code == 0, result.error
    assert table_state(doris, db, table) == expected(alive)
    acc = run.pipeline.accounting.snapshot()
    tombstones = sum(1 for _, v, _ in changes if v is None)
    assert tombstones and acc["skipped"] == tombstones, acc
    assert acc["consumed"] == acc["loaded"] + tombstones and acc["pending"] == 0, acc


def test_delete_when_in_json_bodies(tmp_path, kafka_bootstrap, doris):
    db, table = create_table(doris, UNIQUE_SEQ)
    topic = unique("ops")
    create_topic(kafka_bootstrap, topic, partitions=2)
    rows = [{"id": i % 10, "name": f"v{i}", "qty": i, "op": "D" if i % 7 == 3 else "U"}
            for i in range(60)]
    alive: dict = {}
    for r in rows:                                       # one key stays in one partition
        if r["op"] == "D":
            alive.pop(r["id"], None)
        else:
            alive[r["id"]] = r
    produce(kafka_bootstrap, topic, [json.dumps(r).encode() for r in rows],
            partition=lambda i: rows[i]["id"] % 2)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       mapping={"format": "json", "delete_when": {"field": "op", "equals": "D"},
                                "sequence_from": "@kafka.offset"},
                       batch={"max_rows": 8, "max_interval_s": 0.2})
    with InProcess(cfg) as run:
        wait_committed(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 2, len(rows), 60, "every message committed")
        result = run.stop()
    assert result.exit_code == 0, result.error
    assert table_state(doris, db, table) == expected(alive)
    assert read_dead_letters(tmp_path / "dead.jsonl") == []


def test_group_commit_at_least_once_loads_everything_without_labels(tmp_path, kafka_bootstrap, doris):
    db, table = create_table(doris, """
        CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, qty INT NULL)
        DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1 PROPERTIES ("replication_num" = "1")""")
    topic = unique("gc")
    create_topic(kafka_bootstrap, topic, partitions=2)
    n = 300
    produce(kafka_bootstrap, topic, [json.dumps({"id": i, "qty": i}).encode() for i in range(n)],
            partition=lambda i: i % 2)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, delivery="at_least_once",
                       batch={"max_rows": 50, "max_interval_s": 0.2})
    cfg["doris"]["group_commit"] = "async_mode"
    with InProcess(cfg) as run:
        wait_committed(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 2, n, 60, "every message committed")
        result = run.stop()
    assert result.exit_code == 0, result.error
    distinct = doris.query(f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0]
    assert int(distinct) == n
    labels = [t.label for t in doris.catalog.list_txns(db)]
    assert labels and all(x.startswith("group_commit_") for x in labels), labels[:5]


def test_check_and_describe_judge_the_table_for_a_cdc_mapping(tmp_path, kafka_bootstrap, doris):
    from tests.integration.test_commands import sinker
    topic = unique("chk")
    create_topic(kafka_bootstrap, topic)
    results = {}
    for name, ddl, writers in (("duplicate", "DUPLICATE KEY(id)", 1), ("unique", "UNIQUE KEY(id)", 1),
                               ("unique, two writers", "UNIQUE KEY(id)", 2)):
        db, table = create_table(doris, "CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, "
                                 f"name VARCHAR(8) NULL) {ddl} DISTRIBUTED BY HASH(id) BUCKETS 1")
        cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                           mapping={"envelope": "debezium"}, writer={"workers": writers})
        path = write_config(tmp_path, cfg, f"{name.replace(', ', '-').replace(' ', '_')}.yaml")
        check = sinker("check", "-c", str(path), "--format", "json")
        steps = {s["name"]: s for s in json.loads(check.stdout)}
        describe = sinker("schema", "describe", "-c", str(path), "--format", "json")
        results[name] = check.returncode, steps, json.loads(describe.stdout)["warnings"]
    code, steps, warnings = results["duplicate"]
    assert code == 5 and steps["change data fits the table"]["code"] == 5
    assert "only into UNIQUE KEY tables" in steps["change data fits the table"]["detail"]
    assert steps["table exists"]["status"] == "skip"
    assert warnings[0].startswith("error: ") and "UNIQUE KEY" in warnings[0]
    code, steps, warnings = results["unique"]
    assert code == 0, steps
    assert "warning: mapping.envelope: debezium on a table without a sequence column" in \
        steps["change data fits the table"]["detail"]
    assert any("without a sequence column" in w for w in warnings)
    # without a sequence column the last load wins: two writers could land them out of order
    code, steps, warnings = results["unique, two writers"]
    assert code == 5 and "writer.workers is 2" in steps["change data fits the table"]["detail"]
