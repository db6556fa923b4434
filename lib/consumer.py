"""The consumer thread: the only code that touches the KafkaConsumer (it is not thread-safe).

It polls whole batches of records, hands each poll result to the batcher through a bounded queue,
pauses every assigned partition while that queue is full (and keeps polling so the group keeps
us), and commits the offsets the OffsetTracker releases: ``last + 1`` of a contiguous prefix of
batches that Doris confirmed. Rebalance callbacks run on kafka-python's I/O thread and must return
at once, so they only record what happened; this thread acts on it after ``poll()`` returns.
"""
from __future__ import annotations

import logging
import queue
import threading
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from . import __version__
from .config import KafkaConfig
from .kafka_security import client_error, preflight, ssl_context

log = logging.getLogger("sinker.consumer")

COMMIT_INTERVAL_S = 1.0        # commits are cheap but not free; batches confirm every few seconds
END_OFFSETS_INTERVAL_S = 15.0  # lag metrics refresh
POLL_TIMEOUT_MS = 200
JOIN_POLL_TIMEOUT_MS = 1000    # while we own no partition: a short poll can cut a group join short
UNASSIGNED_REJOIN_S = 15.0     # no partition this long in a stable group: ask to rejoin (doubling)
UNASSIGNED_REJOIN_MAX_S = 600.0


def kafka_client_options(cfg: KafkaConfig) -> dict:
    """Options shared by every kafka-python client sinker creates (consumer, dead-letter producer)."""
    opts = dict(
        bootstrap_servers=list(cfg.brokers),
        client_id=cfg.client_id,
        request_timeout_ms=cfg.request_timeout_ms,
        security_protocol=cfg.security_protocol,
    )
    if cfg.sasl_mechanism:
        opts.update(sasl_mechanism=cfg.sasl_mechanism, sasl_plain_username=cfg.sasl_username,
                    sasl_plain_password=cfg.sasl_password)
    context = ssl_context(cfg)      # stands for kafka-python's ssl_cafile/certfile/keyfile/password
    if context is not None:
        opts["ssl_context"] = context
    return opts


def consumer_options(cfg: KafkaConfig) -> dict:
    opts = kafka_client_options(cfg)
    opts.update(
        group_id=cfg.group_id,
        enable_auto_commit=False,
        auto_offset_reset=cfg.start_from,
        max_poll_records=cfg.max_poll_records,
        fetch_max_bytes=cfg.fetch_max_bytes,
        max_partition_fetch_bytes=cfg.max_partition_fetch_bytes,
        session_timeout_ms=cfg.session_timeout_ms,
        heartbeat_interval_ms=cfg.heartbeat_interval_ms,
        max_poll_interval_ms=cfg.max_poll_interval_ms,
        check_crcs=True,
    )
    return opts


def open_consumer(cfg: KafkaConfig, with_group: bool = True, factory=KafkaConsumer):
    """A KafkaConsumer with sinker's options; without a group it only reads (dry-run, replay,
    check), so the running group is neither rebalanced nor has its offsets touched."""
    opts = consumer_options(cfg)
    if not with_group:
        opts["group_id"] = None
    preflight(cfg, opts.get("ssl_context"))
    try:
        return factory(**opts)
    except Exception as e:
        typed = client_error(cfg, e, "the Kafka consumer")
        if typed is not None:
            raise typed from e
        raise


def check_crc32c() -> bool:
    """kafka-python falls back to a pure-Python CRC that costs ~5x the CPU per message."""
    try:
        import crc32c  # noqa: F401
        return True
    except ImportError:
        log.warning("the crc32c package is missing: kafka-python will use a slow pure-Python CRC; "
                    "install kafka-python[crc32c]")
        return False


