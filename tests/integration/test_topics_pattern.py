"""kafka.topics_pattern on the real broker: a topic created mid-run that matches is read without a
restart and loaded exactly once; topics that do not match the whole pattern (a longer name, a
"__" name) are never read."""
from __future__ import annotations

import json

import pytest

from tests.integration.support import (
    InProcess, committed_offsets, count_rows, create_table, get_json, stack_config, status_section,
    unique, wait_committed, wait_for)
from tests.stack.kafka import create_topic, produce

DDL = """
CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, src_topic VARCHAR(200) NULL)
DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 2 PROPERTIES ("replication_num" = "1")
"""


def send(bootstrap, topic, ids, partitions: int) -> None:
    produce(bootstrap, topic, [json.dumps({"id": i}).encode() for i in ids],
            partition=lambda k: k % partitions)


@pytest.mark.parametrize("start_from", ["earliest", "latest"])
def test_a_matching_topic_created_mid_run_is_loaded_once_without_a_restart(
        tmp_path, kafka_bootstrap, doris, start_from):
    prefix = unique("pat")
    first, second = f"{prefix}.first", f"{prefix}.second"
    longer, internal = f"{prefix}.first.old", f"__{prefix}.hidden"   # match a part, never whole
    for topic in (first, longer, internal):
        create_topic(kafka_bootstrap, topic, 2)
    send(kafka_bootstrap, first, range(0, 40), 2)                    # history at start
    send(kafka_bootstrap, longer, range(5000, 5030), 2)
    send(kafka_bootstrap, internal, range(6000, 6030), 2)
    db, table = create_table(doris, DDL)
    server, port = status_section()
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, first, db, table, server=server,
                       kafka={"topics": [], "topics_pattern": f"(__)?{prefix}\\.[a-z]+",
                              "start_from": start_from, "metadata_max_age_ms": 1000},
                       mapping={"format": "json",
                                "columns": {"id": "id", "src_topic": "@kafka.topic"}})
    group = cfg["kafka"]["group_id"]
    history = 40 if start_from == "earliest" else 0
    with InProcess(cfg) as run:
        # earliest: the history is loaded; latest: the group's start point is committed at the end
        wait_committed(kafka_bootstrap, group, first, 2, 40, what=f"{first} positioned")
        send(kafka_bootstrap, first, range(100, 130), 2)
        create_topic(kafka_bootstrap, second, 2)
        send(kafka_bootstrap, second, range(1000, 1050), 2)
        send(kafka_bootstrap, longer, range(5100, 5110), 2)
        wait_committed(kafka_bootstrap, group, second, 2, 50, timeout=90,
                       what=f"{second}, created mid-run, read and committed")
        wait_committed(kafka_bootstrap, group, first, 2, 70, what=f"{first} read and committed")
        wait_for(lambda: count_rows(doris, db, table) >= history + 80, 30, what="rows loaded")
        # the subscription as both clients settled it once every topic existed
        assert {tp.topic for tp in run.pipeline.consumer.reader.assignment()} == {first, second}

        def status_shows_the_new_topic():     # what `sinker status` prints
            rows = get_json(port, "/status")[1]["partitions"]
            return sum(p["committed"] or 0 for p in rows if p["topic"] == second) == 50
        wait_for(status_shows_the_new_topic, 30, what=f"/status showing {second} committed")
        result = run.stop()
    assert result.exit_code == 0, result.error
    rows = doris.query(f"SELECT id, src_topic FROM `{db}`.`{table}`")
    ids = sorted(int(r[0]) for r in rows)
    expected = sorted([*range(0, history), *range(100, 130), *range(1000, 1050)])
    assert ids == expected, "a row was lost, loaded twice, or came from a topic that does not match"
    assert {r[1] for r in rows} == {first, second}
    for topic in (longer, internal):
        assert set(committed_offsets(kafka_bootstrap, group, topic, 2).values()) == {None}


def test_start_from_latest_skips_nothing_of_a_topic_first_matched_after_start(
        tmp_path, kafka_bootstrap, doris):
    """A new group whose pattern matched nothing at start: its first topic arrives with its first
    assignment, and all of it was written while sinker ran."""
    prefix = unique("late")
    topic = f"{prefix}.only"
    db, table = create_table(doris, DDL)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       kafka={"topics": [], "topics_pattern": f"{prefix}\\..*",
                              "start_from": "latest", "metadata_max_age_ms": 1000},
                       mapping={"format": "json",
                                "columns": {"id": "id", "src_topic": "@kafka.topic"}})
    with InProcess(cfg) as run:
        wait_for(run.pipeline.consumer.ready.is_set, 60, what="the consumer subscribed")
        create_topic(kafka_bootstrap, topic, 2)
        send(kafka_bootstrap, topic, range(0, 40), 2)
        wait_committed(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 2, 40, timeout=90,
                       what=f"{topic} read from its first offset and committed")
        result = run.stop()
    assert result.exit_code == 0, result.error
    ids = sorted(int(r[0]) for r in doris.query(f"SELECT id FROM `{db}`.`{table}`"))
    assert ids == list(range(40))
