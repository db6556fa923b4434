"""KafkaReader's surface on confluent-kafka (librdkafka), chosen by ``kafka.client: confluent-kafka``.

lib/kafka_client.py is the entry point and says what the surface promises; this module keeps the
same semantics with librdkafka's API. What differs underneath, and how it is bridged:

* Records are librdkafka's ``Message`` objects, handed on as they come (lib/records.py reads
  them); poll results are keyed by kafka-python's ``TopicPartition``, as on the other client.
* Rebalance callbacks run inside ``consume()`` on the consumer thread. They record the event as
  the kafka-python listener does; ``poll()`` also drops records of partitions a rebalance during
  that very call took away, so nothing of a revoked partition is handed on after its revoke.
  Being on the consumer thread, a revoke (not a loss) first lets the consumer commit what Doris
  confirmed of the partitions, still ours then (``subscribe(before_revoke=...)``).
* Pauses end with the partition's revocation, as in kafka-python (librdkafka forgets them when
  it assigns partitions anyway): the consumer thread pauses what it is given while it holds
  back, and drops what the poll that assigned a partition read of it.
* ``seek`` resets librdkafka's position to "unknown" until a record is read: ``position()``
  answers with the offset sought meanwhile. A partition assigned by hand is only assigned at the
  first call that needs it, with the offsets sought until then (a seek right after ``assign()``
  fails in librdkafka: the partition is not fetching yet).
* Broker reachability comes from librdkafka's statistics (every second, on the consumer thread).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from itertools import groupby, repeat
from operator import is_not, itemgetter

from confluent_kafka import (OFFSET_BEGINNING, OFFSET_END, OFFSET_STORED, Consumer, KafkaError,
                             KafkaException, Message)
from confluent_kafka import TopicPartition as _TP
from kafka.structs import TopicPartition

from . import commit_metadata
from .config import KafkaConfig
from .errors import ConfigError, KafkaRefused, KafkaUnavailable, SinkerError
from .kafka_client import pattern_body
from .kafka_security import preflight, ssl_context

log = logging.getLogger("sinker.kafka")
librdkafka_log = logging.getLogger("sinker.kafka.librdkafka")

GROUPLESS_ID = "sinker-reader-without-group"   # librdkafka needs one; never joined nor committed
STATS_INTERVAL_MS = 1000
SEEK_WAIT_S = 10.0           # a partition just assigned starts fetching within this
METADATA_TIMEOUT_S = 5.0
QUEUED_MAX_KBYTES = 16384
QUEUED_MIN_MESSAGES = 20_000  # per partition; librdkafka's 100,000 (consumer_config)
FETCH_QUEUE_BACKOFF_MS = 10  # librdkafka's default, 1 s, idles a drained queue (consumer_config)

_first, _second = itemgetter(0), itemgetter(1)
_UNREACHABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
                KafkaError._RESOLVE, KafkaError._WAIT_COORD}
_REFUSED = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL}


def consumer_config(cfg: KafkaConfig, group: bool) -> dict:
    """sinker's Kafka settings as librdkafka properties, one to one (see consumer_options in
    lib/kafka_client.py for why the reset policy is always earliest)."""
    conf = {
        "bootstrap.servers": ",".join(cfg.brokers),
        "client.id": cfg.client_id,
        "group.id": cfg.group_id if group else GROUPLESS_ID,
        "security.protocol": cfg.security_protocol,
        "socket.timeout.ms": cfg.request_timeout_ms,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",      # never rows of aborted Kafka transactions
        "allow.auto.create.topics": False,        # see require_topics in lib/kafka_client.py
        "topic.metadata.refresh.interval.ms": cfg.metadata_max_age_ms,
        "session.timeout.ms": cfg.session_timeout_ms,
        "heartbeat.interval.ms": cfg.heartbeat_interval_ms,
        "max.poll.interval.ms": cfg.max_poll_interval_ms,
        "fetch.max.bytes": cfg.fetch_max_bytes,
        "max.partition.fetch.bytes": cfg.partition_fetch_bytes,
        # what librdkafka prefetches is held outside sinker's memory budget: its default 64 MB
        # (per consumer) peaked 60 MB higher with large messages than 16 MB, at the same speed
        "queued.max.messages.kbytes": QUEUED_MAX_KBYTES,
        # and its per-partition count, which binds first for small messages (its per-message
        # overhead is not in the kbytes): 1M small messages, 4 partitions, peaked 37-48 MB lower
        # with 20,000 than with 100,000, at the same speed
        "queued.min.messages": QUEUED_MIN_MESSAGES,
        # librdkafka refuses a response limit below fetch.max.bytes + 512 (its default is 100 MB)
        "receive.message.max.bytes": max(100_000_000, cfg.fetch_max_bytes + 512),
        "check.crcs": True,
        # librdkafka stops fetching once its local queue holds queued.min.messages (100,000) or
        # queued.max.messages.kbytes, and then waits fetch.queue.backoff.ms, 1 s by default,
        # before it fetches again, while sinker drains such a queue in a fraction of that: a
        # 1M-message backlog was read at 66% CPU and the raw confluent loop at 20%
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "enable.partition.eof": False,
        # kafka-python's protocols too: a group can move from one client to the other
        "partition.assignment.strategy": "range,roundrobin",
        "statistics.interval.ms": STATS_INTERVAL_MS,
    }
    if cfg.topics_pattern:
        # librdkafka's regex subscriptions match internal topics too (__consumer_offsets):
        # hide every "__" name, as kafka-python's topics_regex leaves them out
        conf["topic.blacklist"] = "^__"
    if cfg.sasl_mechanism:
        conf.update({"sasl.mechanisms": cfg.sasl_mechanism, "sasl.username": cfg.sasl_username,
                     "sasl.password": cfg.sasl_password})
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        conf["ssl.ca.location"] = cfg.ssl_cafile or "probe"    # probe: the system's CAs
        conf["ssl.endpoint.identification.algorithm"] = "https" if cfg.ssl_check_hostname else "none"
        if cfg.ssl_certfile:
            conf["ssl.certificate.location"] = cfg.ssl_certfile
            conf["ssl.key.location"] = cfg.ssl_keyfile
        if cfg.ssl_key_password:
            conf["ssl.key.password"] = cfg.ssl_key_password
    return conf


def librdkafka_subscription(topics, patterns) -> list[str]:
    """librdkafka takes an entry starting with '^' as a regex, searched anywhere in a name (by
    libc's POSIX ERE regcomp, or its own engine on Windows): anchored at both ends here, so it
    matches whole names as topics_regex does in lib/kafka_client.py."""
    return list(topics) + [f"^({pattern_body(p)})$" for p in patterns]


def client_error(cfg: KafkaConfig, exc: BaseException, what: str) -> SinkerError | None:
    """The typed error for a librdkafka failure, or None when it is not one sinker knows."""
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if err is None:
        return None
    brokers = ", ".join(cfg.brokers)
    if err.code() in _REFUSED:
        return KafkaRefused(f"{what}: Kafka brokers {brokers} refused the connection "
                            f"(security_protocol {cfg.security_protocol}, SASL mechanism "
                            f"{cfg.sasl_mechanism}, user {cfg.sasl_username!r}): {err.str()}; check "
                            "kafka.sasl_username, kafka.sasl_password and the kafka.ssl_* files")
    if err.code() in _UNREACHABLE:
        return KafkaUnavailable(
            f"{what} could not reach any Kafka broker at {brokers} (security_protocol "
            f"{cfg.security_protocol}; {err.str()}): check kafka.brokers, that the brokers are up, "
            "and that the listener speaks that protocol; librdkafka's log lines above say why "
            "each connection failed")
    if err.code() in (KafkaError._INVALID_ARG, KafkaError._INVALID_TYPE):
        return ConfigError(f"kafka settings rejected by librdkafka (kafka.client "
                           f"confluent-kafka): {err.str()}")
    return None


def _raise_typed(cfg: KafkaConfig, exc: BaseException, what: str):
    typed = client_error(cfg, exc, what)
    if typed is not None:
        raise typed from exc
    raise exc


class _Rebalances:
    """Runs inside ``consume()`` on the consumer thread: record the event and return (the
    assignment itself is left to confluent-kafka). The lock is for readers on other threads."""

    def __init__(self, reader: "ConfluentReader"):
        self.reader = reader
        self.lock = threading.Lock()
        self.revoked: set = set()
        self.assigned: set | None = None
        self.events = 0

    def on_assign(self, consumer, partitions):
        new = {TopicPartition(p.topic, p.partition) for p in partitions}
        with self.lock:
            self.reader._assigned = new
            self.assigned = set(new)
            self.events += 1

    def on_revoke(self, consumer, partitions):
        gone = {TopicPartition(p.topic, p.partition) for p in partitions}
        self._still_ours(gone)
        self._record_revoke(gone)

    def on_lost(self, consumer, partitions):
        """Lost, not revoked: no longer ours, nothing may be committed for them."""
        self._record_revoke({TopicPartition(p.topic, p.partition) for p in partitions})

    def _still_ours(self, gone: set) -> None:
        hook = self.reader._before_revoke
        if hook is None:
            return
        try:
            hook(gone)
        except Exception as e:  # noqa: BLE001 - must not escape into librdkafka's consume()
            log.warning("before giving up partitions: %s", e)

    def _record_revoke(self, gone: set) -> None:
        with self.lock:
            self.reader._assigned = self.reader._assigned - gone
            self.reader._held -= gone
            for tp in gone:
                self.reader._sought.pop(tp, None)
            self.revoked.update(gone)
            self.assigned = None     # eager: an assignment not yet taken is void, another follows
            self.events += 1

    def take(self):
        with self.lock:
            revoked, assigned = self.revoked, self.assigned
            self.revoked, self.assigned = set(), None
            return revoked, assigned


class ConfluentReader:
    """lib/kafka_client.py's KafkaReader on librdkafka: same methods, same semantics."""

    def __init__(self, cfg: KafkaConfig, group: bool, factory=None):
        self.cfg = cfg
        self.group = group
        self._rebalances = _Rebalances(self)
        self._assigned: set = set()
        self._held: set = set()                    # paused, until resumed or revoked
        self._sought: dict = {}                    # tp -> offset sought, until a record is read
        self._unassigned: dict | None = None       # assign() by hand, not yet given to librdkafka
        self._tps: dict = {}                       # (topic, partition) -> TopicPartition (dict keys)
        self._partitions: dict = {}                # topic -> partitions at the last metadata read
        self._reachable = True
        self._before_revoke = None
        self._fatal: KafkaError | None = None
        preflight(cfg, ssl_context(cfg))           # names a refused login or certificate at once
        conf = consumer_config(cfg, group)
        conf.update(logger=librdkafka_log, error_cb=self._on_error, stats_cb=self._on_stats)
        what = "the Kafka consumer"
        try:
            self._c = (factory or Consumer)(conf)
        except (KafkaException, ValueError, TypeError) as e:
            raise ConfigError(f"kafka settings rejected by librdkafka (kafka.client "
                              f"confluent-kafka): {e}") from e
        try:   # librdkafka connects in the background: fail here, as kafka-python does
            self._c.list_topics(cfg.topics[0] if cfg.topics else None,
                                timeout=cfg.request_timeout_ms / 1000)
        except KafkaException as e:
            self._c.close()
            _raise_typed(cfg, e, what)

    # -- librdkafka's callbacks (on the consumer thread, inside consume/list_topics) ------------
    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        log.debug("librdkafka: %s", err.str())

    def _on_stats(self, text: str) -> None:
        try:
            stats = json.loads(text)
        except ValueError:
            return
        brokers = [b for b in stats.get("brokers", {}).values() if b.get("nodeid", -1) >= 0]
        up = any(b.get("state") == "UP" for b in brokers) or not brokers and self._reachable
        if self.group:
            up = up and stats.get("cgrp", {}).get("state") == "up"
        self._reachable = up

    def broker_reachable(self) -> bool:
        """A broker connection is up (in a group: the coordinator too), as librdkafka's last
        statistics said: no I/O."""
        return self._reachable

    # -- membership ----------------------------------------------------------------------------
    def subscribe(self, topics, before_revoke=None, patterns=()) -> None:
        """``topics`` and every topic a regex of ``patterns`` matches whole, found again at each
        metadata refresh (topic.metadata.refresh.interval.ms). ``before_revoke(partitions)``
        runs inside poll(), on this thread, while revoked partitions are still ours (eager
        protocol): the consumer commits what Doris confirmed."""
        self._before_revoke = before_revoke
        r = self._rebalances
        self._c.subscribe(librdkafka_subscription(topics, patterns), on_assign=r.on_assign,
                          on_revoke=r.on_revoke, on_lost=r.on_lost)

    def take_rebalance(self) -> tuple[set, set | None]:
        """(partitions revoked or lost, the new assignment or None) since the last call."""
        return self._rebalances.take()

    @property
    def rebalance_events(self) -> int:
        return self._rebalances.events

    def request_rejoin(self) -> bool:
        """librdkafka rejoins by itself (also when partitions are added): nothing to ask."""
        return False

    # -- reading -------------------------------------------------------------------------------
    def assign(self, partitions) -> None:
        default = OFFSET_STORED if self.group else OFFSET_BEGINNING
        self._unassigned = {tp: default for tp in partitions}
        self._assigned = set(self._unassigned)

    def _start(self) -> None:
        """Give a hand assignment to librdkafka, with the offsets sought since assign()."""
        if self._unassigned is None:
            return
        parts, self._unassigned = self._unassigned, None
        self._c.assign([_TP(tp.topic, tp.partition, off) for tp, off in parts.items()])

    def seek(self, tp, offset: int) -> None:
        self._sought[tp] = offset
        if self._unassigned is not None and tp in self._unassigned:
            self._unassigned[tp] = offset
            return
        deadline = time.monotonic() + SEEK_WAIT_S
        while True:
            try:
                self._c.seek(_TP(tp.topic, tp.partition, offset))
                return
            except KafkaException as e:
                # _STATE: assigned, but librdkafka has not started fetching it yet
                if e.args[0].code() != KafkaError._STATE or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def seek_to_beginning(self, *tps) -> None:
        for tp, off in self.beginning_offsets(tps or self._assigned).items():
            self.seek(tp, off)

    def seek_to_end(self, *tps) -> None:
        for tp, off in self.end_offsets(tps or self._assigned).items():
            self.seek(tp, off)

    def position(self, tp, timeout_ms: int | None = None) -> int | None:
        self._start()
        found = self._c.position([_TP(tp.topic, tp.partition)])[0].offset
        if found >= 0:
            return found
        return self._sought.get(tp)

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict:
        """``{TopicPartition: [Message, ...]}`` in offset order; error events are logged, never
        handed on."""
        self._start()
        events = self._rebalances.events
        msgs = self._c.consume(max_records or self.cfg.max_poll_records, timeout_ms / 1000)
        if self._fatal is not None:
            raise KafkaUnavailable(f"librdkafka stopped the Kafka consumer: {self._fatal.str()}; "
                                   "restart sinker (what was not committed is read again)")
        if not msgs:
            return {}
        errors = list(map(Message.error, msgs))
        if any(map(is_not, errors, repeat(None))):     # KafkaError == None raises
            msgs = self._without_errors(msgs, errors)
        if self._rebalances.events != events:
            # a rebalance ran inside consume(): nothing of a partition it took away goes on
            owned = {(tp.topic, tp.partition) for tp in self._assigned}
            msgs = [m for m in msgs if (m.topic(), m.partition()) in owned]
        result: dict = {}
        tps = self._tps
        keys = zip(map(Message.topic, msgs), map(Message.partition, msgs))
        for key, run in groupby(zip(keys, msgs), _first):
            tp = tps.get(key)
            if tp is None:
                tp = tps[key] = TopicPartition(*key)
            records = list(map(_second, run))
            if tp in result:
                result[tp] += records
            else:
                result[tp] = records
        for tp in result:
            self._sought.pop(tp, None)
        return result

    def _without_errors(self, msgs, errors) -> list:
        kept = []
        for m, err in zip(msgs, errors):
            if err is None:
                kept.append(m)
            elif err.code() == KafkaError._PARTITION_EOF:
                log.debug("partition %s[%s] reached its end", m.topic(), m.partition())
            else:
                log.warning("Kafka consumer: %s (topic %s, partition %s)", err.str(), m.topic(),
                            m.partition())
        return kept

    def assignment(self) -> set:
        return set(self._assigned)

    def pause(self, *tps) -> None:
        if tps:
            self._held.update(tps)
            self._start()
            self._c.pause([_TP(tp.topic, tp.partition) for tp in tps])

    def resume(self, *tps) -> None:
        if tps:
            self._held.difference_update(tps)
            self._start()
            self._c.resume([_TP(tp.topic, tp.partition) for tp in tps])

    def paused(self) -> set:
        return self._held & self._assigned

    # -- offsets and metadata ------------------------------------------------------------------
    def commit(self, offsets: dict, timeout_ms: int = 10_000) -> None:
        """Commit ``{TopicPartition: (next offset, metadata)}``; raises on failure, as
        lib/kafka_client.py's KafkaReader.commit says. librdkafka's synchronous commit has no
        timeout of its own: it ends with the request (socket.timeout.ms)."""
        done = self._c.commit(offsets=[_TP(tp.topic, tp.partition, off, metadata=meta)
                                       for tp, (off, meta) in offsets.items()],
                              asynchronous=False)
        failed = [p for p in done or () if p.error is not None]
        if failed:
            raise KafkaException(failed[0].error)

    def _committed(self, tp, timeout_ms: int):
        found = self._c.committed([_TP(tp.topic, tp.partition)], timeout=timeout_ms / 1000)[0]
        if found.error is not None:
            raise KafkaException(found.error)
        return None if found.offset < 0 else found

    def committed(self, tp, timeout_ms: int = 5000) -> int | None:
        found = self._committed(tp, timeout_ms)
        return None if found is None else found.offset

    def committed_with_metadata(self, tp, timeout_ms: int = 5000) -> tuple[int, str] | None:
        """(offset, metadata) of the group's last commit, or None when it has none. Metadata
        stored without a NUL at its end (see lib/commit_metadata.py) may come back with bytes
        that are not text: then it is marked unreadable, and the consumer says so."""
        found = self._committed(tp, timeout_ms)
        if found is None:
            return None
        try:
            return found.offset, found.metadata or ""
        except UnicodeDecodeError:
            return found.offset, f"{commit_metadata.PREFIX} <not readable by confluent-kafka>"

    def _list_offsets(self, wanted: dict, timeout_ms: int = 10_000) -> dict:
        """One ListOffsets request for ``{tp: timestamp, OFFSET_BEGINNING or OFFSET_END}``
        (OFFSET_END: the last stable offset under read_committed)."""
        if not wanted:
            return {}
        found = self._c.offsets_for_times([_TP(tp.topic, tp.partition, which)
                                           for tp, which in wanted.items()],
                                          timeout=timeout_ms / 1000)
        out = {}
        for tp, p in zip(wanted, found):
            if p.error is not None:
                raise KafkaException(p.error)
            out[tp] = p.offset
        return out

    def beginning_offsets(self, tps, timeout_ms: int = 10_000) -> dict:
        return self._list_offsets(dict.fromkeys(tps, OFFSET_BEGINNING), timeout_ms)

    def end_offsets(self, tps, timeout_ms: int = 10_000) -> dict:
        return self._list_offsets(dict.fromkeys(tps, OFFSET_END), timeout_ms)

    def offsets_for_times(self, timestamps: dict) -> dict:
        """``{tp: ms}`` → ``{tp: first offset at or after it, or None past the end}``."""
        return {tp: (off if off >= 0 else None)
                for tp, off in self._list_offsets(dict(timestamps)).items()}

    def partitions_for_topic(self, topic: str) -> set | None:
        """The topic's partitions, or None when it does not exist; during an outage the last
        answer (within METADATA_TIMEOUT_S)."""
        try:
            md = self._c.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        except KafkaException as e:
            log.debug("metadata of topic %s: %s", topic, e)
            return self._partitions.get(topic)
        found = None if md is None or md.error is not None else set(md.partitions)
        self._partitions[topic] = found
        return found

    def topics(self) -> set:
        return set(self._c.list_topics(timeout=self.cfg.request_timeout_ms / 1000).topics)

    def close(self) -> None:
        self._c.close()
