"""ConfluentReader against a small fake of confluent-kafka's Consumer: sinker's options as
librdkafka properties, rebalance events recorded inside consume() and handed out by
take_rebalance(), and poll results of librdkafka's own Message objects (no wrapper per record),
error events never handed on. The real broker's side is in tests/integration (both clients)."""
from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, Message
from confluent_kafka import TopicPartition as CTP

from sinker_lib import records
from sinker_lib.config import KafkaConfig, config_from_dict
from sinker_lib.errors import ConfigError, KafkaUnavailable
from sinker_lib.kafka_client import TopicPartition, open_reader
from sinker_lib.kafka_client_confluent import ConfluentReader, client_error, consumer_config
from sinker_lib.mapping import Mapper


def msg(topic, partition, offset, value=b'{"a":1}', error=None):
    return Message(topic=topic, partition=partition, offset=offset, value=value,
                   timestamp=(1, 1_700_000_000_000 + offset), error=error)


class FakeConsumer:
    """What ConfluentReader calls on confluent_kafka.Consumer; ``during_consume`` runs inside
    the next consume(), as librdkafka serves rebalance callbacks there."""

    def __init__(self, conf):
        self.conf = conf
        self.queue: list = []
        self.during_consume = None
        self.paused_now: set = set()

    def list_topics(self, topic=None, timeout=None):
        return None

    def subscribe(self, topics, on_assign, on_revoke, on_lost):
        self.callbacks = (on_assign, on_revoke, on_lost)

    def consume(self, num_messages, timeout):
        if self.during_consume:
            self.during_consume()
            self.during_consume = None
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return out

    def pause(self, parts):
        self.paused_now |= {(p.topic, p.partition) for p in parts}

    def resume(self, parts):
        self.paused_now -= {(p.topic, p.partition) for p in parts}

    def close(self):
        pass


def reader(**kw) -> tuple[ConfluentReader, FakeConsumer]:
    made = []
    r = ConfluentReader(KafkaConfig(brokers=("b:9092",), topics=("t",), group_id="g", **kw),
                        group=True, factory=lambda conf: made.append(FakeConsumer(conf)) or made[-1])
    r.subscribe(["t"])
    return r, made[0]


def test_options_map_one_to_one_onto_librdkafka_properties():
    cfg = KafkaConfig(brokers=("a:9092", "b:9093"), topics=("t",), group_id="g", client_id="c",
                      security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                      sasl_username="u", sasl_password="p", ssl_cafile="/ca.pem",
                      ssl_certfile="/c.pem", ssl_keyfile="/k.pem", ssl_key_password="kp",
                      ssl_check_hostname=False, session_timeout_ms=11_000,
                      heartbeat_interval_ms=1_100, max_poll_interval_ms=123_000,
                      request_timeout_ms=20_000, metadata_max_age_ms=4_000,
                      fetch_max_bytes=1_000_000, max_partition_fetch_bytes=500_000)
    conf = consumer_config(cfg, group=True)
    assert conf["bootstrap.servers"] == "a:9092,b:9093" and conf["client.id"] == "c"
    assert conf["group.id"] == "g"
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("u", "p")
    assert (conf["ssl.ca.location"], conf["ssl.certificate.location"], conf["ssl.key.location"],
            conf["ssl.key.password"]) == ("/ca.pem", "/c.pem", "/k.pem", "kp")
    assert conf["ssl.endpoint.identification.algorithm"] == "none"
    assert (conf["session.timeout.ms"], conf["heartbeat.interval.ms"],
            conf["max.poll.interval.ms"]) == (11_000, 1_100, 123_000)
    assert conf["socket.timeout.ms"] == 20_000
    assert conf["topic.metadata.refresh.interval.ms"] == 4_000
    assert (conf["fetch.max.bytes"], conf["max.partition.fetch.bytes"]) == (1_000_000, 500_000)
    # a queue that reached librdkafka's thresholds is fetched again within milliseconds, not 1 s
    assert conf["fetch.queue.backoff.ms"] <= 50
    # and what it prefetches is bounded in bytes and in messages below librdkafka's defaults
    assert conf["queued.max.messages.kbytes"] < 65_536 and conf["queued.min.messages"] < 100_000
    # what sinker's guarantees rest on, whatever the config says
    assert conf["isolation.level"] == "read_committed"
    assert conf["enable.auto.commit"] is False and conf["enable.auto.offset.store"] is False
    assert conf["auto.offset.reset"] == "earliest"
    assert conf["allow.auto.create.topics"] is False
    # a group-less reader never joins: librdkafka only wants a name
    assert consumer_config(cfg, group=False)["group.id"] != "g"
    plain = consumer_config(KafkaConfig(brokers=("a:1",), topics=("t",)), group=True)
    assert not any(k.startswith(("ssl.", "sasl.")) for k in plain)


