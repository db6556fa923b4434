"""The real test broker does what sinker relies on: produce/consume, group commits that carry
metadata, and committed offsets that survive a broker restart."""
from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.stack.kafka import create_topic, produce


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _consume_all(consumer: KafkaConsumer, expected: int, deadline_s: float = 60) -> list:
    """Poll until `expected` records arrived (or fail after a generous deadline)."""
    records = []
    deadline = time.monotonic() + deadline_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    assert len(records) == expected, f"consumed {len(records)} of {expected} records"
    return records


def _group_consumer(bootstrap: str, group: str, topic: str) -> KafkaConsumer:
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", session_timeout_ms=10000,
                             heartbeat_interval_ms=1000)
    consumer.subscribe([topic])
    return consumer


def test_produce_then_consume_keeps_values_keys_partitions_and_timestamps(kafka_bootstrap):
    topic = _name("stack-basic")
    create_topic(kafka_bootstrap, topic, partitions=3)
    values = [f'{{"i": {i}}}'.encode() for i in range(3000)]
    ts = 1_700_000_000_000
    assert produce(kafka_bootstrap, topic, values, partition=lambda i: i % 3, key=b"k",
                   timestamp_ms=ts) == 3000

    consumer = KafkaConsumer(bootstrap_servers=[kafka_bootstrap], enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        consumer.seek_to_beginning()
        records = _consume_all(consumer, 3000)
    finally:
        consumer.close()
    assert sorted(r.value for r in records) == sorted(values)
    assert {r.key for r in records} == {b"k"}
    assert {r.timestamp for r in records} == {ts}
    for r in records:   # partition = index % 3, and each partition keeps produce order
        assert int(r.value[6:-1]) % 3 == r.partition
    per_partition = {}
    for r in records:
        per_partition.setdefault(r.partition, []).append(r.offset)
    assert all(offs == list(range(1000)) for offs in per_partition.values())


def test_auto_created_topic_and_default_partitioner(kafka_bootstrap):
    topic = _name("stack-auto")      # not created: auto.create.topics.enable=true
    assert produce(kafka_bootstrap, topic, (b"x" * 150 for _ in range(500))) == 500
    consumer = KafkaConsumer(topic, bootstrap_servers=[kafka_bootstrap], auto_offset_reset="earliest",
                             enable_auto_commit=False)
    try:
        assert len(_consume_all(consumer, 500)) == 500
    finally:
        consumer.close()


def test_group_commit_carries_metadata_and_is_last_plus_one(kafka_bootstrap):
    topic, group = _name("stack-commit"), _name("g")
    create_topic(kafka_bootstrap, topic, partitions=2)
    produce(kafka_bootstrap, topic, (b"m%d" % i for i in range(200)), partition=lambda i: i % 2)

    consumer = _group_consumer(kafka_bootstrap, group, topic)
    try:
        records = _consume_all(consumer, 200)
        last = {}
        for r in records:
            last[r.partition] = max(last.get(r.partition, -1), r.offset)
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(o + 1, f'{{"sinker": "p{p}"}}', -1)
                   for p, o in last.items()}
        consumer.commit(offsets)
    finally:
        consumer.close(autocommit=False)
    assert last == {0: 99, 1: 99}

    reader = KafkaConsumer(bootstrap_servers=[kafka_bootstrap], group_id=group, enable_auto_commit=False)
    try:
        for p in (0, 1):
            got = reader.committed(TopicPartition(topic, p), metadata=True)
            assert got.offset == 100
            assert got.metadata == f'{{"sinker": "p{p}"}}'
    finally:
        reader.close(autocommit=False)

    admin = KafkaAdminClient(bootstrap_servers=[kafka_bootstrap])
    try:
        listed = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    assert {tp.partition: (om.offset, om.metadata) for tp, om in listed.items() if tp.topic == topic} == {
        0: (100, '{"sinker": "p0"}'), 1: (100, '{"sinker": "p1"}')}


def test_broker_restart_keeps_data_and_committed_offsets(kafka_broker, kafka_bootstrap):
    if kafka_broker is None:
        pytest.skip("SINKER_TEST_KAFKA points at an external broker this test cannot restart")
    topic, group = _name("stack-restart"), _name("g")
    create_topic(kafka_bootstrap, topic, partitions=2)
    produce(kafka_bootstrap, topic, (b"before-%d" % i for i in range(100)), partition=lambda i: i % 2)
    consumer = _group_consumer(kafka_bootstrap, group, topic)
    try:
        _consume_all(consumer, 100)
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(50, "before-restart", -1)
                         for p in (0, 1)})
    finally:
        consumer.close(autocommit=False)

    port = kafka_broker.port
    kafka_broker.restart()
    assert kafka_broker.bootstrap == kafka_bootstrap and kafka_broker.port == port

    produce(kafka_bootstrap, topic, (b"after-%d" % i for i in range(40)), partition=lambda i: i % 2)
    consumer = _group_consumer(kafka_bootstrap, group, topic)
    try:
        assert consumer.committed(TopicPartition(topic, 0), metadata=True).metadata == "before-restart"
        records = _consume_all(consumer, 40)   # resumes from the commit, sees the new messages
    finally:
        consumer.close(autocommit=False)
    assert all(r.value.startswith(b"after-") for r in records)
    assert sorted(r.offset for r in records if r.partition == 0) == list(range(50, 70))
