"""The batcher thread: maps whole poll results to rows and seals one batch per table.

In ``run`` a batch is sealed when it reaches ``max_rows`` or ``max_bytes`` (checked after each
partition's records of a poll result, so it may overshoot by at most one partition slice), when
its oldest row is ``max_interval_s`` old, on shutdown, when the Doris schema changed, or when open
batches hold half the memory budget while reading is paused over it; replay cuts at aligned
offsets instead. Sealing fixes the label, from the offset ranges the batch covers,
and registers the batch with the OffsetTracker, in order.
"""
from __future__ import annotations

import bisect
import gc
import logging
import queue
import threading
import time
from collections import deque
from typing import NamedTuple

from . import labels
from .config import BatchConfig
from .budget import LINE_OVERHEAD
from .records import Each, fields, keep

log = logging.getLogger("sinker.batcher")

# Young-generation size for CPython's cyclic GC while a pipeline runs (see tune_gc).
GC_THRESHOLDS = (50_000, 20, 10)

SEAL_ALL = "seal-all"     # control item: seal every open batch now (the benchmark, at its end)
STOP = "stop"             # control item: seal, hand on, and end the thread


class Finished(NamedTuple):
    """Control item from the consumer (replay): these partitions reached their end, and every
    record of theirs below it was handed on before this item."""
    keys: frozenset           # (topic, partition)


class Rebalanced(NamedTuple):
    """Control item from the consumer, in queue order between the records of the old assignment
    and those of the new one: what was revoked, and where each assigned partition starts
    (the group's committed offset or None, and the cuts recorded in its commit metadata)."""
    revoked: frozenset
    assigned: dict            # (topic, partition) -> (offset | None, [(first, last), ...])


class Batch:
    """One Stream Load's worth of rows; the unit of retry, labelling and offset confirmation."""
    __slots__ = ("seq", "db", "table", "label", "lines", "nbytes", "rows", "ranges", "dead",
                 "sources", "opened_at", "sealed_at", "reason", "headers", "mapper", "first_ts",
                 "needs_record", "held", "budget", "skipped", "target", "__weakref__")

    def __init__(self, db: str, table: str, mapper, opened_at: float, budget=None, target=None):
        self.seq = -1
        self.target = target         # lib/routing.py's Target (None: the one table of the config)
        self.db = db
        self.table = table
        self.label = ""
        self.lines: list[bytes] = []
        self.nbytes = 0
        self.rows = 0
        self.ranges: dict[tuple[str, int], tuple[int, int]] = {}
        self.first_ts: dict[tuple[str, int], int] = {}   # Kafka timestamp of each range's first record
        self.dead: list = []
        self.sources: list = []      # per add: a records.Slice (records.Each for resend)
        self.opened_at = opened_at
        self.sealed_at = 0.0
        self.reason = ""
        self.mapper = mapper
        self.headers = mapper.headers()
        self.needs_record = False    # exactly-once: load only once its cuts are in Kafka
        self.held = budget.track(self) if budget is not None else None   # lib/budget.py
        self.budget = budget
        self.skipped = 0             # records that are neither a line nor a dead letter (tombstones)

    @property
    def full_name(self) -> str:
        return f"{self.db}.{self.table}" if self.table else ""

    @property
    def records(self) -> int:
        return sum(map(len, self.sources))

    def add(self, topic: str, partition: int, records: list, each: bool = False) -> None:
        """Map one partition's slice of a poll result into this batch (the hot path); ``each``:
        records of many partitions, in any order (resend), kept one by one."""
        n_lines, n_dead = len(self.lines), len(self.dead)
        n, verbatim = self.mapper.map_slice(records, self.lines, self.dead)
        self.nbytes += n
        self.rows += len(self.lines) - n_lines
        self.skipped += len(records) - (len(self.lines) - n_lines) - (len(self.dead) - n_dead)
        if each:
            kept = Each(records)
        else:
            kept = keep(topic, partition, records, self.lines if verbatim else None, n_lines)
        self.sources.append(kept)
        if self.budget is not None:
            if verbatim:
                self.budget.add(self.held, n, len(records), 0, LINE_OVERHEAD)
            else:
                self.budget.add(self.held, n + sum(map(len, filter(None, kept.values))),
                                len(records), len(self.dead) - n_dead)
        key = (topic, partition)
        f = fields(records[0])
        first = self.ranges.get(key)
        if first is None:
            self.first_ts[key] = f.timestamp(records[0])
            self.ranges[key] = (f.offset(records[0]), f.offset(records[-1]))
        else:
            self.ranges[key] = (first[0], f.offset(records[-1]))


