"""The consumer thread: the only code that touches the Kafka client (it is not thread-safe).

It polls whole batches of records, hands each poll result to the batcher through a bounded queue,
pauses every assigned partition while that queue is full (and keeps polling so the group keeps
us), and commits the offsets the OffsetTracker releases: ``last + 1`` of a contiguous prefix of
batches that Doris confirmed. Rebalance events are recorded by lib/kafka_client.py on the
client's I/O thread; this thread acts on them after ``poll()`` returns.

For ``sinker replay`` it reads fixed partitions instead of joining the group: a ``bounds`` object
owned by lib/commands/replay.py says where each partition starts and ends, and nothing is
committed to Kafka.
"""
from __future__ import annotations

import logging
import queue
import threading
import time

from . import __version__
from .config import KafkaConfig
from .kafka_client import KafkaReader, TopicPartition, check_crc32c

log = logging.getLogger("sinker.consumer")

COMMIT_INTERVAL_S = 1.0        # commits are cheap but not free; batches confirm every few seconds
END_OFFSETS_INTERVAL_S = 15.0  # lag metrics refresh
POLL_TIMEOUT_MS = 200
JOIN_POLL_TIMEOUT_MS = 1000    # while we own no partition: a short poll can cut a group join short
UNASSIGNED_REJOIN_S = 15.0     # no partition this long in a stable group: ask to rejoin (doubling)
UNASSIGNED_REJOIN_MAX_S = 600.0


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

    def __init__(self, cfg: KafkaConfig, out: queue.Queue, tracker, obs, shutdown, *,
                 bounds=None, reader_factory=KafkaReader):
        super().__init__(name="consumer", daemon=True)
        self.cfg = cfg
        self.out = out
        self.tracker = tracker
        self.obs = obs
        self.shutdown = shutdown           # lifecycle.Shutdown: draining = hand on nothing more
        self.bounds = bounds               # replay: fixed partitions and offset ranges, no group
        self.reader_factory = reader_factory
        self.next_offset: dict = {}        # TopicPartition -> offset after the last record handed on
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.reader: KafkaReader | None = None
        self._held = None                  # a poll result waiting for room in the queue
        self._unassigned_since: float | None = None   # see _watch_unassigned
        self._rejoin_after = UNASSIGNED_REJOIN_S
        self._paused = False
        self._last_commit = 0.0
        self._last_end_offsets = 0.0
        self.committed: dict = {}          # (topic, partition) -> last committed offset
        self._group_committed: dict = {}   # (topic, partition) -> the group's offset when assigned (lag)
        self._ends: dict = {}              # (topic, partition) -> end offset at the last refresh (lag)

    # -- what the pipeline may ask (from its own thread) ----------------------------------------
    def holding(self) -> bool:
        """A poll result is waiting for room in the queue."""
        return self._held is not None

    def read_everything(self) -> bool:
        """Replay: every partition reached its end and nothing waits to be handed on."""
        return (self.bounds is not None and self.ready.is_set() and self.bounds.finished()
                and self._held is None)

    # -- lifecycle -----------------------------------------------------------------------------
    def run(self):
        try:
            self.reader = self._connect()
            self.ready.set()
            while not self.shutdown.finishing:
                self._step()
            self._commit(force=True)
        except BaseException as e:  # noqa: BLE001 - handed to the pipeline, which decides the exit
            self.error = e
            log.error("consumer stopped: %s", e)
        finally:
            self.ready.set()
            if self.reader is not None:
                try:
                    self.reader.close()
                except Exception as e:  # noqa: BLE001
                    log.warning("closing the Kafka consumer: %s", e)

    def _connect(self) -> KafkaReader:
        check_crc32c()
        r = self.reader_factory(self.cfg, group=self.bounds is None)
        if self.bounds is None:
            r.subscribe(self.cfg.topics)
            return r
        r.assign(self.bounds.partitions)
        for tp, off in self.bounds.start.items():
            r.seek(tp, off)
        r.pause(*[tp for tp in self.bounds.partitions if self.bounds.is_done(tp)])
        self.obs.metrics.set_assigned(len(self.bounds.partitions))
        self.obs.health.set_assigned(len(self.bounds.partitions))
        return r

    # -- one loop turn -------------------------------------------------------------------------
    def _step(self):
        r = self.reader
        draining = self.shutdown.draining
        want_pause = draining or self._held is not None
        if want_pause and not self._paused:
            parts = r.assignment()
            r.pause(*parts)
            self._paused = True
            self.obs.metrics.set_paused(len(parts))
        elif not want_pause and self._paused:
            done = self.bounds.is_done if self.bounds is not None else (lambda tp: False)
            r.resume(*[tp for tp in r.paused() if not done(tp)])
            self._paused = False
            self.obs.metrics.set_paused(0)

        t0 = time.monotonic()
        joining = self._unassigned_since is not None     # owned nothing after the last poll
        timeout = 50 if self._held else JOIN_POLL_TIMEOUT_MS if joining else POLL_TIMEOUT_MS
        result = r.poll(timeout_ms=timeout)
        self._after_rebalance()
        if self.bounds is None:
            self._watch_unassigned(bool(r.assignment()))
        if self._paused and r.assignment():
            # partitions assigned while paused arrive unpaused: keep them paused
            r.pause(*r.assignment())
        if result:
            if draining:
                result = {}        # never hand on records after we decided to stop (not consumed)
            for tp in list(result):
                recs = drop_already_read(result[tp], self.next_offset.get(tp))
                if self.bounds is not None:
                    recs = self.bounds.trim(tp, recs)
                if recs:
                    result[tp] = recs
                    self.next_offset[tp] = recs[-1].offset + 1
                else:
                    del result[tp]
        if self.bounds is not None:
            self._check_ends()
        if result:
            self.obs.metrics.observe_poll(result, time.monotonic() - t0)
            self.obs.accounting.consumed({(tp.topic, tp.partition): len(x) for tp, x in result.items()})
            self._hand_on(result)
        elif self._held is not None:
            self._hand_on(None)
        self._commit()
        self._refresh_end_offsets()

    def _check_ends(self):
        """Replay: a partition is done when its position reached the end fixed at start (a
        control record or a compacted gap before the end never shows up as a record)."""
        for tp in self.bounds.partitions:
            if not self.bounds.is_done(tp) and self.bounds.reached(tp, self.reader.position(tp)):
                self.reader.pause(tp)

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
        if not self.reader.request_rejoin():
            return
        log.info("no partition assigned for %.0fs: asked the group coordinator to rejoin",
                 now - self._unassigned_since)
        self._unassigned_since = now
        self._rejoin_after = min(self._rejoin_after * 2, UNASSIGNED_REJOIN_MAX_S)

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

    def _after_rebalance(self):
        revoked, assigned = self.reader.take_rebalance()
        if not revoked and assigned is None:
            return
        current = set(self.reader.assignment())
        lost = {tp for tp in revoked if tp not in current}
        if lost:
            self.tracker.revoke({(tp.topic, tp.partition) for tp in lost})
            for tp in lost:
                self.next_offset.pop(tp, None)
                self._group_committed.pop((tp.topic, tp.partition), None)
        self.obs.metrics.observe_rebalance(revoked=len(revoked), assigned=len(current), lost=len(lost))
        self.obs.health.set_assigned(len(current))
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
        if self.bounds is not None:
            # replay: no group commits; positions are only progress
            self.tracker.mark_committed(positions)
            self.committed.update(positions)
            return
        owned = {(tp.topic, tp.partition) for tp in self.reader.assignment()}
        offsets = {TopicPartition(*key): off for key, off in positions.items() if key in owned}
        if not offsets:
            return
        t0 = time.monotonic()
        try:
            self.reader.commit(offsets, f"sinker {__version__}")
        except Exception as e:  # noqa: BLE001 - a failed commit is retried on the next turn
            self.obs.metrics.observe_commit(positions, time.monotonic() - t0, ok=False)
            log.warning("offset commit failed (will retry): %s", e)
            return
        done = {(tp.topic, tp.partition): off for tp, off in offsets.items()}
        self.tracker.mark_committed(done)
        self.committed.update(done)
        self.obs.metrics.observe_commit(done, time.monotonic() - t0, ok=True)
        self.obs.health.progress()
        self._publish_lag()

    def _refresh_end_offsets(self):
        now = time.monotonic()
        if now - self._last_end_offsets < END_OFFSETS_INTERVAL_S:
            return
        self._last_end_offsets = now
        parts = list(self.reader.assignment())
        if not parts:
            if self._ends:
                self._ends = {}
                self.obs.metrics.set_end_offsets({})   # no partitions: drop their gauges
            self.obs.health.set_lag(0)
            return
        try:
            ends = self.reader.end_offsets(parts, timeout_ms=5000)
        except Exception as e:  # noqa: BLE001 - metrics only
            log.debug("end offsets: %s", e)
            return
        self._ends = {(tp.topic, tp.partition): end for tp, end in ends.items()}
        self.obs.metrics.set_end_offsets(self._ends)
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
            lag += max(0, self.obs.accounting.snapshot()["pending"])
        self.obs.health.set_lag(lag)

    def _read_group_offsets(self, parts):
        """The group's committed offsets of newly assigned partitions, so lag and the committed
        offset gauges exist before this process commits anything (metrics only)."""
        if self.bounds is not None:
            return
        known = {}
        for tp in parts:
            key = (tp.topic, tp.partition)
            if key in self._group_committed:
                continue
            try:
                off = self.reader.committed(tp, timeout_ms=5000)
            except Exception as e:  # noqa: BLE001 - metrics only
                log.debug("committed offset of %s: %s", tp, e)
                return
            if off is not None:
                known[key] = self._group_committed[key] = off
        if known:
            self.obs.metrics.set_committed(known)
