"""The one seam between sinker and its Kafka client libraries (kafka-python, confluent-kafka).

Everything in lib/ that talks to Kafka goes through here: ``open_reader`` for consuming (a group
member for ``run``, a plain reader of assigned partitions for replay, dry-run and check) and
``open_producer`` for the dead-letter topic. The reader's surface is kept small on purpose —
open, poll a batch, pause/resume, commit with metadata, committed and watermark offsets,
rebalance events, close — and ``kafka.client`` picks the library behind it: ``KafkaReader`` here
(kafka-python, the default and the reference) or lib/kafka_client_confluent.py (librdkafka).
Poll results are handed on as the library returns them (``{TopicPartition: [record, ...]}``,
TopicPartition being kafka-python's namedtuple on both): no per-record wrapper on the hot path;
lib/records.py reads either client's records. The dead-letter producer is kafka-python's on both.

A reader is not thread-safe: only the thread that opened it may call it (the consumer thread
in ``run``). Rebalance callbacks only record the event (kafka-python runs them on its I/O
thread, librdkafka inside ``poll()``), and ``take_rebalance()`` hands it to the owning thread
after ``poll()`` returns.
"""
from __future__ import annotations

import difflib
import logging
import re
import threading

from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata, TopicPartition

from . import commit_metadata
from .config import KafkaConfig
from .errors import KafkaUnavailable, TopicNotFound
from .kafka_security import client_error, preflight, ssl_context

__all__ = ["TopicPartition", "KafkaReader", "open_reader", "client_options", "open_producer",
           "topic_max_message_bytes", "check_crc32c", "topic_patterns", "topics_regex",
           "subscribed_topics"]

log = logging.getLogger("sinker.kafka")


def client_options(cfg: KafkaConfig) -> dict:
    """Options shared by every client sinker creates (consumer, dead-letter producer)."""
    opts = dict(
        bootstrap_servers=list(cfg.brokers),
        client_id=cfg.client_id,
        request_timeout_ms=cfg.request_timeout_ms,
        # the first contact too: kafka-python's own 30 s would ignore kafka.request_timeout_ms,
        # which already bounds it with confluent-kafka (socket.timeout.ms)
        bootstrap_timeout_ms=cfg.request_timeout_ms,
        security_protocol=cfg.security_protocol,
    )
    if cfg.sasl_mechanism:
        opts.update(sasl_mechanism=cfg.sasl_mechanism, sasl_plain_username=cfg.sasl_username,
                    sasl_plain_password=cfg.sasl_password)
    context = ssl_context(cfg)      # stands for kafka-python's ssl_cafile/certfile/keyfile/password
    if context is not None:
        opts["ssl_context"] = context
    return opts


def consumer_options(cfg: KafkaConfig, group: bool) -> dict:
    """``start_from`` is not the client's reset policy: that one applies to every partition without
    a commit, also partitions added later, and to commits that fell out of retention, and
    ``latest`` would skip their rows. The consumer thread applies ``start_from`` to a new group
    only; every other reset goes to the earliest offset."""
    opts = client_options(cfg)
    opts.update(
        group_id=cfg.group_id if group else None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",     # never rows of aborted Kafka transactions
        metadata_max_age_ms=cfg.metadata_max_age_ms,
        max_poll_records=cfg.max_poll_records,
        fetch_max_bytes=cfg.fetch_max_bytes,
        max_partition_fetch_bytes=cfg.partition_fetch_bytes,
        session_timeout_ms=cfg.session_timeout_ms,
        heartbeat_interval_ms=cfg.heartbeat_interval_ms,
        max_poll_interval_ms=cfg.max_poll_interval_ms,
        check_crcs=True,
        # never create a topic by asking for it (the broker's auto.create.topics.enable would
        # turn a mistyped name into an empty topic read forever); see require_topics
        allow_auto_create_topics=False,
    )
    return opts