def test_librdkafka_limits_are_config_errors_that_name_the_other_client():
    base = {"kafka": {"brokers": ["a:1"], "topics": ["t"], "client": "confluent-kafka",
                      "max_poll_interval_ms": 5000},
            "doris": {"database": "d", "table": "t"}}
    with pytest.raises(ConfigError) as e:
        config_from_dict(base, env={})
    assert "kafka.max_poll_interval_ms" in str(e.value) and "kafka-python" in str(e.value)
    base["kafka"]["client"] = "kafka-python"
    assert config_from_dict(base, env={}).kafka.client == "kafka-python"
    base["kafka"]["client"] = "rdkafka"
    with pytest.raises(ConfigError, match="kafka.client"):
        config_from_dict(base, env={})


def test_the_configured_client_is_the_one_opened(monkeypatch):
    import sinker_lib.kafka_client_confluent as ck
    monkeypatch.setattr(ck, "Consumer", FakeConsumer)
    r = open_reader(KafkaConfig(brokers=("b:1",), topics=("t",), client="confluent-kafka"), False)
    assert isinstance(r, ConfluentReader)


def test_unreachable_and_refused_errors_are_typed():
    cfg = KafkaConfig(brokers=("b:9092",), topics=("t",))
    from confluent_kafka import KafkaException
    down = client_error(cfg, KafkaException(KafkaError(KafkaError._TRANSPORT)), "the consumer")
    assert isinstance(down, KafkaUnavailable) and "b:9092" in str(down)
    refused = client_error(cfg, KafkaException(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED)),
                           "the consumer")
    assert "refused" in str(refused) and "kafka.sasl_password" in str(refused)


def test_rebalance_inside_consume_is_recorded_and_nothing_of_a_revoked_partition_goes_on():
    r, fake = reader()
    on_assign, on_revoke, _lost = fake.callbacks
    fake.during_consume = lambda: on_assign(fake, [CTP("t", 0), CTP("t", 1)])
    assert r.poll(100) == {}
    assert r.take_rebalance() == (set(), {TopicPartition("t", 0), TopicPartition("t", 1)})
    assert r.take_rebalance() == (set(), None)
    # records of partition 1 already fetched when its revoke ran inside the same consume()
    fake.queue = [msg("t", 0, 5), msg("t", 1, 7), msg("t", 0, 6)]
    fake.during_consume = lambda: on_revoke(fake, [CTP("t", 1)])
    result = r.poll(100)
    assert list(result) == [TopicPartition("t", 0)]
    assert [m.offset() for m in result[TopicPartition("t", 0)]] == [5, 6]
    assert r.take_rebalance() == ({TopicPartition("t", 1)}, None)
    assert r.assignment() == {TopicPartition("t", 0)}
    assert r.rebalance_events == 2


def test_an_assignment_revoked_in_the_same_consume_is_void():
    """Eager protocol: a revoke after an assignment not yet taken voids it; another follows."""
    r, fake = reader()
    on_assign, on_revoke, _lost = fake.callbacks

    def assign_then_revoke():
        on_assign(fake, [CTP("t", 0), CTP("t", 1)])
        on_revoke(fake, [CTP("t", 0), CTP("t", 1)])
    fake.during_consume = assign_then_revoke
    assert r.poll(100) == {}
    assert r.take_rebalance() == ({TopicPartition("t", 0), TopicPartition("t", 1)}, None)
    assert r.assignment() == set()


def test_a_lost_partition_is_recorded_as_revoked_and_its_pause_ends():
    r, fake = reader()
    on_assign, _revoke, on_lost = fake.callbacks
    fake.during_consume = lambda: on_assign(fake, [CTP("t", 0)])
    r.poll(100)
    r.take_rebalance()
    r.pause(TopicPartition("t", 0))
    assert r.paused() == {TopicPartition("t", 0)}
    fake.during_consume = lambda: on_lost(fake, [CTP("t", 0)])
    r.poll(100)
    assert r.take_rebalance() == ({TopicPartition("t", 0)}, None)
    assert r.paused() == set()


def test_error_events_and_partition_eof_are_never_records():
    r, fake = reader()
    fake.queue = [msg("t", 0, 1), msg("t", 0, 0, value=None, error=KafkaError(KafkaError._PARTITION_EOF)),
                  msg("t", 0, 0, value=None, error=KafkaError(KafkaError._TRANSPORT)),
                  msg("t", 0, 2)]
    result = r.poll(100)
    assert [m.offset() for m in result[TopicPartition("t", 0)]] == [1, 2]