class _Listener(ConsumerRebalanceListener):
    """Runs on kafka-python's I/O thread: record the event and return at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.revoked: set = set()
        self.assigned: set | None = None
        self.events = 0

    def on_partitions_revoked(self, revoked):
        with self.lock:
            self.revoked.update(revoked)
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


def drop_already_read(records: list, next_offset: int | None) -> list:
    """After a rebalance hands a partition back to us, Kafka rewinds it to the committed offset,
    but the rows after that are still in our pipeline: drop what we already handed on, so a
    rebalance does not make us load rows twice."""
    if next_offset is None or not records or records[0].offset >= next_offset:
        return records
    lo, hi = 0, len(records)
    while lo < hi:
        mid = (lo + hi) // 2
        if records[mid].offset < next_offset:
            lo = mid + 1
        else:
            hi = mid
    return records[lo:]


class ConsumerThread(threading.Thread):
    """Poll → queue; pause when the queue is full; commit what the tracker releases."""

    def __init__(self, cfg: KafkaConfig, out: queue.Queue, tracker, metrics, health, accounting,
                 stop_polling: threading.Event, finish: threading.Event, on_revoke=None,
                 consumer_factory=KafkaConsumer, topics=None, assignment=None, start_offsets=None,
                 end_offsets=None):
        super().__init__(name="consumer", daemon=True)
        self.cfg = cfg
        self.out = out
        self.tracker = tracker
        self.metrics = metrics
        self.health = health
        self.accounting = accounting
        self.stop_polling = stop_polling   # set: stop handing on records (shutdown or failure)
        self.finish = finish               # set: final commit, close, exit
        self.on_revoke = on_revoke
        self.consumer_factory = consumer_factory
        self.topics = tuple(topics or cfg.topics)
        self.assignment = assignment       # explicit partitions (replay): no group subscription
        self.start_offsets = start_offsets or {}   # TopicPartition -> first offset (replay)
        self.end_offsets = end_offsets             # TopicPartition -> stop before this (replay)
        self.reached_end: set = set()
        self.listener = _Listener()
        self.next_offset: dict = {}        # TopicPartition -> offset after the last record handed on
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.consumer = None
        self._held = None                  # a poll result waiting for room in the queue
        self._unassigned_since: float | None = None   # see _watch_unassigned
        self._rejoin_after = UNASSIGNED_REJOIN_S
        self._paused = False
        self._last_commit = 0.0
        self._last_end_offsets = 0.0
        self.committed: dict = {}          # (topic, partition) -> last committed offset (for tests/metrics)
        self._group_committed: dict = {}   # (topic, partition) -> the group's offset when assigned (lag)
        self._ends: dict = {}              # (topic, partition) -> end offset at the last refresh (lag)

    # -- lifecycle -----------------------------------------------------------------------------
    def run(self):
        try:
            self.consumer = self._connect()
            self.ready.set()
            while not self.finish.is_set():
                self._step()
            self._commit(force=True)
        except BaseException as e:  # noqa: BLE001 - handed to the pipeline, which decides the exit
            self.error = e
            log.error("consumer stopped: %s", e)
        finally:
            self.ready.set()
            if self.consumer is not None:
                try:
                    self.consumer.close(autocommit=False, timeout_ms=5000)
                except Exception as e:  # noqa: BLE001
                    log.warning("closing the Kafka consumer: %s", e)

    def _connect(self):
        check_crc32c()
        # replay assigns partitions itself: read only, never touch the group's offsets
        c = open_consumer(self.cfg, with_group=self.assignment is None, factory=self.consumer_factory)
        if self.assignment is not None:
            c.assign(list(self.assignment))
            for tp, off in self.start_offsets.items():
                c.seek(tp, off)
            self._check_ends(c)
            self.metrics.set_assigned(len(self.assignment))
            self.health.set_assigned(len(self.assignment))
        else:
            c.subscribe(topics=list(self.topics), listener=self.listener)
        return c

    # -- one loop turn -------------------------------------------------------------------------
    def _step(self):
        c = self.consumer
        want_pause = self.stop_polling.is_set() or self._held is not None
        if want_pause and not self._paused:
            parts = c.assignment()
            if parts:
                c.pause(*parts)
            self._paused = True
            self.metrics.set_paused(len(parts))
        elif not want_pause and self._paused:
            parts = [tp for tp in c.paused() if tp not in self.reached_end]
            if parts:
                c.resume(*parts)
            self._paused = False
            self.metrics.set_paused(0)

        t0 = time.monotonic()
        joining = self._unassigned_since is not None     # owned nothing after the last poll
        timeout = 50 if self._held else JOIN_POLL_TIMEOUT_MS if joining else POLL_TIMEOUT_MS
        result = c.poll(timeout_ms=timeout)
        self._after_rebalance()
        if self.assignment is None:
            self._watch_unassigned(bool(c.assignment()))
        if self._paused and c.assignment():
            # partitions assigned while paused arrive unpaused: keep them paused
            c.pause(*c.assignment())
        if result:
            if self.stop_polling.is_set():
                result = {}        # never hand on records after we decided to stop (not consumed)
            for tp in list(result):
                recs = drop_already_read(result[tp], self.next_offset.get(tp))
                if self.end_offsets is not None:
                    recs = self._trim_to_end(c, tp, recs)
                if recs:
                    result[tp] = recs
                    self.next_offset[tp] = recs[-1].offset + 1
                else:
                    del result[tp]
        if result:
            self.metrics.observe_poll(result, time.monotonic() - t0)
            n = sum(len(r) for r in result.values())
            self.accounting.consumed(n)
            self._hand_on(result)
        elif self._held is not None:
            self._hand_on(None)
        self._commit()
        self._refresh_end_offsets()

    def _watch_unassigned(self, owned: bool) -> None:
        """kafka-python 3.0 can lose the assignment of a join that completes just as a poll
        times out: the member then sits in the group with no partition and never rejoins.
        When we own nothing for a while, ask the coordinator for a new join. A member that
        is idle on purpose (more members than partitions) pays one extra rebalance per
        interval, and the interval doubles up to 10 minutes."""
        now = time.monotonic()
        if owned:
            self._unassigned_since = None
            self._rejoin_after = UNASSIGNED_REJOIN_S
            return
        if self._unassigned_since is None:
            self._unassigned_since = now
            return
        if now - self._unassigned_since < self._rejoin_after:
            return
        coordinator = getattr(self.consumer, "_coordinator", None)
        if coordinator is None or not hasattr(coordinator, "request_rejoin"):
            return
        log.info("no partition assigned for %.0fs: asking the group coordinator to rejoin",
                 now - self._unassigned_since)
        coordinator.request_rejoin()
        self._unassigned_since = now
        self._rejoin_after = min(self._rejoin_after * 2, UNASSIGNED_REJOIN_MAX_S)

    def _trim_to_end(self, c, tp, recs):
        """Replay: never hand on a record at or past the end fixed at start; pause when done."""
        end = self.end_offsets.get(tp)
        if end is None:
            return recs
        if recs and recs[-1].offset >= end - 1:
            recs = [r for r in recs if r.offset < end]
            self.reached_end.add(tp)
            c.pause(tp)
        return recs

    def _check_ends(self, c):
        """Partitions whose range is empty are done before the first poll."""
        for tp in self.assignment:
            start = self.start_offsets.get(tp)
            end = (self.end_offsets or {}).get(tp)
            if start is not None and end is not None and start >= end:
                self.reached_end.add(tp)
                c.pause(tp)

    def _hand_on(self, result):
        if self._held is not None:
            try:
                self.out.put_nowait(self._held)
                self._held = None
            except queue.Full:
                pass
        if result:
            if self._held is None:
                try:
                    self.out.put_nowait(result)
                    return
                except queue.Full:
                    pass
                self._held = result
            else:
                # cannot happen: partitions are paused while a result is held; merge to be safe
                for tp, recs in result.items():
                    self._held.setdefault(tp, []).extend(recs)
        self.metrics.set_queue_depth("polled", self.out.qsize())

    def _after_rebalance(self):
        revoked, assigned = self.listener.take()
        if not revoked and assigned is None:
            return
        current = set(self.consumer.assignment())
        lost = {tp for tp in revoked if tp not in current}
        if lost:
            keys = {(tp.topic, tp.partition) for tp in lost}
            self.tracker.revoke(keys)
            for tp in lost:
                self.next_offset.pop(tp, None)
                self._group_committed.pop((tp.topic, tp.partition), None)
            if self.on_revoke:
                self.on_revoke(keys)
        self.metrics.observe_rebalance(revoked=len(revoked), assigned=len(current), lost=len(lost))
        self.health.set_assigned(len(current))
        self._read_group_offsets(current)
        self._last_end_offsets = 0.0       # new partitions: refresh their end offsets (lag) now
        log.info("rebalance: %d partitions assigned, %d moved away", len(current), len(lost))

    # -- commits -------------------------------------------------------------------------------
    def _commit(self, force: bool = False):
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_INTERVAL_S:
            return
        self._last_commit = now
        positions = self.tracker.committable()
        if not positions:
            return
        owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()} \
            if self.assignment is None else None
        offsets = {}
        for (topic, partition), off in positions.items():
            if owned is not None and (topic, partition) not in owned:
                continue
            offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(off, f"sinker {__version__}", -1)
        if not offsets:
            return
        if self.assignment is not None:
            # replay: no group commits; positions are only progress
            self.tracker.mark_committed(positions)
            self.committed.update(positions)
            return
        t0 = time.monotonic()
        try:
            self.consumer.commit(offsets, timeout_ms=10_000)
        except Exception as e:  # noqa: BLE001 - a failed commit is retried on the next turn
            self.metrics.observe_commit(positions, time.monotonic() - t0, ok=False)
            log.warning("offset commit failed (will retry): %s", e)
            return
        done = {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()}
        self.tracker.mark_committed(done)
        self.committed.update(done)
        self.metrics.observe_commit(done, time.monotonic() - t0, ok=True)
        self.health.progress()
        self._publish_lag()

    def _refresh_end_offsets(self):
        now = time.monotonic()
        if now - self._last_end_offsets < END_OFFSETS_INTERVAL_S:
            return
        self._last_end_offsets = now
        parts = list(self.consumer.assignment())
        if not parts:
            if self._ends:
                self._ends = {}
                self.metrics.set_end_offsets({})   # no partitions: drop their gauges
            self.health.set_lag(0)
            return
        try:
            ends = self.consumer.end_offsets(parts, timeout_ms=5000)
        except Exception as e:  # noqa: BLE001 - metrics only
            log.debug("end offsets: %s", e)
            return
        self._ends = {(tp.topic, tp.partition): end for tp, end in ends.items()}
        self.metrics.set_end_offsets(self._ends)
        self._publish_lag()

    def _publish_lag(self):
        """Readiness lag: end - committed per partition. Where no commit is known (a new group),
        what was read but is not yet in Doris (accounting's pending) stands in for it."""
        lag, unknown = 0, False
        for key, end in self._ends.items():
            ours, group = self.committed.get(key), self._group_committed.get(key)
            done = group if ours is None else ours if group is None else max(ours, group)
            if done is None:
                unknown = True
                done = self.next_offset.get(TopicPartition(*key), end)
            lag += max(0, end - done)
        if unknown:
            lag += max(0, self.accounting.snapshot()["pending"])
        self.health.set_lag(lag)

    def _read_group_offsets(self, parts):
        """The group's committed offsets of newly assigned partitions, so lag and the committed
        offset gauges exist before this process commits anything (metrics only)."""
        if self.assignment is not None:
            return
        known = {}
        for tp in parts:
            key = (tp.topic, tp.partition)
            if key in self._group_committed:
                continue
            try:
                off = self.consumer.committed(tp, timeout_ms=5000)
            except Exception as e:  # noqa: BLE001 - metrics only
                log.debug("committed offset of %s: %s", tp, e)
                return
            if off is not None:
                known[key] = self._group_committed[key] = off
        if known:
            self.metrics.set_committed(known)