def label_salt(batch: Batch) -> str:
    """The first record's timestamp per range: same rows, same salt (so replays re-use labels)."""
    return salt_of(batch.first_ts)


def salt_of(first_ts: dict) -> str:
    return ",".join(f"{t}:{p}:{first_ts[(t, p)]}" for t, p in sorted(first_ts))


def seal_reason(batch: Batch, cfg: BatchConfig, now: float) -> str | None:
    """Pure decision, the one place the thresholds live: should this batch be sealed, and why."""
    if batch.rows >= cfg.max_rows:
        return "rows"
    if batch.nbytes >= cfg.max_bytes:
        return "bytes"
    if batch.sources and now - batch.opened_at >= cfg.max_interval_s:
        return "interval"
    return None


def memory_seals(held: dict, bound: int) -> list:
    """Pure decision: which open batches (key -> bytes the budget counts for them) to seal when
    reading is paused over the memory budget. None while they hold less than ``bound`` together
    (then loads already sealed are what holds the memory, and freeing it resumes reading);
    else the largest first, until what stays open holds less than ``bound``: few, big loads."""
    total = sum(held.values())
    chosen = []
    for key in sorted(held, key=lambda k: -held[k]):
        if total < bound:
            break
        chosen.append(key)
        total -= held[key]
    return chosen


def _held(batch: Batch) -> int:
    return batch.held[0] if batch.held is not None else 0


def batch_factory(db: str, table: str, schema, clock=time.monotonic, budget=None, target=None):
    """New batches map with the schema's current mapper (picked up at every new batch)."""
    return lambda: Batch(db, table, schema.mapper(), clock(), budget, target)


class OneTable:
    """The routing of a config with one table and no field rule: every record to target 0."""

    single = True

    def __init__(self, cfg: BatchConfig):
        self.batch_cfgs = [cfg]

    @staticmethod
    def split(_topic, records):
        return ((0, records),)


class Routed:
    """What the batch cutters need of routing: the split (lib/routing.py's Router), a new batch
    for a target, and each target's batch config (its seal thresholds)."""

    def __init__(self, router, new_batches: list):
        self.split = router.split
        self.single = router.single
        self.new_batches = new_batches          # target index -> callable() -> Batch
        self.batch_cfgs = [t.batch for t in router.targets]


class OpenBatch:
    """At-least-once ``run``: one batch open per table across partitions, sealed by rows, bytes or
    age. With several tables, each open batch ``hold``s the partitions it has records of, so no
    commit passes them while another table's batch covering later offsets is confirmed first."""

    record_cuts = False

    def __init__(self, cfg: BatchConfig, new_batch, routes=None, hold=None):
        self.cfg = cfg
        self.routes = routes or OneTable(cfg)
        self.new_batch = new_batch if routes is None else None
        self.hold = None if self.routes.single else hold     # tracker.hold
        self.open: dict[int, Batch] = {}                     # target index -> its open batch

    def _new(self, t: int) -> Batch:
        return self.new_batch() if self.new_batch is not None else self.routes.new_batches[t]()

    def add(self, poll_result: dict, now: float) -> list[tuple[Batch, str]]:
        sealed = []
        for tp, records in poll_result.items():
            for t, recs in self.routes.split(tp.topic, records):
                b = self.open.get(t)
                if b is None:
                    b = self.open[t] = self._new(t)
                if self.hold is not None and (tp.topic, tp.partition) not in b.ranges:
                    self.hold(b, (tp.topic, tp.partition), fields(recs[0]).offset(recs[0]))
                b.add(tp.topic, tp.partition, recs)
                reason = seal_reason(b, self.routes.batch_cfgs[t], now)
                if reason:
                    sealed.append((self.open.pop(t), reason))
        return sealed

    def due(self, now: float) -> list[tuple[Batch, str]]:
        sealed = []
        for t in list(self.open):
            reason = seal_reason(self.open[t], self.routes.batch_cfgs[t], now)
            if reason:
                sealed.append((self.open.pop(t), reason))
        return sealed

    def seal_all(self, reason: str) -> list[tuple[Batch, str]]:
        sealed = [(self.open[t], reason) for t in sorted(self.open)]
        self.open.clear()
        return sealed

    def seal_for_memory(self, bound: int) -> list[tuple[Batch, str]]:
        return [(self.open.pop(t), "memory")
                for t in memory_seals({t: _held(b) for t, b in self.open.items()}, bound)]

    def deadline(self) -> float | None:
        times = [b.opened_at + self.routes.batch_cfgs[t].max_interval_s
                 for t, b in self.open.items() if b.sources]
        return min(times) if times else None

    def on_rebalance(self, revoked) -> tuple[list, int]:
        """Seal what is open, so it is registered before the revoked partitions are forgotten:
        it still loads (at-least-once) but can release nothing for them."""
        return self.seal_all("rebalance"), 0

    def expect(self, key, cuts) -> None:
        """At-least-once keeps no cut points."""


