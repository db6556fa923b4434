"""`sinker replay` finishes when the offsets before its end hold no record it can read: Kafka
transaction markers and aborted transactions (real broker, transactional producer)."""
from __future__ import annotations

import itertools
import json

from tests.integration.support import count_rows, unique
from tests.integration.test_commands import setup_table, sinker


def produce_transactions(bootstrap, topic, committed: int, aborted: int) -> None:
    """One committed transaction of ``committed`` messages (offsets 0..committed-1, its marker
    next), then an aborted one of ``aborted`` messages and its marker: the partition ends with
    offsets read_committed never returns."""
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=[bootstrap], transactional_id=unique("txn"),
                      enable_idempotence=True, acks="all")
    ids = iter(range(committed + aborted))
    try:
        p.init_transactions()
        for n, commit in ((committed, True), (aborted, False)):
            p.begin_transaction()
            for i in itertools.islice(ids, n):
                p.send(topic, json.dumps({"id": i, "qty": i}).encode(), partition=0)
            p.flush()
            (p.commit_transaction if commit else p.abort_transaction)()
    finally:
        p.close()


def end_offset(bootstrap, topic) -> int:
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=[bootstrap])
    try:
        return c.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]
    finally:
        c.close()


def test_replay_ends_on_markers_and_aborted_records_and_releases_its_lock(tmp_path,
                                                                         kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap,
                                              batch={"max_rows": 4, "max_interval_s": 0.5})
    produce_transactions(kafka_bootstrap, topic, committed=10, aborted=5)
    # 0..9 committed, 10 its marker, 11..15 aborted, 16 the abort marker
    assert end_offset(kafka_bootstrap, topic) == 17
    args = ["replay", "-c", str(path), "--from-offset", "0", "--lock-dir", str(tmp_path)]
    r = sinker(*args, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert count_rows(doris, db, table) == 10
    r = sinker(*args, timeout=120)           # right after: the lock is free, nothing loads twice
    assert r.returncode == 0, r.stdout + r.stderr
    assert count_rows(doris, db, table) == 10


def test_replay_whose_last_offset_is_a_marker_finishes(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap,
                                              batch={"max_rows": 4, "max_interval_s": 0.5})
    produce_transactions(kafka_bootstrap, topic, committed=10, aborted=5)
    for to in ("10", "13"):                  # the commit marker; inside the aborted transaction
        r = sinker("replay", "-c", str(path), "--from-offset", "0", "--to-offset", to,
                   "--lock-dir", str(tmp_path), timeout=120)
        assert r.returncode == 0, (to, r.stdout + r.stderr)
        assert count_rows(doris, db, table) == 10
