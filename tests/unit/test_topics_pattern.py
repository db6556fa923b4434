"""kafka.topics_pattern: the config takes only the regex subset both Kafka clients read alike,
says what to write instead of the rest, and each client's translation matches exactly the
whole names the pattern describes (never a "__" name), checked against libc's POSIX ERE, the
regex librdkafka uses on Linux."""
from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import logging
import platform
import queue
import re

import pytest

from sinker_lib import consumer as cm
from sinker_lib import kafka_client
from sinker_lib.batcher import Rebalanced
from sinker_lib.commands.replay import plan_replay
from sinker_lib.config import KafkaConfig, config_from_dict
from sinker_lib.errors import ConfigError, TopicNotFound
from sinker_lib.kafka_client import TopicPartition, pattern_body, subscribed_topics, topics_regex
from sinker_lib.kafka_client_confluent import consumer_config, librdkafka_subscription
from sinker_lib.lifecycle import Shutdown
from sinker_lib.offsets import OffsetTracker
from tests.fakes import FakeReader, observers, recs


def config(**kafka):
    return config_from_dict({"kafka": {"brokers": ["k1:9092"], **kafka},
                             "doris": {"database": "db", "table": "t"}}, env={})


def refused(**kafka) -> str:
    with pytest.raises(ConfigError) as e:
        config(**kafka)
    return str(e.value)


# -- the config ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", [
    r"orders\..*", r"^orders\..*$", "orders_[0-9]{2}", "(eu|us)-orders", "[a-z][a-z0-9_-]*",
    "[^.]+", "a{2,}", "x?y+z*", "[-a]", "[a-]", "(a(b|c)){1,3}"])
def test_the_shared_subset_is_taken(pattern):
    assert config(topics_pattern=pattern).kafka.topics_pattern == pattern


@pytest.mark.parametrize("pattern, says", [
    (r"\d+", "write [0-9] instead"),
    (r"\w+", "write [A-Za-z0-9_] instead"),
    (r"a\-b", "write - instead"),
    ("(?:a|b)", "write a plain group (...)"),
    ("(?!x)a", "write a plain group (...)"),
    ("a.*?", "write one quantifier"),
    ("a++", "write one quantifier"),
    ("[[:digit:]]", "write [0-9], [a-z] or [A-Za-z]"),
    (r"[\.]", "write the characters plainly, e.g. [._-]"),
    ("a{,3}", "write {0,3}"),
    ("a{3,2}", "the smaller number comes first"),
    ("a{300}", "above 255"),
    ("a{x}", "write {n}, {n,} or {n,m}"),
    ("a|", "empty alternative at position 2"),
    ("()", "empty alternative"),
    ("[a-Z]", "within one letter case"),
    ("[a-c-e]", "put a literal '-' first or last"),
    ("a|^b", "'^' and '$' may only start and end the pattern"),
    ("*a", "repeats nothing"),
    ("a b", "' ' at position 1 is never in a topic name"),
    ("^(a", "'(' at position 1 is never closed"),
    ("a)", "')' at position 1 closes no '('"),
    ("[ab", "'[' at position 0 is never closed"),
])
def test_what_either_client_reads_otherwise_is_refused_with_what_to_write(pattern, says):
    text = refused(topics_pattern=pattern)
    assert text.startswith("kafka.topics_pattern: ") and says in text, text


def test_topics_are_required_unless_a_pattern_is_set():
    assert "topics_pattern" in refused()
    both = config(topics=["plain"], topics_pattern=r"orders\..*").kafka
    assert both.topics == ("plain",) and both.topics_pattern == r"orders\..*"


def test_a_listed_internal_topic_cannot_go_with_a_pattern():
    assert "'__audit' starts with '__'" in refused(topics=["__audit"], topics_pattern="a.*")
    assert config(topics=["__audit"]).kafka.topics == ("__audit",)


# -- the translations ---------------------------------------------------------------------------
PATTERNS = [r"a\..*", r"^a\..*$", "a.*", "(a|b)+", "[ab]{2}", "[^.]+", "a?b", "(a0|_)*-",
            "[a-b0_]{1,3}", ".+", "[-.]a", "a{2,}", "((a|b)c?)+"]
ALPHABET = "ab.0_-c"
NAMES = ["".join(p) for n in range(5) for p in itertools.product(ALPHABET, repeat=n)]