def missing_topics_message(missing, existing, brokers) -> str:
    """What to say about configured topics the cluster does not have: the closest names."""
    parts = []
    for topic in missing:
        close = difflib.get_close_matches(topic, sorted(existing), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        parts.append(f"{topic!r}{hint}")
    return (f"topic {', '.join(parts)} does not exist on {', '.join(brokers)}; sinker never "
            "creates topics: fix kafka.topics, or create the topic first")


def topic_patterns(cfg: KafkaConfig) -> tuple[str, ...]:
    """The regexes a group member subscribes with besides ``kafka.topics``."""
    return (cfg.topics_pattern,) if cfg.topics_pattern else ()


def pattern_body(pattern: str) -> str:
    """A pattern without its optional leading '^' and trailing '$' (lib/config.py allows them
    nowhere else): each client anchors it at both ends its own way."""
    body = pattern[1:] if pattern.startswith("^") else pattern
    return body[:-1] if body.endswith("$") else body


def topics_regex(topics=(), patterns=()) -> re.Pattern:
    """One Python regex for a subscription: a topic named in ``topics``, or a whole name that
    one of ``patterns`` matches, never a name starting with "__" (Kafka's internal topics)
    through a pattern. lib/config.py admits only patterns librdkafka reads alike. kafka-python
    subscribes with it (its re.match anchors only the start: hence the \\Z)."""
    names = [re.escape(t) for t in topics]
    regexes = [f"(?!__)(?:{pattern_body(p)})" for p in patterns]
    return re.compile("(?:" + "|".join(names + regexes) + r")\Z")


def subscribed_topics(cfg: KafkaConfig, existing) -> list[str]:
    """The names among ``existing`` that ``run`` reads: kafka.topics and topics_pattern's
    matches (a topic created later joins them without a restart)."""
    match = topics_regex(cfg.topics, topic_patterns(cfg)).match
    return sorted(t for t in existing if match(t))


def open_reader(cfg: KafkaConfig, group: bool):
    """The reader of the configured ``kafka.client``."""
    if cfg.client == "confluent-kafka":
        from .kafka_client_confluent import ConfluentReader
        return ConfluentReader(cfg, group)
    return KafkaReader(cfg, group)


def check_crc32c(cfg: KafkaConfig | None = None) -> bool:
    """kafka-python falls back to a pure-Python CRC that costs ~5x the CPU per message."""
    if cfg is not None and cfg.client != "kafka-python":
        return True
    try:
        import crc32c  # noqa: F401
        return True
    except ImportError:
        log.warning("the crc32c package is missing: kafka-python will use a slow pure-Python CRC; "
                    "install kafka-python[crc32c]")
        return False


def _open(factory, cfg: KafkaConfig, what: str, **opts):
    """Build a client after one preflight login (a refused password or an untrusted certificate
    fails at once, named), turning kafka-python's start-up errors into sinker's typed errors."""
    preflight(cfg, opts.get("ssl_context"))
    try:
        return factory(**opts)
    except Exception as e:
        typed = client_error(cfg, e, what)
        if typed is not None:
            raise typed from e
        raise


def open_producer(cfg: KafkaConfig, **overrides):
    """A KafkaProducer with sinker's connection options (the dead-letter topic)."""
    from kafka import KafkaProducer   # only users of a producer pay for the import
    opts = client_options(cfg)
    opts.update(overrides)
    return _open(KafkaProducer, cfg, "the dead-letter producer", **opts)


def topic_max_message_bytes(cfg: KafkaConfig, topic: str) -> int | None:
    """The largest record batch the brokers accept on ``topic``: its ``max.message.bytes`` (the
    broker's ``message.max.bytes`` unless the topic overrides it). None when it cannot be read: no
    such topic yet, no DescribeConfigs permission, no broker."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType
    try:
        admin = KafkaAdminClient(**client_options(cfg))
    except Exception as e:  # noqa: BLE001 - the caller falls back to a default
        log.debug("no admin client to read max.message.bytes of %s: %s", topic, e)
        return None
    try:
        answer = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": None})],
            config_filter="all")
        entry = answer.get("topic", {}).get(topic, {}).get("max.message.bytes")
        return int(entry["value"]) if entry and entry.get("value") else None
    except Exception as e:  # noqa: BLE001
        log.debug("could not read max.message.bytes of %s: %s", topic, e)
        return None
    finally:
        admin.close()
def require_topics(cfg: KafkaConfig) -> None:
    """Raise TopicNotFound, naming the closest existing topics, unless every topic in
    kafka.topics exists. A topics_pattern that matches nothing yet only warns: its topics may be
    created later, and are read then. A reader of its own lists them: the group member's client
    must not fetch every topic's metadata before it joins (kafka-python then rejoins the group
    once more)."""
    reader = open_reader(cfg, group=False)
    try:
        existing = reader.topics()
    except Exception as e:  # noqa: BLE001 - kafka-python's errors vary by version
        raise KafkaUnavailable(f"cannot list the topics on {', '.join(cfg.brokers)}: {e}; check "
                               "that a broker answers") from e
    finally:
        reader.close()
    missing = [t for t in cfg.topics if t not in existing]
    if missing:
        raise TopicNotFound(missing_topics_message(missing, existing, cfg.brokers))
    if cfg.topics_pattern and not set(subscribed_topics(cfg, existing)) - set(cfg.topics):
        log.warning("kafka.topics_pattern %r matches no topic on %s yet: topics it matches are "
                    "read as they are created (seen within kafka.metadata_max_age_ms, %d ms); "
                    "if none should exist yet this is fine, else fix the pattern (it must match "
                    "whole names)", cfg.topics_pattern, ", ".join(cfg.brokers),
                    cfg.metadata_max_age_ms)


class _Rebalances(ConsumerRebalanceListener):
    """Runs on kafka-python's I/O thread: record the event and return at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.revoked: set = set()
        self.assigned: set | None = None
        self.events = 0

    def on_partitions_revoked(self, revoked):
        with self.lock:
            self.revoked.update(revoked)
            self.assigned = None     # eager: an assignment not yet taken is void, another follows
            self.events += 1

    def on_partitions_assigned(self, assigned):
        with self.lock:
            self.assigned = set(assigned)
            self.events += 1

    def on_partitions_lost(self, lost):
        self.on_partitions_revoked(lost)

    def take(self):
        with self.lock:
            revoked, assigned = self.revoked, self.assigned
            self.revoked, self.assigned = set(), None
            return revoked, assigned


