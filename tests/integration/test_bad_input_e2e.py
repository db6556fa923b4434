"""Every bad-input case of the issue "bad input never crashes, never stalls, never silently
changes a value", through a real `sinker run` process on the real broker and the Doris emulator:
the process keeps running, each case loads the value the README's Types section documents or is
dead-lettered (to a Kafka topic: one record is larger than the topic takes), every good message
loads, and the offsets move past all of them."""
from __future__ import annotations

import json
import time
from datetime import date, datetime

import pytest

from sinker_lib.dead_letter import original_value
from tests.integration.support import (
    committed_offsets, get_json, read_dead_letters, read_topic, stack_config, start_process,
    status_section, stop_process, unique, wait_for, write_config)
from tests.integration.test_run_e2e import make_table
from tests.stack.kafka import create_topic, produce

DDL = """
CREATE TABLE `{db}`.`{table}` (
  id BIGINT NOT NULL, dt DATETIME NULL, kts DATETIME NULL, big BIGINT NULL, i INT NULL,
  d DATE NULL, dt3 DATETIME(3) NULL, j JSON NULL, v VARCHAR(16) NULL, s STRING NULL
) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1 PROPERTIES ("replication_num" = "1")
"""
MICROSECONDS = 1_700_000_000_000_000      # a Kafka timestamp written in µs: year 55840 as ms

# id -> the message (text, or bytes when it is not UTF-8)
CASES = {
    1: '{"id": 1, "dt": "2024-01-01T00:00:00+24:00"}',
    2: '{"id": 2}',                                     # sent with a microsecond Kafka timestamp
    3: '{"id": 3, "big": 1.2345678901234567e17}',
    4: '{"id": 4, "i": 1e3}',
    5: '{"id": 5, "i": true}',
    6: '{"id": 6, "d": "2024-01-01T02:00:00+05:00"}',
    7: '{"id": 7, "dt3": "2024-01-01 00:00:00.9999"}',
    8: '{"id": 8, "j": {"x": NaN}}',
    9: '{"id": 9, "v": 1.10}',
    10: '{"id": 10, "s": "' + "y" * (1024 * 1024 + 10) + '"}',      # over STRING's 1 MB
    11: b'{"id": 11, "v": "\xff\xfe"}',                              # not UTF-8
    12: '{"id": 12, "v": "\\ud800"}',                                # lone surrogate
    13: '{"id": 13, "i": "' + "z" * 450_000 + '"}',                  # 450 KB, not an INT
    14: '{"id": 14, "v": "a", "j": {"k": 1, "k": 2}}',               # a key written twice
    15: '{"id": 15, "v": "\\\\N"}',                                  # the text \N, not NULL
    16: '{"id": 16, "i": -}',                  # not a JSON number (ujson would read 0)
    17: '{"id": 17, "big": 012, "v": "a"}',    # a leading zero (ujson would read 12)
}
# id -> (column, value loaded) or None: dead-lettered (the README's Types section)
CSV = {1: None, 2: None, 3: ("big", 123456789012345670), 4: ("i", 1000), 5: None,
       6: ("d", date(2023, 12, 31)), 7: ("dt3", datetime(2024, 1, 1, 0, 0, 1)), 8: None,
       9: ("v", "1.10"), 10: None, 11: None, 12: None, 13: None, 14: None, 15: ("v", "\\N"),
       16: None, 17: None}
# format json: Doris converts (the emulator as Doris does, strict_mode on). Its reader takes the
# number 1.2345678901234567e17 as a double and refuses it for BIGINT, loads true as 1, and gives
# VARCHAR the number 1.10 as written (sinker passes the bytes on).
JSON = {**CSV, 3: None, 5: ("i", 1)}
GOOD = range(100, 120)


def raw(value) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


@pytest.mark.parametrize("fmt,expected", [("csv", CSV), ("json", JSON)])
def test_every_bad_input_case_lands_or_is_dead_lettered_and_nothing_stalls(
        tmp_path, kafka_bootstrap, doris, fmt, expected):
    topic, dlq = unique("bad"), unique("dlq")
    create_topic(kafka_bootstrap, topic, 1, configs={"max.message.bytes": str(4 * 1024 * 1024)})
    create_topic(kafka_bootstrap, dlq, 1)                # Kafka's default limit (about 1 MB)
    db, table = make_table(doris, DDL)
    now_ms = int(time.time() * 1000)
    ids = [i for i in CASES if i != 2]
    produce(kafka_bootstrap, topic, [json.dumps({"id": i, "v": "ok"}).encode() for i in GOOD[:10]]
            + [raw(CASES[i]) for i in ids], partition=0, timestamp_ms=now_ms)
    produce(kafka_bootstrap, topic, [raw(CASES[2])], partition=0, timestamp_ms=MICROSECONDS)
    produce(kafka_bootstrap, topic, [json.dumps({"id": i, "v": "ok"}).encode() for i in GOOD[10:]],
            partition=0, timestamp_ms=now_ms)
    total = len(CASES) + len(GOOD)
    spill = tmp_path / "spill.jsonl"
    server, port = status_section()
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, server=server,
                       mapping={"format": fmt, "columns": {"kts": "@kafka.timestamp"}},
                       dead_letter={"type": "kafka", "topic": dlq, "path": str(spill)},
                       kafka={"max_partition_fetch_bytes": 8 * 1024 * 1024})
    proc = start_process(write_config(tmp_path, cfg), log_path=tmp_path / "run.log")
    try:
        wait_for(lambda: committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1)[0]
                 == total, 120, 0.3, "offsets past every message")
        assert proc.poll() is None, "sinker stopped on bad input"
        status, health = get_json(port, "/health")
        assert status == 200, health
    finally:
        code = stop_process(proc)
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]

    dead = {}
    n_dead = sum(1 for v in expected.values() if v is None)
    for rec in read_topic(kafka_bootstrap, dlq, n_dead):
        letter = json.loads(rec.value)
        assert len(rec.value) < 1024 * 1024
        dead[letter["offset"]] = letter
    offset_of = {i: k for k, i in enumerate([*GOOD[:10], *ids, 2, *GOOD[10:]])}
    assert sorted(dead) == sorted(offset_of[i] for i, v in expected.items() if v is None)
    for i, v in expected.items():
        if v is None:
            letter = dead[offset_of[i]]
            if letter.get("value_truncated"):
                assert letter["value_bytes"] == len(raw(CASES[i]))
                assert letter["spilled_to"] == str(spill)
            else:
                assert original_value(letter) == raw(CASES[i]), i
    spilled = {d["offset"]: d for d in read_dead_letters(spill)}
    assert set(spilled) == {offset_of[i] for i in expected if expected[i] is None
                            and dead[offset_of[i]].get("value_truncated")}
    for off, letter in spilled.items():
        assert original_value(letter) == raw(CASES[[i for i in CASES if offset_of[i] == off][0]])
    assert offset_of[10] in spilled                  # the 1 MB string cannot fit the topic

    rows = {int(r[0]): r for r in doris.query(
        f"SELECT id, big, i, d, dt3, v FROM `{db}`.`{table}`")}
    cols = {"big": 1, "i": 2, "d": 3, "dt3": 4, "v": 5}
    assert set(rows) == set(GOOD) | {i for i, v in expected.items() if v is not None}
    for i, v in expected.items():
        if v is not None:
            column, value = v
            got = rows[i][cols[column]]
            assert got == value and type(got) is type(value), (i, rows[i])
    assert all(rows[i][5] == "ok" for i in GOOD)
