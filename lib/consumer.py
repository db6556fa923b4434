"""The consumer thread: the only code that touches the Kafka client (it is not thread-safe).

It polls whole batches of records, hands each poll result to the batcher through a bounded queue,
pauses every assigned partition while that queue is full (and keeps polling so the group keeps
us), and commits the offsets the OffsetTracker releases: ``last + 1`` of a contiguous prefix of
batches that Doris confirmed. Rebalance events are recorded by the reader (kafka-python: on its
I/O thread; confluent-kafka: inside ``poll()``); this thread acts on them after ``poll()``
returns.

For ``sinker replay`` it reads fixed partitions instead of joining the group: a ``bounds`` object
owned by lib/commands/replay.py says where each partition starts and ends, and nothing is
committed to Kafka.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque

from . import commit_metadata
from .batcher import Finished, Rebalanced
from .config import KafkaConfig
from .kafka_client import (KafkaReader, TopicPartition, check_crc32c, open_reader,
                           subscribed_topics, topic_patterns)
from .records import fields

log = logging.getLogger("sinker.consumer")

COMMIT_INTERVAL_S = 1.0        # commits are cheap but not free; batches confirm every few seconds
END_OFFSETS_INTERVAL_S = 15.0  # lag metrics refresh
PARTITION_WATCH_S = 10.0       # how often the topics' partition counts are read from the brokers
END_OFFSETS_SOON_S = 2.0       # ... and sooner once a commit passed the known end, at most this often
POLL_TIMEOUT_MS = 200
# exactly-once: a batch sealed while a poll waits is loaded only after the next commit records its
# cut, so while the batcher holds open batches polls wait at most this long
SHORT_POLL_TIMEOUT_MS = 50
JOIN_POLL_TIMEOUT_MS = 1000    # while we own no partition: a short poll can cut a group join short
UNASSIGNED_REJOIN_S = 15.0     # no partition (or no assignment after a revoke) this long: rejoin (doubling)
UNASSIGNED_REJOIN_MAX_S = 600.0
# a full queue first waits this long for the batcher before reading pauses: librdkafka drops what
# it prefetched for a partition it pauses and fetches it again after the resume (a queue of 4
# poll results, paused at once when full, read small json at a third of the speed)
HAND_ON_WAIT_S = 0.2
BROKER_DOWN_AFTER_S = 10.0     # no broker connection (or no coordinator) this long: say so, not ready
POSITION_RETRY_S = 2.0         # assigned partitions whose committed offset could not be read: ask again


class ConsumerThread(threading.Thread):
    """Poll → queue; pause when the queue is full; commit what the tracker releases."""

    def __init__(self, cfg: KafkaConfig, out: queue.Queue, tracker, obs, shutdown, *,
                 bounds=None, record_cuts: bool = False, reader_factory=open_reader,
                 budget=None, batches_open=None):
        super().__init__(name="consumer", daemon=True)
        self.cfg = cfg
        self.out = out
        self.tracker = tracker
        self.obs = obs
        self.shutdown = shutdown           # lifecycle.Shutdown: draining = hand on nothing more
        self.bounds = bounds               # replay: fixed partitions and offset ranges, no group
        self.record_cuts = record_cuts     # exactly-once: batch cuts go into the commit metadata
        self.batches_open = batches_open or (lambda: False)   # the batcher's, read from here
        self.reader_factory = reader_factory
        # lib/budget.py: over it, partitions pause (not in replay: its batches wait for their
        # chunks' records and are bounded by batch.max_bytes per partition instead)
        self.budget = budget if bounds is None else None
        self._budget_paused: set = set()
        self._must_read: dict = {}         # TopicPartition -> last offset of a recorded cut to complete
        self.next_offset: dict = {}        # TopicPartition -> offset after the last record handed on
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.reader: KafkaReader | None = None
        self._items: deque = deque()       # poll results and Rebalanced items waiting for room
        self.polled_at = 0.0               # monotonic time the last loop turn's poll was handled
        self._partition_counts: dict = {}  # topic -> partitions when the group last assigned
        self._topics_at_start: set | None = None   # start_from latest + topics_pattern: matches at start
        self._last_partition_watch = time.monotonic()
        self._unassigned_since: float | None = None   # see _watch_unassigned
        self._awaiting_assignment = False  # partitions were revoked and no assignment followed yet
        self._rejoin_after = UNASSIGNED_REJOIN_S
        self._paused = False
        self._last_commit = 0.0
        self._last_end_offsets = 0.0
        self._ends_stale = False           # a commit passed the end known at the last refresh
        self.committed: dict = {}          # (topic, partition) -> last committed offset
        self._group_committed: dict = {}   # (topic, partition) -> the group's offset when assigned (lag)
        self._ends: dict = {}              # (topic, partition) -> end offset at the last refresh (lag)
        self._unreachable_since: float | None = None   # see _watch_broker
        self._reported_down = False
        self._unpositioned: set = set()    # assigned, but where they start is not known yet
        self._position_retry_at = 0.0

    # -- what the pipeline may ask (from its own thread) ----------------------------------------
    def holding(self) -> bool:
        """Something is waiting for room in the queue."""
        return bool(self._items)

    def read_everything(self) -> bool:
        """Replay: every partition reached its end and nothing waits to be handed on."""
        return (self.bounds is not None and self.ready.is_set() and self.bounds.finished()
                and not self._items)

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
        check_crc32c(self.cfg)
        r = self.reader_factory(self.cfg, group=self.bounds is None)
        if self.bounds is None:
            if self.cfg.topics_pattern and self.cfg.start_from == "latest":
                # latest skips the history of the topics that exist now, never of topics the
                # pattern matches later (see _start_uncommitted)
                self._topics_at_start = set(subscribed_topics(self.cfg, r.topics()))
            r.subscribe(self.cfg.topics, before_revoke=self._commit_before_revoke,
                        patterns=topic_patterns(self.cfg))
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
        want_pause = draining or bool(self._items)
        if want_pause and not self._paused:
            parts = r.assignment()
            r.pause(*parts)
            self._paused = True
            self.obs.metrics.set_paused(len(parts))
        elif not want_pause and self._paused:
            done = self.bounds.is_done if self.bounds is not None else (lambda tp: False)
            r.resume(*[tp for tp in r.paused() if not done(tp) and tp not in self._unpositioned
                       and tp not in self._budget_paused])
            self._paused = False
            self.obs.metrics.set_paused(len(self._budget_paused))
        if self.budget is not None:
            self._apply_budget(r)

        t0 = time.monotonic()
        # owned nothing after the last poll: a join is under way, and nothing of ours can be
        # committed meanwhile
        joining = self._unassigned_since is not None or self._awaiting_assignment
        soon = self._items or self.tracker.has_unrecorded() or \
            (self.record_cuts and self.batches_open())
        timeout = (JOIN_POLL_TIMEOUT_MS if joining else
                   SHORT_POLL_TIMEOUT_MS if soon else POLL_TIMEOUT_MS)
        result = r.poll(timeout_ms=timeout)
        starts = self._after_rebalance()
        if (starts or self._unpositioned) and result:
            # fetched before the assigned partitions were positioned where they start for us
            # (the client may keep a partition's old position, or reset it its own way): the
            # next polls read them again from there
            for tp in [tp for tp in result
                       if (tp.topic, tp.partition) in starts or tp in self._unpositioned]:
                del result[tp]
        if self.bounds is None:
            self._watch_unassigned(bool(r.assignment()) and not self._awaiting_assignment)
        if self._paused and r.assignment():
            # partitions assigned while paused arrive unpaused: keep them paused
            r.pause(*r.assignment())
        if result:
            if draining:
                result = {}        # never hand on records after we decided to stop (not consumed)
            for tp in list(result):
                recs = result[tp]
                if self.bounds is not None:
                    recs = self.bounds.trim(tp, recs)
                if recs:
                    result[tp] = recs
                    last = fields(recs[-1]).offset(recs[-1])
                    self.next_offset[tp] = last + 1
                    if tp in self._must_read and last >= self._must_read[tp]:
                        del self._must_read[tp]
                else:
                    del result[tp]
        # replay: a partition is done once its position reached the end — never while draining,
        # when the position may have passed records this turn dropped
        finished = self._check_ends() if self.bounds is not None and not draining else ()
        if result:
            nbytes = self.obs.metrics.observe_poll(result, time.monotonic() - t0)
            counts = {(tp.topic, tp.partition): len(x) for tp, x in result.items()}
            self.obs.accounting.consumed(counts)
            if self.budget is not None:
                result = self.budget.hold_polled(result, nbytes, sum(counts.values()))
            self._items.append(result)
            result = None      # counted while alive: the batcher may be done with it this turn
        if finished:
            self._items.append(Finished(frozenset((tp.topic, tp.partition) for tp in finished)))
        self._hand_on()
        self.polled_at = t0                # after the rebalance the poll carried is applied
        self._watch_broker()
        self._commit()
        self._refresh_end_offsets()
        if self.bounds is None:
            self._watch_partitions()

    def _apply_budget(self, r) -> None:
        """Pause reading while batches hold more than the memory budget; loads free it. A
        partition with a batch the previous reader recorded keeps being read up to that batch's
        end: the batch is sealed only there, so pausing it could hold the budget forever."""
        if self.budget.over():
            more = set(r.assignment()) - self._budget_paused - set(self._must_read)
            if more:
                if not self._budget_paused:
                    self.budget.pauses += 1
                if not self._paused:
                    r.pause(*more)
                self._budget_paused |= more
                self.obs.metrics.set_paused(len(self._budget_paused))
        elif self._budget_paused:
            if not self._paused:
                r.resume(*[tp for tp in self._budget_paused & set(r.assignment())
                           if tp not in self._unpositioned])
            self._budget_paused = set()
            self.obs.metrics.set_paused(len(r.paused()) if self._paused else 0)

    def _commit_before_revoke(self, revoked) -> None:
        """confluent-kafka runs a revoke inside poll(), on this thread, while the partitions are
        still ours: commit what Doris confirmed now. Without it a member leaving during our
        drain (a clean stop of the other worker) fences our last confirmed batches uncommitted."""
        self._commit(force=True)

    def _watch_broker(self) -> None:
        """One log line when no broker has answered for BROKER_DOWN_AFTER_S, one when a broker
        is back, and readiness in between. Nothing stops: kafka-python reconnects by itself and
        the loop goes on polling; commits that fail meanwhile are retried."""
        now = time.monotonic()
        if self.reader.broker_reachable():
            self._unreachable_since = None
            if self._reported_down:
                self._reported_down = False
                self.obs.health.kafka_ok()
                log.info("Kafka is back: a broker answers again; loading resumes")
            return
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif not self._reported_down and now - self._unreachable_since >= BROKER_DOWN_AFTER_S:
            self._reported_down = True
            why = (f"no broker of {', '.join(self.cfg.brokers)} has answered for "
                   f"{now - self._unreachable_since:.0f}s")
            self.obs.health.kafka_down(why)
            log.warning("Kafka: %s; waiting for one to come back (nothing is lost: what was not "
                        "committed is read again)", why)

    def _check_ends(self) -> list:
        """Replay: a partition is done when its position reached the end fixed at start (a
        control record or a compacted gap before the end never shows up as a record). Returns
        the partitions done now."""
        done = []
        for tp in self.bounds.partitions:
            if not self.bounds.is_done(tp) and self.bounds.reached(tp, self.reader.position(tp)):
                self.reader.pause(tp)
                done.append(tp)
        return done

    def _watch_unassigned(self, owned: bool) -> None:
        """kafka-python 3.0 can lose the assignment of a join that completes just as a poll
        times out: the member then sits with no partition (or, after a revoke, with the old
        ones still listed, no assignment applied and no heartbeat: seen under 50 ms polls)
        and never rejoins.
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
        stalled = " (a rebalance revoked ours and never completed)" if self._awaiting_assignment else ""
        log.info("no partition assigned for %.0fs%s: asked the group coordinator to rejoin",
                 now - self._unassigned_since, stalled)
        self._unassigned_since = now
        self._rejoin_after = min(self._rejoin_after * 2, UNASSIGNED_REJOIN_MAX_S)

    def _hand_on(self):
        """In order, as long as the queue takes them within HAND_ON_WAIT_S (the batcher takes a
        poll result every few ms while it keeps up): partitions stay paused while anything waits."""
        deadline = time.monotonic() + HAND_ON_WAIT_S
        while self._items:
            try:
                self.out.put(self._items[0], timeout=max(0.0, deadline - time.monotonic()))
            except queue.Full:
                return
            self._items.popleft()

    def _after_rebalance(self) -> dict:
        """Apply a rebalance the last poll carried; returns where the assigned partitions start."""
        revoked, assigned = self.reader.take_rebalance()
        if not revoked and assigned is None:
            return self._retry_positions()
        self._awaiting_assignment = assigned is None
        current = set(self.reader.assignment())
        gone = {(tp.topic, tp.partition) for tp in revoked}
        # Nothing is committed for a revoked partition from now on, and what this process still
        # holds of it is forgotten (the batcher drops its open batch when the Rebalanced item
        # reaches it): whoever owns it now reads it again from the group's commit.
        self.tracker.fence(gone)
        self._drop_waiting(gone)
        for tp in revoked:
            self.next_offset.pop(tp, None)
            self._must_read.pop(tp, None)
            self._budget_paused.discard(tp)
            self._group_committed.pop((tp.topic, tp.partition), None)
        self._unpositioned -= set(revoked)
        starts = self._position(sorted(assigned or ()))
        self._partition_counts = {t: len(self.reader.partitions_for_topic(t) or ())
                                  for t in self._watched_topics()}
        self._items.append(Rebalanced(frozenset(gone), starts))
        lost = {tp for tp in revoked if tp not in current}
        self.obs.metrics.observe_rebalance(revoked=len(revoked), assigned=len(current), lost=len(lost))
        self.obs.health.set_assigned(len(current))
        self._note_starts(starts)
        log.info("rebalance: %d partitions assigned, %d revoked (%d moved away)", len(current),
                 len(revoked), len(lost))
        return starts

    def _note_starts(self, starts: dict) -> None:
        for (topic, partition), (_off, cuts) in starts.items():
            if cuts:
                self._must_read[TopicPartition(topic, partition)] = cuts[-1][1]
        known = {k: off for k, (off, _cuts) in starts.items() if off is not None}
        self._group_committed.update(known)
        if known:
            self.obs.metrics.set_committed(known)
        self._last_end_offsets = 0.0       # new partitions: refresh their end offsets (lag) now

    def _position(self, parts) -> dict:
        """``_starts`` for these partitions, or — when the brokers do not answer (an outage
        during the rebalance) — nothing yet: they stay paused, none of their records is handed
        on and nothing is committed for them until a later turn reads where they start."""
        if not parts:
            return {}
        try:
            starts = self._starts(parts)
        except Exception as e:  # noqa: BLE001 - a broker error; the loop must go on polling
            self._unpositioned |= set(parts)
            self.reader.pause(*parts)
            self._position_retry_at = time.monotonic() + POSITION_RETRY_S
            log.warning("could not read the committed offsets of %d assigned partitions (%s): "
                        "holding them until Kafka answers (nothing of them is read or committed "
                        "meanwhile)", len(parts), e)
            return {}
        self._unpositioned -= set(parts)
        return starts

    def _retry_positions(self) -> dict:
        """Ask again where the partitions held by ``_position`` start; once known, hand on a
        Rebalanced item that assigns them (in queue order, like any rebalance) and read them."""
        if not self._unpositioned or time.monotonic() < self._position_retry_at:
            return {}
        parts = sorted(self._unpositioned & set(self.reader.assignment()))
        self._unpositioned = set(parts)
        starts = self._position(parts)
        if starts:
            self._items.append(Rebalanced(frozenset(), starts))
            self._note_starts(starts)
            if not self._paused:
                self.reader.resume(*parts)
            log.info("the committed offsets of %d held partitions are known now: reading them",
                     len(parts))
        return starts

    def _watch_partitions(self) -> None:
        """Partitions added to a topic must be read within seconds: the client's metadata shows
        them after kafka.metadata_max_age_ms, and it should then rejoin the group, but
        kafka-python was seen not to. Compare the partition counts in that metadata (cached:
        no request, so a broker outage cannot block this thread) with the last assignment's and
        ask for a rejoin when they grew."""
        now = time.monotonic()
        if now - self._last_partition_watch < PARTITION_WATCH_S:
            return
        self._last_partition_watch = now
        try:
            counts = {t: len(self.reader.partitions_for_topic(t) or ())
                      for t in self._watched_topics()}
        except Exception as e:  # noqa: BLE001 - a watch; the next turn tries again
            log.debug("partition watch: %s", e)
            return
        grown = {t: n for t, n in counts.items() if n > self._partition_counts.get(t, n)}
        if grown and self.reader.request_rejoin():
            log.info("partitions were added (%s): asked the group to rebalance",
                     ", ".join(f"{t} now has {n}" for t, n in sorted(grown.items())))
        self._partition_counts.update(grown)

    def _drop_waiting(self, gone: set) -> None:
        dropped, kept = 0, deque()
        for item in self._items:
            if isinstance(item, dict):
                for tp in [tp for tp in item if (tp.topic, tp.partition) in gone]:
                    dropped += len(item.pop(tp))
                if not item:
                    continue
            kept.append(item)
        self._items = kept
        if dropped:
            self.obs.accounting.rewound(dropped)

    def _starts(self, parts) -> dict:
        """Where each newly assigned partition starts, positioned there: the group's committed
        offset and the batch cuts recorded with it (also for a partition revoked and given back,
        whose records in flight were dropped: the client would keep its old position). A
        partition without a commit starts at the earliest offset, except in a group that has no
        commit at all when ``start_from`` is latest."""
        starts, uncommitted = {}, []
        for tp in parts:
            key = (tp.topic, tp.partition)
            found = self.reader.committed_with_metadata(tp)
            if found is None:
                uncommitted.append(tp)
                continue
            offset, meta = found
            self.reader.seek(tp, offset)
            try:
                cuts = commit_metadata.decode(meta) if self.record_cuts else []
            except ValueError as e:
                log.warning("partition %s[%d]: %s; its next batches are cut afresh (rows loaded "
                            "before may load again)", tp.topic, tp.partition, e)
                cuts = []
            starts[key] = (offset, cuts)
        if uncommitted:
            starts.update(self._start_uncommitted(uncommitted, first_group=not starts))
        return starts

    def _start_uncommitted(self, parts, first_group: bool) -> dict:
        latest = self.cfg.start_from == "latest" and first_group and not self._group_has_commits()
        if latest:
            # a topic topics_pattern matched only after this process started has no history to
            # skip: everything in it was written while sinker ran
            late = [tp for tp in parts
                    if self._topics_at_start is not None and tp.topic not in self._topics_at_start]
            at_end = [tp for tp in parts if tp not in late]
            if at_end:        # (no partitions would mean every assigned one)
                self.reader.seek_to_end(*at_end)
            if late:
                self.reader.seek_to_beginning(*late)
            positions = {tp: self.reader.position(tp) for tp in parts}
            # make the start points durable: a restart before the first load must not skip again
            # (a late topic existing by then would count as history)
            self.reader.commit({tp: (pos, commit_metadata.encode([])) for tp, pos in positions.items()})
            self.obs.metrics.observe_offset_reset("latest", len(at_end))
            if late:
                self.obs.metrics.observe_offset_reset("earliest", len(late))
            log.info("new consumer group %s: start_from latest, starting %d partitions at their "
                     "end%s", self.cfg.group_id, len(at_end),
                     f" and {len(late)} of topics created since start at their beginning"
                     if late else "")
            return {(tp.topic, tp.partition): (pos, []) for tp, pos in positions.items()}
        self.reader.seek_to_beginning(*parts)
        for tp in parts:
            log.info("partition %s[%d] has no committed offset: reading it from its earliest "
                     "offset", tp.topic, tp.partition)
        self.obs.metrics.observe_offset_reset("earliest", len(parts))
        return {(tp.topic, tp.partition): (None, []) for tp in parts}

    def _group_has_commits(self) -> bool:
        """Does any partition of the subscribed topics (with topics_pattern: every topic it
        matches now, also those assigned to other members) have a commit in this group?"""
        topics = (subscribed_topics(self.cfg, self.reader.topics()) if self.cfg.topics_pattern
                  else self.cfg.topics)
        for topic in topics:
            for p in sorted(self.reader.partitions_for_topic(topic) or ()):
                if self.reader.committed(TopicPartition(topic, p)) is not None:
                    return True
        return False

    def _watched_topics(self) -> set:
        """The topics whose partition counts _watch_partitions compares: kafka.topics and the
        topics of our assignment (every topic a pattern matched has a partition 0, assigned to
        some member, which watches it)."""
        return set(self.cfg.topics) | {tp.topic for tp in self.reader.assignment()}

    # -- commits -------------------------------------------------------------------------------
    def _commit(self, force: bool = False):
        """Commit released offsets every COMMIT_INTERVAL_S, and at once when sealed batches wait
        for their cuts to be recorded (exactly-once: a batch is loaded only after that)."""
        now = time.monotonic()
        due = force or now - self._last_commit >= COMMIT_INTERVAL_S
        if not due and not self.tracker.has_unrecorded():
            return
        if self.bounds is not None:
            # replay: no group commits; positions are only progress
            self._last_commit = now
            positions = self.tracker.committable()
            self.tracker.mark_committed(positions)
            self.committed.update(positions)
            return
        parts = self.reader.assignment()
        owned = {(tp.topic, tp.partition) for tp in parts}
        # draining drops what polls return: never skip it. While partitions are held without a
        # position, kafka-python's position() of ANY partition first tries to fetch theirs (up
        # to its timeout each): skip, or a loop turn could outlast max_poll_interval_ms
        if due and not self.shutdown.draining and not self._unpositioned:
            self._advance_idle(parts)
        plan, recorded = self.tracker.commit_plan(owned)
        if not plan or (not due and not recorded):
            return
        self._last_commit = now
        offsets = {}
        for key, (off, cuts) in plan.items():
            try:
                offsets[TopicPartition(*key)] = (off, commit_metadata.encode(
                    cuts if self.record_cuts else []))
            except ValueError as e:
                # too many batches of this partition wait: record none of them until the
                # earlier ones are confirmed (their writers wait; the queues fill; polling
                # pauses) -- a commit that dropped a cut could let a loaded batch load again
                log.warning("partition %s[%d]: %s; waiting for loads to finish", key[0], key[1], e)
                recorded = {seq for seq in recorded if not self.tracker.covers(seq, key)}
        if not offsets:
            return
        positions = {(tp.topic, tp.partition): off for tp, (off, _m) in offsets.items()}
        t0 = time.monotonic()
        try:
            self.reader.commit(offsets)
        except Exception as e:  # noqa: BLE001 - a failed commit is retried on the next turn
            self.obs.metrics.observe_commit(positions, time.monotonic() - t0, ok=False)
            # while no broker answers, _watch_broker's one line says why commits fail
            log.log(logging.DEBUG if self._unreachable_since is not None else logging.WARNING,
                    "offset commit failed (will retry): %s", e)
            return
        self.tracker.mark_committed(positions, recorded)
        self.committed.update(positions)
        if recorded:
            self.obs.metrics.observe_cuts_recorded(len(recorded))
        self.obs.metrics.observe_commit(positions, time.monotonic() - t0, ok=True)
        self.obs.health.progress()
        if any(off > self._ends.get(key, off) for key, off in positions.items()):
            self._ends_stale = True         # committed past the known end: lag would read 0
        self._publish_lag()

    def _advance_idle(self, parts) -> None:
        for tp in parts:
            try:
                position = self.reader.position(tp, timeout_ms=1000)
            except Exception:  # noqa: BLE001 - not known yet: next turn
                continue
            if position is not None:
                self.tracker.advance_idle((tp.topic, tp.partition), self.next_offset.get(tp), position)

    def _refresh_end_offsets(self):
        now = time.monotonic()
        since = now - self._last_end_offsets
        if since < END_OFFSETS_INTERVAL_S and not (self._ends_stale and since >= END_OFFSETS_SOON_S):
            return
        self._last_end_offsets = now
        self._ends_stale = False
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