def test_poll_hands_on_librdkafka_messages_themselves_keyed_by_kafka_python_partitions():
    r, fake = reader()
    sent = [msg("t", 1, 0), msg("t", 1, 1), msg("t", 0, 9), msg("t", 1, 2)]
    fake.queue = list(sent)
    result = r.poll(100)
    assert set(result) == {TopicPartition("t", 0), TopicPartition("t", 1)}
    assert all(type(k) is TopicPartition for k in result)
    got = result[TopicPartition("t", 1)]
    assert [m.offset() for m in got] == [0, 1, 2]
    # the very objects librdkafka returned: no wrapper per record
    assert all(a is b for a, b in zip(got, [sent[0], sent[1], sent[3]]))
    assert result[TopicPartition("t", 0)][0] is sent[2]


def test_records_of_both_clients_map_to_the_same_lines():
    from kafka.consumer.fetcher import ConsumerRecord
    from sinker_lib.config import ColumnSource, MappingConfig
    from tests.unit.test_mapping import col
    cols = [col("a", "INT", nullable=False), col("p", "INT", nullable=False), col("ts", "DATETIME")]
    cfg = MappingConfig(format="csv", columns=(ColumnSource("p", kafka="partition"),
                                               ColumnSource("ts", kafka="timestamp")))
    mapper = Mapper(cols, cfg)
    value = b'{"a": 7}'
    ours = [msg("t", 3, 4, value=value)]
    theirs = [ConsumerRecord("t", 3, -1, 4, 1_700_000_000_004, 0, None, value, [], None, 0,
                             len(value), -1)]
    assert records.fields(ours[0]) is records.CONFLUENT
    assert records.fields(theirs[0]) is records.KAFKA_PYTHON
    lines_a, lines_b = [], []
    mapper.map_records(ours, lines_a, [])
    mapper.map_records(theirs, lines_b, [])
    assert lines_a == lines_b and lines_a[0].startswith(b"7\t3\t2023-11-14")
    assert records.identity(ours[0]) == records.identity(theirs[0])


def test_a_revoke_lets_the_consumer_commit_first_a_loss_does_not():
    r, fake = reader()
    seen = []
    r.subscribe(["t"], before_revoke=lambda gone: seen.append((gone, r.assignment())))
    on_assign, on_revoke, on_lost = fake.callbacks
    fake.during_consume = lambda: on_assign(fake, [CTP("t", 0), CTP("t", 1)])
    r.poll(100)
    fake.during_consume = lambda: on_revoke(fake, [CTP("t", 0)])
    r.poll(100)
    # called while the partition is still assigned: a commit for it is still the owner's
    assert seen == [({TopicPartition("t", 0)}, {TopicPartition("t", 0), TopicPartition("t", 1)})]
    fake.during_consume = lambda: on_lost(fake, [CTP("t", 1)])
    r.poll(100)
    assert len(seen) == 1
    assert r.take_rebalance()[0] == {TopicPartition("t", 0), TopicPartition("t", 1)}


def test_commit_metadata_is_stored_the_same_from_both_clients_and_reads_back():
    """confluent-kafka adds a NUL to what it commits and reads metadata as a C string: the
    kafka-python reader stores the same NUL, and decode takes the text with or without it."""
    from sinker_lib import commit_metadata
    from sinker_lib.kafka_client import KafkaReader
    text = commit_metadata.encode([(0, 533), (534, 1533)])
    assert commit_metadata.decode(text + "\x00") == commit_metadata.decode(text) == [(0, 533), (534, 1533)]
    assert commit_metadata.decode(commit_metadata.encode([]) + "\x00") == []

    class Committing:
        def __init__(self, **opts):
            self.commits = []

        def commit(self, offsets, timeout_ms):
            self.commits.append(offsets)

    r = KafkaReader(KafkaConfig(brokers=("b:1",), topics=("t",)), group=True, factory=Committing)
    r.commit({TopicPartition("t", 0): (534, text)})
    assert r._c.commits[0][TopicPartition("t", 0)].metadata == text + "\x00"


def test_metadata_confluent_kafka_cannot_read_is_said_to_be_unreadable():
    r, fake = reader()

    class Undecodable:
        offset, error = 7, None

        @property
        def metadata(self):
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    fake.committed = lambda parts, timeout: [Undecodable()]
    from sinker_lib import commit_metadata
    offset, meta = r.committed_with_metadata(TopicPartition("t", 0))
    assert offset == 7
    with pytest.raises(ValueError, match="unreadable"):
        commit_metadata.decode(meta)