def _libc_ere():
    """libc's regcomp/regexec with the flags librdkafka's rd_regex_comp passes (glibc only:
    the flag values and the regex_t size are glibc's)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the ERE cross-check runs on glibc")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    reg_extended, reg_nosub = 1, 8

    def compile_(pattern: str):
        buf = ctypes.create_string_buffer(512)           # regex_t is 64 bytes on glibc
        assert libc.regcomp(buf, pattern.encode(), reg_extended | reg_nosub) == 0, pattern
        return buf

    def search(buf, name: str) -> bool:
        return libc.regexec(buf, name.encode(), 0, None, 0) == 0
    return compile_, search, lambda buf: libc.regfree(buf)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_librdkafka_and_kafka_python_select_the_same_whole_names(pattern):
    compile_, search, free = _libc_ere()
    (entry,) = librdkafka_subscription((), [pattern])
    assert entry.startswith("^")                         # librdkafka's mark of a regex
    hidden = consumer_config(KafkaConfig(topics_pattern=pattern), group=True)["topic.blacklist"]
    ere, blacklist = compile_(entry), compile_(hidden)
    python = topics_regex((), [pattern])
    try:
        for name in NAMES:
            meant = bool(re.fullmatch(pattern_body(pattern), name)) and not name.startswith("__")
            assert bool(python.match(name)) == meant, (pattern, name)    # kafka-python: re.match
            assert (search(ere, name) and not search(blacklist, name)) == meant, (pattern, name)
    finally:
        free(ere)
        free(blacklist)


def test_internal_names_never_match_a_pattern_on_either_client():
    regex = topics_regex(("listed",), [".*"])
    assert regex.match("orders") and regex.match("listed") and regex.match("_one")
    assert not regex.match("__consumer_offsets") and not regex.match("__mine")
    assert consumer_config(KafkaConfig(topics_pattern=".*"), group=True)["topic.blacklist"] == "^__"
    assert "topic.blacklist" not in consumer_config(KafkaConfig(topics=("t",)), group=True)


def test_the_subscription_is_the_union_of_names_and_pattern():
    cfg = KafkaConfig(topics=("plain", "a.b"), topics_pattern=r"orders\.[a-z]+")
    existing = {"plain", "a.b", "aXb", "orders.eu", "orders.eu.old", "old.orders.eu",
                "__consumer_offsets", "other"}
    assert subscribed_topics(cfg, existing) == ["a.b", "orders.eu", "plain"]
    assert librdkafka_subscription(cfg.topics, [cfg.topics_pattern]) == [
        "plain", "a.b", r"^(orders\.[a-z]+)$"]


# -- what uses the topics -----------------------------------------------------------------------
def test_require_topics_warns_for_a_pattern_that_matches_nothing_and_still_stops_on_a_missing_name(
        monkeypatch, caplog):
    fake = FakeReader(log={TopicPartition("other", 0): recs("other", 0, range(1))})
    monkeypatch.setattr(kafka_client, "open_reader", lambda cfg, group: fake)
    with caplog.at_level(logging.WARNING, logger="sinker.kafka"):
        kafka_client.require_topics(KafkaConfig(brokers=("k:9092",), topics_pattern=r"orders\..*"))
    assert r"kafka.topics_pattern 'orders\\..*' matches no topic" in caplog.text
    with pytest.raises(TopicNotFound, match="'orderz'"):
        kafka_client.require_topics(KafkaConfig(brokers=("k:9092",), topics=("orderz",),
                                                topics_pattern=r"orders\..*"))


def test_replay_needs_a_topic_named():
    cfg = config(topics_pattern=r"orders\..*")
    with pytest.raises(ConfigError, match="pass --topic NAME"):
        plan_replay(cfg)


A0, N0 = TopicPartition("orders.a", 0), TopicPartition("orders.new", 0)


def consumer(fake, start_from):
    def factory(cfg, group):
        fake.group = group
        return fake
    t = cm.ConsumerThread(KafkaConfig(topics_pattern=r"orders\..*", start_from=start_from),
                          queue.Queue(maxsize=10), OffsetTracker(), observers(), Shutdown(),
                          reader_factory=factory)
    t.reader = t._connect()
    t.ready.set()
    return t


def assigned(t) -> dict:
    t._last_commit = 0.0
    t._step()
    items = []
    while not t.out.empty():
        items.append(t.out.get_nowait())
    return next(x for x in items if isinstance(x, Rebalanced)).assigned


def test_the_consumer_subscribes_with_the_pattern():
    fake = FakeReader(log={A0: recs("orders.a", 0, range(3))})
    consumer(fake, "earliest")
    assert fake.subscribed == [] and fake.patterns == (r"orders\..*",)


def test_start_from_latest_never_skips_a_topic_the_pattern_matched_after_start():
    fake = FakeReader(log={A0: recs("orders.a", 0, range(4))})
    t = consumer(fake, "latest")
    fake.log[N0] = recs("orders.new", 0, range(3))      # created while sinker runs
    fake.rebalance([A0, N0])
    assert assigned(t) == {("orders.a", 0): (4, []), ("orders.new", 0): (0, [])}
    # both start points are durable: after a restart orders.new exists at start, and the
    # group's commits keep it from counting as history
    assert fake.commits[0] == {A0: (4, "sinker v1"), N0: (0, "sinker v1")}


def test_a_member_given_only_a_new_topic_reads_it_from_the_earliest_offset():
    # another member committed orders.a; this one, started with start_from latest, gets only
    # orders.new: the group has commits, so nothing of orders.new is skipped
    fake = FakeReader(log={A0: recs("orders.a", 0, range(4)), N0: recs("orders.new", 0, range(3))},
                      committed={A0: 4})
    t = consumer(fake, "latest")
    fake.rebalance([N0])
    assert assigned(t) == {("orders.new", 0): (None, [])}
    assert fake.commits == []


def test_the_dead_letter_topic_must_not_be_read_back():
    dead = {"type": "kafka", "topic": "orders.dead"}
    with pytest.raises(ConfigError, match="would read its own dead letters back"):
        config_from_dict({"kafka": {"brokers": ["k1:9092"], "topics_pattern": r"orders\..*"},
                          "doris": {"database": "db", "table": "t"}, "dead_letter": dead}, env={})
    ok = config_from_dict({"kafka": {"brokers": ["k1:9092"], "topics_pattern": r"orders\.[a-z]{2}"},
                           "doris": {"database": "db", "table": "t"}, "dead_letter": dead}, env={})
    assert ok.dead_letter.topic == "orders.dead"
