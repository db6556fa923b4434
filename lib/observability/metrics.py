"""Prometheus metrics: what operators watch to know sinker is keeping up and losing nothing.

The accounting invariant, checked by tests and visible on every scrape::

    consumed == loaded + dead_lettered + rewound + skipped + pending

``consumed`` counts messages handed on by the consumer, ``loaded`` rows Doris accepted, and
``dead_lettered`` messages written durably to the dead-letter output (mapping failures and rows
Doris rejected). ``pending`` is what is in memory or in flight to Doris; it goes back to 0 after a
clean shutdown. A ``pending`` that only grows means sinker is stuck; a negative one is a bug.

Each ``Metrics`` has its own ``CollectorRegistry`` so several pipelines in one process (tests,
benchmarks) never clash. Labels stay low-cardinality: table, topic, partition, and short reason,
outcome or phase words. Hot-path calls aggregate per partition and reuse cached label children.
"""
from __future__ import annotations

import os
import platform
import threading
import time

import prometheus_client
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Info,
                               PlatformCollector, ProcessCollector)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import __version__
from ..dead_letter import category as _category
from ..records import fields

# The *_created series double the series count of every labelled counter and no dashboard uses
# them. sinker owns its process, so turning them off globally is safe.
prometheus_client.disable_created_metrics()

SUCCESS_REASONS = frozenset({"success", "publish_timeout", "label_exists", "precommitted"})

# Stream Load response fields (milliseconds) -> the `phase` label of sinker_doris_load_phase_seconds
LOAD_PHASES = (
    ("BeginTxnTimeMs", "begin_txn"),
    ("StreamLoadPutTimeMs", "put"),
    ("ReadDataTimeMs", "read"),
    ("WriteDataTimeMs", "write"),
    ("CommitAndPublishTimeMs", "commit_publish"),
    ("LoadTimeMs", "total"),
)

# Every metric family this module exports, as named on the exposition's "# TYPE" lines
# (counters with their _total; histograms also have _bucket/_sum/_count series, see is_known_series).
METRIC_NAMES = frozenset({
    # accounting (see the invariant above)
    "sinker_messages_consumed_total", "sinker_rows_loaded_total", "sinker_dead_letters_total",
    "sinker_messages_rewound_total", "sinker_messages_skipped_total", "sinker_messages_pending", "sinker_offset_resets_total",
    "sinker_batch_cuts_recorded_total", "sinker_label_window_seconds",
    # consumer
    "sinker_consumed_bytes_total", "sinker_poll_seconds",
    "sinker_queue_depth", "sinker_partitions_paused", "sinker_batch_bytes_held", "sinker_partitions_assigned",
    "sinker_rebalances_total", "sinker_partitions_revoked_total", "sinker_partitions_lost_total",
    "sinker_partition_end_offset", "sinker_committed_offset", "sinker_consumer_lag",
    "sinker_commit_seconds", "sinker_commit_failures_total", "sinker_last_commit_timestamp_seconds",
    # batcher
    "sinker_batches_sealed_total", "sinker_batch_rows", "sinker_batch_bytes",
    # writer / Doris
    "sinker_loads_in_flight", "sinker_loads_total", "sinker_load_seconds",
    "sinker_load_retries_total", "sinker_doris_loaded_rows_total", "sinker_doris_filtered_rows_total",
    "sinker_doris_unselected_rows_total", "sinker_doris_load_bytes_total",
    "sinker_doris_load_phase_seconds", "sinker_last_load_success_timestamp_seconds",
    "sinker_governor_held_seconds_total", "sinker_table_backoff_seconds_total",
    # dead letters
    "sinker_dead_letter_reasons_total", "sinker_mapping_errors_total",
    # build and process
    "sinker_build_info", "python_info",
    "process_virtual_memory_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
    "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
})

_SERIES_SUFFIXES = ("_bucket", "_sum", "_count")