class Chunk:
    """Exactly-once: one partition's records from one cut to the next, one batch per table they
    route to. Its tables' batches are sealed together and each carries the chunk's range and
    first timestamp, so the partition's next reader, cutting the same chunk where the commit
    metadata says, forms every table's batch again under the same label."""
    __slots__ = ("parts", "first", "last", "first_ts", "records")

    def __init__(self):
        self.parts: dict[int, Batch] = {}   # target index -> batch
        self.first = self.last = self.first_ts = None
        self.records = 0

    def add(self, routes, new, tp, records) -> None:
        f = fields(records[0])
        if self.first is None:
            self.first, self.first_ts = f.offset(records[0]), f.timestamp(records[0])
        self.last = f.offset(records[-1])
        self.records += len(records)
        for t, recs in routes.split(tp.topic, records):
            b = self.parts.get(t)
            if b is None:
                b = self.parts[t] = new(t)
            b.add(tp.topic, tp.partition, recs)

    def reason(self, routes, now: float) -> str | None:
        for t, b in self.parts.items():
            reason = seal_reason(b, routes.batch_cfgs[t], now)
            if reason:
                return reason
        return None

    def seal(self, tp, reason: str) -> list[tuple[Batch, str]]:
        key = (tp.topic, tp.partition)
        out = []
        for t in sorted(self.parts):
            b = self.parts[t]
            b.ranges, b.first_ts = {key: (self.first, self.last)}, {key: self.first_ts}
            out.append((b, reason))
        return out