class KafkaReader:
    """A consumer with sinker's options. ``group=True``: a member of ``kafka.group_id`` that
    subscribes and commits; ``group=False``: reads assigned partitions only, so a running group
    is neither rebalanced nor has its offsets touched (replay, dry-run, check)."""

    def __init__(self, cfg: KafkaConfig, group: bool, factory=KafkaConsumer):
        self.cfg = cfg
        self.group = group
        self._rebalances = _Rebalances()
        self._c = _open(factory, cfg, "the Kafka consumer", **consumer_options(cfg, group))

    def broker_reachable(self) -> bool:
        """A broker connection is up (and, in a group, the coordinator is known): no I/O, reads
        the client's own state. True when the client does not say (another version)."""
        manager = getattr(self._c, "_manager", None)
        conns = getattr(manager, "_conns", None)
        if conns is None:
            return True
        if not any(getattr(c, "connected", False) for c in list(conns.values())):
            return False
        # coordinator_id only: coordinator_unknown() may mark the coordinator dead as a side effect
        coordinator = getattr(self._c, "_coordinator", None) if self.group else None
        return coordinator is None or getattr(coordinator, "coordinator_id", 0) is not None

    # -- membership ----------------------------------------------------------------------------
    def subscribe(self, topics, before_revoke=None, patterns=()) -> None:
        """Join the group for ``topics`` and every topic a regex of ``patterns`` matches whole
        (see topics_regex), matches found again at each metadata refresh
        (kafka.metadata_max_age_ms). ``before_revoke`` is for confluent-kafka only:
        kafka-python's listener runs on its I/O thread, where the consumer thread's state must
        not be touched."""
        if patterns:     # kafka-python takes topics or one pattern, never both
            self._c.subscribe(pattern=topics_regex(topics, patterns), listener=self._rebalances)
        else:
            self._c.subscribe(topics=list(topics), listener=self._rebalances)

    def take_rebalance(self) -> tuple[set, set | None]:
        """(partitions revoked or lost, the new assignment or None) since the last call."""
        return self._rebalances.take()

    @property
    def rebalance_events(self) -> int:
        return self._rebalances.events

    def request_rejoin(self) -> bool:
        """Ask the group coordinator for a new join (kafka-python can lose a join's assignment)."""
        coordinator = getattr(self._c, "_coordinator", None)
        if coordinator is None or not hasattr(coordinator, "request_rejoin"):
            return False
        coordinator.request_rejoin()
        return True

    # -- reading -------------------------------------------------------------------------------
    def assign(self, partitions) -> None:
        self._c.assign(list(partitions))

    def seek(self, tp, offset: int) -> None:
        self._c.seek(tp, offset)

    def seek_to_beginning(self, *tps) -> None:
        self._c.seek_to_beginning(*tps)

    def seek_to_end(self, *tps) -> None:
        self._c.seek_to_end(*tps)

    def position(self, tp, timeout_ms: int | None = None) -> int | None:
        return self._c.position(tp, timeout_ms=timeout_ms)

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict:
        return self._c.poll(timeout_ms=timeout_ms, max_records=max_records)

    def assignment(self) -> set:
        return self._c.assignment()

    def pause(self, *tps) -> None:
        if tps:
            self._c.pause(*tps)

    def resume(self, *tps) -> None:
        if tps:
            self._c.resume(*tps)

    def paused(self) -> set:
        return self._c.paused()

    # -- offsets and metadata ------------------------------------------------------------------
    def commit(self, offsets: dict, timeout_ms: int = 10_000) -> None:
        """Commit ``{TopicPartition: (next offset, metadata)}``; raises on failure (a commit that
        timed out may still have happened: the caller retries the same values). The broker
        refuses the commit of a member that is no longer in the group's generation."""
        self._c.commit({tp: OffsetAndMetadata(off, meta + commit_metadata.STORED_END, -1)
                        for tp, (off, meta) in offsets.items()}, timeout_ms=timeout_ms)

    def committed(self, tp, timeout_ms: int = 5000) -> int | None:
        return self._c.committed(tp, timeout_ms=timeout_ms)

    def committed_with_metadata(self, tp, timeout_ms: int = 5000) -> tuple[int, str] | None:
        """(offset, metadata) of the group's last commit, or None when it has none."""
        found = self._c.committed(tp, metadata=True, timeout_ms=timeout_ms)
        return None if found is None else (found.offset, found.metadata or "")

    def beginning_offsets(self, tps, timeout_ms: int = 10_000) -> dict:
        return self._c.beginning_offsets(list(tps), timeout_ms=timeout_ms)

    def end_offsets(self, tps, timeout_ms: int = 10_000) -> dict:
        return self._c.end_offsets(list(tps), timeout_ms=timeout_ms)

    def offsets_for_times(self, timestamps: dict) -> dict:
        """``{tp: ms}`` → ``{tp: first offset at or after it, or None past the end}``."""
        found = self._c.offsets_for_times(timestamps)
        return {tp: (v.offset if v is not None else None) for tp, v in found.items()}

    def partitions_for_topic(self, topic: str) -> set | None:
        return self._c.partitions_for_topic(topic)

    def topics(self) -> set:
        return self._c.topics()

    def close(self) -> None:
        self._c.close(autocommit=False, timeout_ms=5000)