def multiprocess_mode() -> bool:
    """A worker of ``run --workers N``: metrics go to files its parent adds up (prometheus-client's
    multiprocess mode, chosen by the environment before prometheus_client is imported). Gauges
    then say how the parent combines them; collectors computed at scrape time (accounting, queue
    depths, process) stay in the worker, so the accounting is mirrored into plain metrics."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def is_known_series(name: str) -> bool:
    """True when ``name`` (as a dashboard or alert writes it) is a series this module exports."""
    if name in METRIC_NAMES:
        return True
    return any(name.endswith(s) and name[: -len(s)] in METRIC_NAMES for s in _SERIES_SUFFIXES)


class Accounting:
    """Thread-safe counters behind the invariant
    ``consumed == loaded + dead_lettered + rewound + skipped + pending``; ``rewound`` counts
    messages handed on but dropped unloaded at a rebalance (whoever owns the partition reads them
    again), ``skipped`` the ones there is nothing to load for (Debezium tombstones)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._consumed = 0
        self._by_partition: dict[tuple[str, int], int] = {}
        self._loaded = 0
        self._dead = 0
        self._rewound = 0
        self._skipped = 0
        self.mirror = None     # multiprocess mode: _AccountingMirror, updated under the lock

    def consumed(self, counts: dict) -> None:
        """Messages handed on, one call per poll result: ``{(topic, partition): n}``."""
        with self._lock:
            by = self._by_partition
            for key, n in counts.items():
                by[key] = by.get(key, 0) + n
                self._consumed += n
            if self.mirror is not None:
                self.mirror.consumed(counts, self.snapshot_locked()["pending"])

    def consumed_by_partition(self) -> dict:
        with self._lock:
            return dict(self._by_partition)

    def loaded(self, n: int) -> None:
        with self._lock:
            self._loaded += n
            if self.mirror is not None:
                self.mirror.add("loaded", n, self.snapshot_locked()["pending"])

    def dead_lettered(self, n: int) -> None:
        with self._lock:
            self._dead += n
            if self.mirror is not None:
                self.mirror.add("dead_lettered", n, self.snapshot_locked()["pending"])

    def rewound(self, n: int) -> None:
        with self._lock:
            self._rewound += n
            if self.mirror is not None:
                self.mirror.add("rewound", n, self.snapshot_locked()["pending"])

    def skipped(self, n: int) -> None:
        with self._lock:
            self._skipped += n
            if self.mirror is not None:
                self.mirror.add("skipped", n, self.snapshot_locked()["pending"])

    def snapshot(self) -> dict:
        with self._lock:
            return self.snapshot_locked()

    def snapshot_locked(self) -> dict:
        c, lo, d, r, s = self._consumed, self._loaded, self._dead, self._rewound, self._skipped
        return {"consumed": c, "loaded": lo, "dead_lettered": d, "rewound": r, "skipped": s,
                "pending": c - lo - d - r - s}


class _AccountingCollector:
    """Reads the Accounting at scrape time, so the hot path pays for one counter, not two."""

    def __init__(self, owner: "Metrics"):
        self._owner = owner

    def collect(self):
        acc = self._owner.accounting
        with acc._lock:     # one consistent reading: the invariant holds in every scrape
            snap = acc.snapshot_locked()
            by_partition = dict(acc._by_partition)
        m = CounterMetricFamily("sinker_messages_consumed",
                                "Messages handed on by the Kafka consumer, per partition.",
                                labels=("topic", "partition"))
        for (topic, partition), n in sorted(by_partition.items()):
            m.add_metric([topic, str(partition)], n)
        yield m
        for name, key, doc in (
                ("sinker_rows_loaded", "loaded", "Rows Doris accepted."),
                ("sinker_dead_letters", "dead_lettered", "Messages written to the dead-letter output."),
                ("sinker_messages_rewound", "rewound",
                 "Messages dropped unloaded at a rebalance, to be read again by the partition's owner."),
                ("sinker_messages_skipped", "skipped",
                 "Messages consumed with nothing to load (Debezium tombstones).")):
            m = CounterMetricFamily(name, doc)
            m.add_metric([], snap[key])
            yield m
        g = GaugeMetricFamily("sinker_messages_pending",
                              "consumed - loaded - dead_lettered - rewound - skipped: messages in memory or in flight.")
        g.add_metric([], snap["pending"])
        yield g