class PartitionBatches:
    """Exactly-once: one chunk per partition (a batch per table it routes to), cut first where the
    partition's commit metadata says (the cuts its previous reader recorded before loading), then
    by rows, bytes or age of any of its tables' batches. A chunk whose cut is recorded is never
    sealed anywhere else — not by age, not at shutdown, not for memory — so its labels are the
    ones the previous reader may already have loaded."""

    record_cuts = True

    def __init__(self, cfg: BatchConfig, new_batch, routes=None):
        self.cfg = cfg
        self.routes = routes or OneTable(cfg)
        self._new = (lambda _t: new_batch()) if routes is None else \
            (lambda t: self.routes.new_batches[t]())
        self.open: dict = {}                 # TopicPartition -> Chunk
        self.expected: dict = {}             # (topic, partition) -> deque of recorded (first, last)

    def expect(self, key, cuts) -> None:
        if cuts:
            self.expected[key] = deque(cuts)

    def _chunk(self, tp) -> Chunk:
        c = self.open.get(tp)
        if c is None:
            c = self.open[tp] = Chunk()
        return c

    def add(self, poll_result: dict, now: float) -> list[tuple[Batch, str]]:
        sealed = []
        for tp, records in poll_result.items():
            key = (tp.topic, tp.partition)
            start, n = 0, len(records)
            expected = self.expected.get(key)
            offset = fields(records[0]).offset if records else None
            while expected and start < n:
                last = expected[0][1]
                end = bisect.bisect_right(records, last, lo=start, key=offset)
                if end > start:
                    self._chunk(tp).add(self.routes, self._new, tp, records[start:end])
                if end < n or offset(records[end - 1]) == last:     # the recorded end is reached
                    c = self.open.pop(tp, None)
                    if c is not None:
                        sealed += c.seal(tp, "recorded")
                    expected.popleft()
                start = end
            if not expected:
                self.expected.pop(key, None)
            if start < n:
                c = self._chunk(tp)
                c.add(self.routes, self._new, tp, records[start:] if start else records)
                reason = c.reason(self.routes, now)
                if reason:
                    sealed += self.open.pop(tp).seal(tp, reason)
        return sealed

    def _free(self):
        return [tp for tp in self.open if (tp.topic, tp.partition) not in self.expected]

    def due(self, now: float) -> list[tuple[Batch, str]]:
        sealed = []
        for tp in self._free():
            reason = self.open[tp].reason(self.routes, now)
            if reason:
                sealed += self.open.pop(tp).seal(tp, reason)
        return sealed

    def seal_all(self, reason: str) -> list[tuple[Batch, str]]:
        """Every open chunk whose end is ours to choose (a recorded one waits for its end)."""
        return [x for tp in sorted(self._free()) for x in self.open.pop(tp).seal(tp, reason)]

    def seal_for_memory(self, bound: int) -> list[tuple[Batch, str]]:
        """The largest chunks whose end is ours to choose (never a recorded one)."""
        held = {tp: sum(map(_held, self.open[tp].parts.values())) for tp in self._free()}
        return [x for tp in memory_seals(held, bound) for x in self.open.pop(tp).seal(tp, "memory")]

    def deadline(self) -> float | None:
        times = [b.opened_at + self.routes.batch_cfgs[t].max_interval_s
                 for tp in self._free() for t, b in self.open[tp].parts.items() if b.sources]
        return min(times) if times else None

    def on_rebalance(self, revoked) -> tuple[list, int]:
        """Drop the open chunks of revoked partitions: their next reader reads them again."""
        dropped = 0
        for key in revoked:
            self.expected.pop((key[0], key[1]), None)
            for tp in [tp for tp in self.open if (tp.topic, tp.partition) == (key[0], key[1])]:
                dropped += self.open.pop(tp).records
        return [], dropped


