"""The Kafka dead-letter sink on the real broker: a dead letter larger than the topic accepts is
never a failed send (which would stop sinker, and every restart after it)."""
from __future__ import annotations

import json

from sinker_lib.config import KafkaConfig
from sinker_lib.dead_letter import DeadLetter, original_value
from sinker_lib.dead_letter_sinks import KafkaSink
from tests.integration.support import read_dead_letters, read_topic, unique
from tests.stack.kafka import create_topic

BIG = DeadLetter("events", 0, 41, 1_700_000_000_000, b'{"s":"' + b"x" * 450_000 + b'"}',
                 "too_long: column s", "s")
SMALL = DeadLetter("events", 0, 42, 1_700_000_000_000, b"\xff{nope", "invalid_json: bad byte")


def test_a_450kb_dead_letter_fits_a_default_topic_in_full(tmp_path, kafka_bootstrap):
    topic = unique("dlq")
    create_topic(kafka_bootstrap, topic, 1)
    sink = KafkaSink(topic, KafkaConfig(brokers=(kafka_bootstrap,)),
                     spill_path=str(tmp_path / "spill.jsonl"))
    assert sink.max_message_bytes >= 1_000_000          # read from the broker
    sink.write([BIG, SMALL], "db.t")
    sink.flush()
    sink.close()
    big, small = (json.loads(r.value) for r in read_topic(kafka_bootstrap, topic, 2))
    assert original_value(big) == BIG.value and "value_truncated" not in big
    assert original_value(small) == SMALL.value
    assert not (tmp_path / "spill.jsonl").exists()       # nothing needed spilling


def test_a_dead_letter_too_large_for_the_topic_is_spilled_and_cut(tmp_path, kafka_bootstrap):
    topic = unique("dlq")
    create_topic(kafka_bootstrap, topic, 1, configs={"max.message.bytes": "20000"})
    spill = tmp_path / "spill.jsonl"
    sink = KafkaSink(topic, KafkaConfig(brokers=(kafka_bootstrap,)), spill_path=str(spill))
    assert sink.max_message_bytes == 20000
    for _ in range(2):                 # the sink keeps working after a record too large
        sink.write([BIG, SMALL], "db.t")
        sink.flush()
    sink.close()
    records = read_topic(kafka_bootstrap, topic, 4)
    assert all(len(r.value) <= 20000 for r in records)
    got = [json.loads(r.value) for r in records]
    assert [d["offset"] for d in got] == [41, 42, 41, 42]
    cut = got[0]
    assert cut["value_truncated"] is True and cut["value_bytes"] == len(BIG.value)
    assert cut["spilled_to"] == str(spill) and BIG.value.startswith(original_value(cut))
    assert original_value(got[1]) == SMALL.value and "value_truncated" not in got[1]
    spilled = read_dead_letters(spill)
    assert [d["offset"] for d in spilled] == [41, 41]
    assert original_value(spilled[0]) == BIG.value and spilled[0]["reason"] == BIG.reason