class _AccountingMirror:
    """The accounting as plain metrics, for multiprocess mode (see multiprocess_mode)."""

    def __init__(self, r):
        self.by_partition = Counter("sinker_messages_consumed",
                                    "Messages handed on by the Kafka consumer, per partition.",
                                    ("topic", "partition"), registry=r)
        self.counters = {
            "loaded": Counter("sinker_rows_loaded", "Rows Doris accepted.", registry=r),
            "dead_lettered": Counter("sinker_dead_letters",
                                     "Messages written to the dead-letter output.", registry=r),
            "rewound": Counter("sinker_messages_rewound", "Messages dropped unloaded at a "
                               "rebalance, to be read again by the partition's owner.", registry=r),
            "skipped": Counter("sinker_messages_skipped", "Messages consumed with nothing to "
                               "load (Debezium tombstones).", registry=r)}
        self.pending = Gauge("sinker_messages_pending", "consumed - loaded - dead_lettered - "
                             "rewound - skipped: messages in memory or in flight.", registry=r,
                             multiprocess_mode="livesum")

    def consumed(self, counts: dict, pending: int) -> None:
        for (topic, partition), n in counts.items():
            self.by_partition.labels(topic, str(partition)).inc(n)
        self.pending.set(pending)

    def add(self, what: str, n: int, pending: int) -> None:
        self.counters[what].inc(n)
        self.pending.set(pending)


_SECONDS_FAST = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SECONDS_LOAD = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_ROWS = (10, 100, 1_000, 10_000, 50_000, 100_000, 500_000, 1_000_000)
_BYTES = (1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28)

def _records_bytes(records) -> int:
    get = fields(records[0]).value
    try:
        return sum(map(len, map(get, records)))
    except TypeError:      # a tombstone (value None) among them
        return sum(len(v) for v in map(get, records) if v is not None)