class AlignedBatches:
    """``replay``: one batch per partition and chunk of ``size`` offsets, sealed when its chunk's
    last offset arrives — or, for the partition's last chunk, when the consumer says the
    partition reached its end (``finish``) — so a re-run forms the same batches, same labels.

    A chunk of large messages is also cut where its messages' value bytes, summed from the start
    of the batch, reach ``max_bytes`` (the record reaching it is the batch's last): that depends
    only on the records, never on poll sizes, so a re-run — or a resume from any batch's first
    offset — cuts the same batches. Time is never a cut here, nor a schema change, nor a stop:
    at a stop the batches still open are dropped unloaded (the re-run reads them again), since
    a partial chunk sealed then would load under a label no re-run forms again.

    ``earlier`` (lib/commands/replay.py's EarlierLoads) holds the batches earlier runs of this
    replay loaded, read from Doris's labels: a partial chunk of a run whose end has moved since,
    or of a run stopped by an older sinker. A batch that starts at such a first offset ends at
    that batch's last (once its label, rebuilt from the records, is the one Doris has), and a
    batch stops short of such a first offset: the re-run forms those batches again, under the
    same labels, and Doris answers "Label Already Exists" for their rows."""

    record_cuts = False

    def __init__(self, size: int, new_batch, max_bytes: int | None = None, earlier=None,
                 label_of=None, on_drop=None):
        self.size = size
        self.max_bytes = max_bytes
        self.new_batch = new_batch
        self.earlier = earlier.ranges if earlier is not None else {}
        self._starts = {key: sorted(ranges) for key, ranges in self.earlier.items()}
        self.label_of = label_of          # (key, first, last, first record) -> the label it loads under
        self.on_drop = on_drop            # records dropped unloaded at a stop
        self.open: dict = {}              # TopicPartition -> [Batch, stop, value bytes, reason]

    def add(self, poll_result: dict, now: float) -> list[tuple[Batch, str]]:
        sealed = []
        for tp, records in poll_result.items():
            key = (tp.topic, tp.partition)
            start, n = 0, len(records)
            f = fields(records[0]) if records else None
            while start < n:
                current = self.open.get(tp)
                if current is None:
                    current = self.open[tp] = self._open(key, records[start], f)
                end, reason = self._slice(records, start, current, f)
                if end > start:
                    current[0].add(tp.topic, tp.partition, records[start:end])
                if reason is not None:
                    sealed.append((self.open.pop(tp)[0], reason))
                start = end
        return sealed

    def _open(self, key, first_record, f) -> list:
        """A batch starting at this record, with the offset it stops before: the end of an
        earlier run's batch from this offset, else its chunk's end or the next earlier batch's
        start."""
        first = f.offset(first_record)
        for last, label, _finished in self.earlier.get(key, {}).get(first, ()):
            if self.label_of is None or \
                    self.label_of(key, first, last, f.timestamp(first_record)) == label:
                return [self.new_batch(), last + 1, 0, "recorded"]
        stop = (first // self.size + 1) * self.size
        starts = self._starts.get(key)
        if starts:
            i = bisect.bisect_right(starts, first)
            if i < len(starts):
                stop = min(stop, starts[i])
        return [self.new_batch(), stop, 0, "rows"]

    def _slice(self, records, start: int, current: list, f) -> tuple[int, str | None]:
        """How far the open batch takes ``records[start:]``, and why it is sealed there (None:
        it stays open). Records at or past its stop go to the next batch; a record whose value
        bytes bring it to max_bytes is its last (not for an earlier run's batch: that one is
        reproduced exactly)."""
        stop, n, offset = current[1], len(records), f.offset
        end = n if offset(records[-1]) < stop else bisect.bisect_left(records, stop, start, key=offset)
        if self.max_bytes is not None and current[3] != "recorded":
            total, value = current[2], f.value
            for i in range(start, end):
                v = value(records[i])
                total += 0 if v is None else len(v)
                if total >= self.max_bytes:
                    return i + 1, "bytes"
            current[2] = total
        if end < n or (end > start and offset(records[end - 1]) == stop - 1):
            return end, current[3]
        return end, None

    def finish(self, keys) -> list[tuple[Batch, str]]:
        """These partitions reached their end (in queue order: after their last records)."""
        return [(self.open.pop(tp)[0], "end") for tp in sorted(self.open)
                if (tp.topic, tp.partition) in keys]

    def due(self, now: float) -> list[tuple[Batch, str]]:
        return []

    def seal_all(self, reason: str) -> list[tuple[Batch, str]]:
        if reason == "shutdown":
            dropped = sum(current[0].records for current in self.open.values())
            self.open.clear()
            if dropped and self.on_drop is not None:
                self.on_drop(dropped)
        return []

    def deadline(self) -> float | None:
        return None

    def on_rebalance(self, revoked) -> tuple[list, int]:
        return [], 0              # replay reads assigned partitions: no group, no rebalance

    def expect(self, key, cuts) -> None:
        """Replay's cuts are aligned offsets and earlier runs' batches, never recorded ones."""


def tune_gc() -> None:
    """Make full cyclic-GC passes rare. Open, queued and in-flight batches keep every record alive
    until Doris confirms it: hundreds of thousands of GC-tracked tuples. With CPython's default
    thresholds (700, 10, 10) a full collection walks all of them about 15 times per million
    messages: 15-20% of the process's CPU in `make bench`. Collecting the young generation every
    50,000 allocations instead leaves one or two full passes per million; cyclic garbage is still
    collected. Thresholds already set higher (by the user) are kept."""
    current = gc.get_threshold()
    if current[0] < GC_THRESHOLDS[0]:
        gc.set_threshold(*(max(a, b) for a, b in zip(current, GC_THRESHOLDS)))


class BatcherThread(threading.Thread):
    """Poll results in, sealed batches out, in seal order; ``cuts`` decides where batches end
    (OpenBatch for run, AlignedBatches for replay)."""

    def __init__(self, inq: queue.Queue, outq: queue.Queue, cuts, tracker, obs, schema,
                 label_prefix: str = "sinker", clock=time.monotonic, budget=None):
        super().__init__(name="batcher", daemon=True)
        self.budget = budget                 # lib/budget.py (run only: replay's cuts are fixed)
        self.inq = inq
        self.outq = outq
        self.cuts = cuts
        self.tracker = tracker
        self.obs = obs
        self.schema = schema                 # schema.SchemaSource: .mapper(), .generation
        self.label_prefix = label_prefix
        self.clock = clock
        self._generation = schema.generation
        self.seq = 0
        self.error: BaseException | None = None

    def run(self):
        try:
            tune_gc()
            self._loop()
        except BaseException as e:  # noqa: BLE001 - the pipeline decides the exit
            self.error = e
            log.error("batcher stopped: %s", e, exc_info=True)

    def _loop(self):
        while True:
            deadline = self.cuts.deadline()
            timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - self.clock()))
            try:
                item = self.inq.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is STOP:
                self._seal(self.cuts.seal_all("shutdown"))
                self.outq.put(STOP)
                return
            if item is SEAL_ALL:
                self._seal(self.cuts.seal_all("shutdown"))
            elif isinstance(item, Rebalanced):
                self._rebalance(item)
            elif isinstance(item, Finished):
                self._seal(self.cuts.finish(item.keys))
            elif item is not None:
                sealed = self.cuts.add(item, self.clock())
                item = None        # a poll result counts in the budget while alive (budget.Polled):
                self._seal(sealed)  # not while _seal waits for a writer, nor while get() waits
            item = None
            self._seal(self.cuts.due(self.clock()))
            self._relieve_memory()
            if self.schema.generation != self._generation:
                self._generation = self.schema.generation
                self._seal(self.cuts.seal_all("schema"))

    def _relieve_memory(self) -> None:
        """Over the memory budget the consumer pauses its partitions (all but those completing a
        recorded chunk), so the open batches grow by what is already queued at most. When they
        hold half the budget themselves (with large messages and several partitions they reach
        it long before batch.max_bytes), waiting for their age would only stall reading until
        max_interval_s: the largest are sealed now, so their loads free the memory. Below that
        share, sealed loads hold the memory and reading resumes as they finish. Checked after
        every item: only this thread adds to what open batches hold."""
        if self.budget is not None and self.budget.over() and self.cuts.open:
            self._seal(self.cuts.seal_for_memory(self.budget.limit // 2))

    def _rebalance(self, item: Rebalanced) -> None:
        sealed, dropped = self.cuts.on_rebalance(item.revoked)
        self._seal(sealed)
        if dropped:
            self.obs.accounting.rewound(dropped)
        inherited = {k: cuts for k, (_off, cuts) in item.assigned.items()} if self.cuts.record_cuts else {}
        self.tracker.rebalance(item.revoked, {k: off for k, (off, _c) in item.assigned.items()},
                               inherited)
        for key, (_off, cuts) in item.assigned.items():
            self.cuts.expect(key, cuts)

    def _seal(self, sealed: list) -> None:
        """Register every batch before handing any on: the batches of one chunk (one per table)
        must all be known to the tracker before a writer can confirm the first of them."""
        ready = [b for b, _r in sealed if b.sources]
        for b, reason in sealed:
            if not b.sources:
                continue
            b.seq = self.seq
            self.seq += 1
            b.sealed_at = self.clock()
            b.reason = reason
            b.label = labels.make_label(self.label_prefix, b.full_name, b.ranges, salt=label_salt(b))
            b.needs_record = self.cuts.record_cuts and (b.target is None or b.target.exactly_once)
            # a batch cut where the previous reader recorded it is in the metadata already
            self.tracker.add(b.seq, b.ranges, recorded=not b.needs_record or reason == "recorded",
                             owner=b)
            self.obs.metrics.observe_seal(b)
        for b in ready:
            self.outq.put(b)   # blocks while writers are busy: backpressure reaches the consumer
