"""The batcher thread: maps whole poll results to rows and seals one batch per table.

A batch is sealed when it reaches ``max_rows`` or ``max_bytes`` (checked after each partition's
records of a poll result, so it may overshoot by at most one poll's worth), when its oldest row is
``max_interval_s`` old, on shutdown, or when the Doris schema changed. Sealing fixes the label,
from the offset ranges the batch covers, and registers the batch with the OffsetTracker, in order.
"""
from __future__ import annotations

import gc
import logging
import queue
import threading
import time

from . import labels
from .config import BatchConfig

log = logging.getLogger("sinker.batcher")

# Young-generation size for CPython's cyclic GC while a pipeline runs (see tune_gc).
GC_THRESHOLDS = (50_000, 20, 10)

SEAL_ALL = "seal-all"     # control item: seal every open batch now (shutdown)
STOP = "stop"             # control item: seal, hand on, and end the thread


class Batch:
    """One Stream Load's worth of rows; the unit of retry, labelling and offset confirmation."""
    __slots__ = ("seq", "db", "table", "label", "lines", "nbytes", "rows", "ranges", "dead",
                 "sources", "opened_at", "sealed_at", "reason", "headers", "mapper", "first_ts")

    def __init__(self, db: str, table: str, mapper, opened_at: float):
        self.seq = -1
        self.db = db
        self.table = table
        self.label = ""
        self.lines: list[bytes] = []
        self.nbytes = 0
        self.rows = 0
        self.ranges: dict[tuple[str, int], tuple[int, int]] = {}
        self.first_ts: dict[tuple[str, int], int] = {}   # Kafka timestamp of each range's first record
        self.dead: list = []
        self.sources: list[list] = []
        self.opened_at = opened_at
        self.sealed_at = 0.0
        self.reason = ""
        self.mapper = mapper
        self.headers = mapper.headers()

    @property
    def full_name(self) -> str:
        return f"{self.db}.{self.table}"

    def add(self, topic: str, partition: int, records: list) -> None:
        """Map one partition's slice of a poll result into this batch (the hot path)."""
        n_lines = len(self.lines)
        self.nbytes += self.mapper.map_records(records, self.lines, self.dead)
        self.rows += len(self.lines) - n_lines
        self.sources.append(records)
        key = (topic, partition)
        first = self.ranges.get(key)
        if first is None:
            self.first_ts[key] = records[0].timestamp
            self.ranges[key] = (records[0].offset, records[-1].offset)
        else:
            self.ranges[key] = (first[0], records[-1].offset)


def label_salt(batch: Batch) -> str:
    """The first record's timestamp per range: same rows, same salt (so replays re-use labels)."""
    return ",".join(f"{t}:{p}:{batch.first_ts[(t, p)]}" for t, p in sorted(batch.first_ts))


def seal_reason(batch: Batch, cfg: BatchConfig, now: float) -> str | None:
    """Pure decision: should this batch be sealed now, and why."""
    if batch.rows >= cfg.max_rows:
        return "rows"
    if batch.nbytes >= cfg.max_bytes:
        return "bytes"
    if batch.sources and now - batch.opened_at >= cfg.max_interval_s:
        return "interval"
    return None


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
    def __init__(self, cfg: BatchConfig, db: str, table: str, mapper_source, inq: queue.Queue,
                 outq: queue.Queue, tracker, metrics, health, label_prefix: str = "sinker",
                 clock=time.monotonic, aligned_rows: int | None = None):
        super().__init__(name="batcher", daemon=True)
        self.cfg = cfg
        self.db = db
        self.table = table
        self.mapper_source = mapper_source   # .mapper() -> current Mapper; .changed() -> bool
        self.inq = inq
        self.outq = outq
        self.tracker = tracker
        self.metrics = metrics
        self.health = health
        self.label_prefix = label_prefix
        self.clock = clock
        self.batch: Batch | None = None
        # replay: one batch per partition, cut at offsets that are multiples of aligned_rows, so a
        # re-run forms the same batches, hence the same labels, and Doris loads nothing twice
        self.aligned_rows = aligned_rows
        self.open: dict = {}
        self.seq = 0
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def run(self):
        try:
            tune_gc()
            self._loop()
        except BaseException as e:  # noqa: BLE001 - the pipeline decides the exit
            self.error = e
            log.error("batcher stopped: %s", e, exc_info=True)
        finally:
            self.finished.set()

    def _loop(self):
        while True:
            timeout = self._time_to_deadline()
            try:
                item = self.inq.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is STOP:
                self._seal("shutdown")
                self.outq.put(STOP)
                return
            if item is SEAL_ALL:
                self._seal("shutdown")
                continue
            if item is not None:
                self._add(item)
            if self.batch is not None:
                reason = seal_reason(self.batch, self.cfg, self.clock())
                if reason:
                    self._seal(reason)
            if self.mapper_source.changed():
                self._seal("schema")

    def _time_to_deadline(self) -> float:
        if self.batch is None or not self.batch.sources:
            return max(0.05, min(1.0, self.cfg.max_interval_s))
        return max(0.0, self.batch.opened_at + self.cfg.max_interval_s - self.clock())

    def _add(self, poll_result: dict) -> None:
        if self.aligned_rows:
            return self._add_aligned(poll_result)
        for tp, records in poll_result.items():
            if self.batch is None:
                self.batch = Batch(self.db, self.table, self.mapper_source.mapper(), self.clock())
            self.batch.add(tp.topic, tp.partition, records)
            if self.batch.rows >= self.cfg.max_rows or self.batch.nbytes >= self.cfg.max_bytes:
                self._seal("rows" if self.batch.rows >= self.cfg.max_rows else "bytes")

    def _add_aligned(self, poll_result: dict) -> None:
        size = self.aligned_rows
        for tp, records in poll_result.items():
            start = 0
            while start < len(records):
                chunk = records[start].offset // size
                end = start
                while end < len(records) and records[end].offset // size == chunk:
                    end += 1
                open_batch = self.open.get(tp)
                if open_batch is not None and open_batch[0] != chunk:
                    self._seal_batch(open_batch[1], "rows")
                    open_batch = None
                if open_batch is None:
                    open_batch = self.open[tp] = (chunk, Batch(self.db, self.table,
                                                               self.mapper_source.mapper(),
                                                               self.clock()))
                open_batch[1].add(tp.topic, tp.partition, records[start:end])
                if records[end - 1].offset % size == size - 1:
                    self._seal_batch(self.open.pop(tp)[1], "rows")
                start = end

    def _seal(self, reason: str) -> None:
        if self.aligned_rows:
            if reason == "shutdown":
                for tp in sorted(self.open):
                    self._seal_batch(self.open[tp][1], reason)
                self.open.clear()
            return
        b = self.batch
        self.batch = None
        self._seal_batch(b, reason)

    def _seal_batch(self, b, reason: str) -> None:
        if b is None or not b.sources:
            return
        b.seq = self.seq
        self.seq += 1
        b.sealed_at = self.clock()
        b.reason = reason
        b.label = labels.make_label(self.label_prefix, b.full_name, b.ranges, salt=label_salt(b))
        self.tracker.add(b.seq, b.ranges)
        self.metrics.observe_seal(b)
        self.outq.put(b)   # blocks while writers are busy: backpressure reaches the consumer
        self.metrics.set_queue_depth("sealed", self.outq.qsize())