def _num(body: dict, key: str) -> float | None:
    v = body.get(key)
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class Metrics:
    """All sinker metrics of one pipeline. Methods are called from the pipeline threads."""

    def __init__(self, registry: CollectorRegistry | None = None, accounting: Accounting | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        # The pipeline should use this Accounting (or assign its own here) so the metrics show it.
        self.accounting = accounting if accounting is not None else Accounting()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        if multiprocess_mode():
            self.accounting.mirror = _AccountingMirror(r)
        else:
            r.register(_AccountingCollector(self))
        self._lock = threading.Lock()
        Info("sinker_build", "sinker version and key libraries.", registry=r).info(_build_labels())

        tp = ("topic", "partition")
        self.consumed_bytes = Counter("sinker_consumed_bytes_total",
                                      "Message value bytes polled, per partition.", tp, registry=r)
        self.poll_seconds = Histogram("sinker_poll_seconds", "Latency of poll() calls that returned records.",
                                      buckets=_SECONDS_FAST + (30,), registry=r)
        self.queue_depth = Gauge("sinker_queue_depth", "Items waiting in an internal queue.", ("queue",),
                                 registry=r, multiprocess_mode="livesum")
        self.paused = Gauge("sinker_partitions_paused", "Partitions paused because a queue is full, the "
                            "batches hold more than batch.max_bytes_in_flight, or on stop.",
                            registry=r, multiprocess_mode="livesum")
        self.bytes_held = Gauge("sinker_batch_bytes_held", "Bytes held by poll results waiting for "
                                "the batcher and by open, waiting and loading batches (estimated; "
                                "reading pauses above batch.max_bytes_in_flight).",
                                registry=r, multiprocess_mode="livesum")
        self.assigned = Gauge("sinker_partitions_assigned", "Partitions this process owns.", registry=r, multiprocess_mode="livesum")
        self.rebalances = Counter("sinker_rebalances_total", "Consumer group rebalances seen.", registry=r)
        self.offset_resets = Counter("sinker_offset_resets_total",
                                     "Partitions started without a committed offset, by where they started.",
                                     ("start",), registry=r)
        self.label_window = Gauge("sinker_label_window_seconds",
                                  "How far back Doris still remembers this process's labels, from "
                                  "its load rate (2,000 labels or 12 h): exactly-once needs a "
                                  "restart to be faster.", ("database",), registry=r)
        self.cuts_recorded = Counter("sinker_batch_cuts_recorded_total",
                                     "Batches whose cut points were committed to Kafka before loading.",
                                     registry=r)
        self.revoked = Counter("sinker_partitions_revoked_total", "Partitions revoked in rebalances.", registry=r)
        self.lost = Counter("sinker_partitions_lost_total",
                            "Partitions that moved to another consumer (in-flight batches dropped).", registry=r)
        self.end_offset = Gauge("sinker_partition_end_offset", "Latest offset of the partition (log end).",
                                tp, registry=r, multiprocess_mode="livemax")
        self.committed = Gauge("sinker_committed_offset", "Offset sinker committed (next to read).", tp,
                               registry=r, multiprocess_mode="livemax")
        self.lag = Gauge("sinker_consumer_lag", "Messages not yet committed: end offset - committed offset.",
                         tp, registry=r, multiprocess_mode="livemax")
        self.commit_seconds = Histogram("sinker_commit_seconds", "Latency of offset commits.",
                                        buckets=_SECONDS_FAST + (30,), registry=r)
        self.commit_failures = Counter("sinker_commit_failures_total", "Offset commits that failed (retried).",
                                       registry=r)
        self.last_commit = Gauge("sinker_last_commit_timestamp_seconds",
                                 "Unix time of the last successful offset commit.", registry=r, multiprocess_mode="max")

        self.sealed = Counter("sinker_batches_sealed_total", "Batches sealed, by why.", ("table", "reason"),
                              registry=r)
        self.batch_rows = Histogram("sinker_batch_rows", "Rows per sealed batch.", ("table",), buckets=_ROWS,
                                    registry=r)
        self.batch_bytes = Histogram("sinker_batch_bytes", "Body bytes per sealed batch.", ("table",),
                                     buckets=_BYTES, registry=r)

        self.in_flight = Gauge("sinker_loads_in_flight", "Stream Loads being sent or retried now.", registry=r, multiprocess_mode="livesum")
        self.loads = Counter("sinker_loads_total", "Stream Load attempts by classified outcome.",
                             ("table", "outcome"), registry=r)
        self.load_seconds = Histogram("sinker_load_seconds", "Stream Load attempt latency seen by sinker.",
                                      ("table",), buckets=_SECONDS_LOAD, registry=r)
        self.retries = Counter("sinker_load_retries_total", "Stream Load retries by reason.",
                               ("table", "reason"), registry=r)
        self.doris_loaded = Counter("sinker_doris_loaded_rows_total", "NumberLoadedRows reported by Doris.",
                                    ("table",), registry=r)
        self.doris_filtered = Counter("sinker_doris_filtered_rows_total",
                                      "NumberFilteredRows reported by Doris (data quality).", ("table",),
                                      registry=r)
        self.doris_unselected = Counter("sinker_doris_unselected_rows_total",
                                        "NumberUnselectedRows reported by Doris.", ("table",), registry=r)
        self.doris_bytes = Counter("sinker_doris_load_bytes_total", "LoadBytes reported by Doris.",
                                   ("table",), registry=r)
        self.phase_seconds = Histogram("sinker_doris_load_phase_seconds",
                                       "Time Doris reports per Stream Load phase.", ("table", "phase"),
                                       buckets=_SECONDS_LOAD, registry=r)
        self.last_load_ok = Gauge("sinker_last_load_success_timestamp_seconds",
                                  "Unix time of the last load Doris confirmed.", ("table",), registry=r, multiprocess_mode="max")
        self.governor_held = Counter("sinker_governor_held_seconds_total",
                                     "Seconds sealed batches waited for a writer to take them: for "
                                     "batch.min_load_interval_s, the table's backoff or a free writer.",
                                     ("table",), registry=r)
        self.table_backoff = Counter("sinker_table_backoff_seconds_total",
                                     "Seconds of backoff imposed on a table after Doris refused a load "
                                     "as overloaded (-235, transaction limits), by reason.",
                                     ("table", "reason"), registry=r)

        self.dead_reasons = Counter("sinker_dead_letter_reasons_total", "Dead letters by reason category.",
                                    ("table", "category"), registry=r)
        self.mapping_errors = Counter("sinker_mapping_errors_total",
                                      "Messages dead-lettered because of one column's value.",
                                      ("table", "column"), registry=r)

        self._tp_children: dict = {}   # (topic, partition) -> consumed-bytes child
        self._ends: dict = {}          # (topic, partition) -> end offset
        self._commits: dict = {}       # (topic, partition) -> committed offset

    # -- consumer -------------------------------------------------------------------------------
    def observe_poll(self, result: dict, seconds: float) -> int:
        """One call per poll result: one counter increment per partition, none per record.
        Returns the values' bytes it counted (the memory budget counts them too)."""
        children = self._tp_children
        total = 0
        for tp, records in result.items():
            if not records:
                continue
            key = (tp.topic, tp.partition)
            child = children.get(key)
            if child is None:
                child = children[key] = self.consumed_bytes.labels(tp.topic, str(tp.partition))
            n = _records_bytes(records)
            child.inc(n)
            total += n
        self.poll_seconds.observe(seconds)
        return total

    def set_paused(self, n: int) -> None:
        self.paused.set(n)

    def observe_rebalance(self, revoked: int, assigned: int, lost: int) -> None:
        self.rebalances.inc()
        self.revoked.inc(revoked)
        self.lost.inc(lost)
        self.assigned.set(assigned)

    def set_label_window(self, db: str, seconds: float) -> None:
        self.label_window.labels(db).set(seconds)

    def observe_offset_reset(self, start: str, n: int = 1) -> None:
        self.offset_resets.labels(start).inc(n)

    def observe_cuts_recorded(self, n: int) -> None:
        self.cuts_recorded.inc(n)

    def set_assigned(self, n: int) -> None:
        """Partitions owned without a group rebalance (replay assigns them explicitly)."""
        self.assigned.set(n)

    def watch_budget(self, budget) -> None:
        """Read the memory budget's total at scrape time (lib/budget.py)."""
        self.bytes_held.set_function(lambda: budget.held)

    def watch_queue(self, name: str, q) -> None:
        """Read ``q.qsize()`` at scrape time, so the depth is never stale."""
        self.queue_depth.labels(name).set_function(q.qsize)

    def set_end_offsets(self, end_map: dict) -> None:
        """End offsets of the owned partitions; partitions missing here are no longer ours."""
        with self._lock:
            for key in list(self._ends):
                if key not in end_map:
                    del self._ends[key]
                    self._commits.pop(key, None)
                    for g in (self.end_offset, self.lag, self.committed):
                        _remove(g, key)
            for key, end in end_map.items():
                self._ends[key] = end
                self.end_offset.labels(key[0], str(key[1])).set(end)
                self._update_lag(key)

    def _update_lag(self, key) -> None:
        end, done = self._ends.get(key), self._commits.get(key)
        if end is not None and done is not None:
            self.lag.labels(key[0], str(key[1])).set(max(0, end - done))

    def observe_commit(self, positions: dict, seconds: float, ok: bool) -> None:
        self.commit_seconds.observe(seconds)
        if not ok:
            self.commit_failures.inc()
            return
        self.last_commit.set(time.time())
        self.set_committed(positions)

    def set_committed(self, positions: dict) -> None:
        """Committed offsets known without committing: the group's, read when partitions arrive."""
        with self._lock:
            for key, off in positions.items():
                self._commits[key] = off
                self.committed.labels(key[0], str(key[1])).set(off)
                self._update_lag(key)

    # -- batcher --------------------------------------------------------------------------------
    def observe_seal(self, batch) -> None:
        table = batch.full_name
        self.sealed.labels(table, batch.reason or "unknown").inc()
        self.batch_rows.labels(table).observe(batch.rows)
        self.batch_bytes.labels(table).observe(batch.nbytes)

    # -- writer ---------------------------------------------------------------------------------
    def loads_in_flight(self, delta: int) -> None:
        self.in_flight.inc(delta)

    def observe_load(self, table: str, reason: str, body: dict | None, seconds: float) -> None:
        self.loads.labels(table, reason).inc()
        self.load_seconds.labels(table).observe(seconds)
        if isinstance(body, dict):
            for key, counter in (("NumberLoadedRows", self.doris_loaded),
                                 ("NumberFilteredRows", self.doris_filtered),
                                 ("NumberUnselectedRows", self.doris_unselected),
                                 ("LoadBytes", self.doris_bytes)):
                v = _num(body, key)
                if v is not None and v > 0:
                    counter.labels(table).inc(v)
            for key, phase in LOAD_PHASES:
                v = _num(body, key)
                if v is not None and v >= 0:
                    self.phase_seconds.labels(table, phase).observe(v / 1000.0)
        if reason in SUCCESS_REASONS:
            self.last_load_ok.labels(table).set(time.time())

    def observe_retry(self, table: str, reason: str) -> None:
        self.retries.labels(table, reason).inc()

    def observe_governor_held(self, table: str, seconds: float) -> None:
        self.governor_held.labels(table).inc(max(0.0, seconds))

    def observe_table_backoff(self, table: str, reason: str, seconds: float) -> None:
        self.table_backoff.labels(table, reason).inc(seconds)

    def observe_dead_letters(self, table: str, dead: list) -> None:
        by_cat: dict[str, int] = {}
        by_col: dict[str, int] = {}
        for dl in dead:
            c = _category(dl.reason)
            by_cat[c] = by_cat.get(c, 0) + 1
            if dl.column:
                by_col[dl.column] = by_col.get(dl.column, 0) + 1
        for c, n in by_cat.items():
            self.dead_reasons.labels(table, c).inc(n)
        for col, n in by_col.items():
            self.mapping_errors.labels(table, col).inc(n)

    # -- reading --------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Key numbers summed over labels, for /debug and tests (not for the hot path)."""
        sums: dict[str, float] = {}
        outcomes: dict[str, float] = {}
        for family in self.registry.collect():
            if not family.name.startswith("sinker_"):
                continue
            for s in family.samples:
                sums[s.name] = sums.get(s.name, 0.0) + s.value
                if s.name == "sinker_loads_total":
                    o = s.labels["outcome"]
                    outcomes[o] = outcomes.get(o, 0.0) + s.value
        snap = self.accounting.snapshot()
        snap.update({
            "polled_bytes": int(sums.get("sinker_consumed_bytes_total", 0)),
            "batches_sealed": int(sums.get("sinker_batches_sealed_total", 0)),
            "loads": {k: int(v) for k, v in outcomes.items()},
            "retries": int(sums.get("sinker_load_retries_total", 0)),
            "loads_in_flight": int(sums.get("sinker_loads_in_flight", 0)),
            "commit_failures": int(sums.get("sinker_commit_failures_total", 0)),
            "lag": int(sums.get("sinker_consumer_lag", 0)),
            "partitions_assigned": int(sums.get("sinker_partitions_assigned", 0)),
            "partitions_paused": int(sums.get("sinker_partitions_paused", 0)),
        })
        return snap


def progress_fields(before: dict, now: dict, seconds: float) -> dict:
    """The progress line's fields from two ``Metrics.snapshot()`` readings ``seconds`` apart:
    rows loaded per second and loads (attempts) between them, lag and dead letters now."""
    rows = now["loaded"] - before["loaded"]
    loads = sum(now["loads"].values()) - sum(before["loads"].values())
    return {"rows_per_s": round(rows / seconds, 1) if seconds > 0 else 0.0, "rows": rows,
            "loads": loads, "lag": now["lag"], "dead_letters": now["dead_lettered"]}


def _remove(metric, key) -> None:
    """Drop a partition's series. In multiprocess mode the series stays in the worker's file:
    zero it, so the parent's sums and maxima no longer count it."""
    if multiprocess_mode():
        metric.labels(key[0], str(key[1])).set(0)
        return
    try:
        metric.remove(key[0], str(key[1]))
    except KeyError:
        pass


def _build_labels() -> dict:
    try:
        from importlib.metadata import version
        kafka_version = version("kafka-python")
    except Exception:  # noqa: BLE001 - informational only
        kafka_version = "unknown"
    return {"version": __version__, "python": platform.python_version(), "kafka_python": kafka_version}
