"""Wiring for ``sinker run`` (and ``replay``): start the threads, watch them, stop them in order.

Shutdown order on SIGINT/SIGTERM: stop handing on records → the batcher seals its partial batches
→ the writers load them (bounded by ``shutdown_timeout_s``) → the consumer thread commits what
Doris confirmed and closes. A second signal exits at once without committing. A fatal error in
any thread stops everything; the consumer still commits the prefix Doris confirmed (those rows
are in), never anything past it.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field

from . import batcher as batcher_mod
from . import labels
from .budget import Budget, one_malloc_arena
from .config import Config
from .consumer import ConsumerThread
from .dead_letter_sinks import open_sink
from .errors import Interrupted, RetriesExhausted
from .governor import Governor
from .kafka_client import require_topics
from .lifecycle import SAME_SIGNAL_S, Shutdown
from .observability import Observers
from .offsets import OffsetTracker
from .routing import Router
from .schema import SchemaSet, SchemaSource
from .stream_load import StreamLoader
from .worker_process import announce_status, follow_parent, worker_index
from .writer import WriterThread

log = logging.getLogger("sinker.pipeline")


@dataclass
class RunResult:
    exit_code: int
    committed: dict = field(default_factory=dict)
    error: BaseException | None = None


class _Fixed:
    """A schema source of one mapper that never changes (the no-route targets)."""

    def __init__(self, mapper):
        self._mapper = mapper

    def mapper(self):
        return self._mapper


class Pipeline:
    """Owns the threads of one sinker process. ``run()`` blocks until shutdown or failure.

    ``replay`` (lib/commands/replay.py's ReplayBounds) reads fixed offset ranges without the group
    and cuts batches at aligned offsets; without it the pipeline is ``sinker run``."""

    def __init__(self, cfg: Config, *, obs: Observers | None = None, label_prefix: str = "sinker",
                 replay=None, on_loaded=None):
        one_malloc_arena()
        self.cfg = cfg
        self.obs = obs or Observers.create()
        self.metrics, self.health, self.accounting = self.obs.metrics, self.obs.health, self.obs.accounting
        self.label_prefix = label_prefix
        self.replay = replay
        self.on_loaded = on_loaded    # callable(batch, acked_at_epoch_s): the benchmark's latency probe
        self.shutdown = Shutdown()
        self._signals = 0
        self.threads: list[threading.Thread] = []
        self.status_server = None
        cfg = self.cfg
        self.router = Router(cfg)
        tables = [t for t in self.router.targets if t.cfg is not None]
        self.schema = SchemaSet([SchemaSource(t.cfg) for t in tables])
        for w in self.schema.warnings:
            log.warning("%s", w)
        self.loader = StreamLoader(cfg.doris)
        self.sink = open_sink(cfg.dead_letter, cfg.kafka)
        self.tracker = OffsetTracker()
        self.polled: queue.Queue = queue.Queue(maxsize=cfg.batch.queue_size)
        intervals = {t.full_name: t.batch.min_load_interval_s for t in self.router.targets}
        self.sealed = Governor(max(2, cfg.writer.workers),
                               lambda table: intervals.get(table, cfg.batch.min_load_interval_s),
                               self.metrics)
        self.metrics.watch_queue("polled", self.polled)
        self.metrics.watch_queue("sealed", self.sealed)
        self.budget = Budget(cfg.batch.max_bytes_in_flight)
        self.metrics.watch_budget(self.budget)
        new_batches = [
            batcher_mod.batch_factory(t.db, t.table, source, budget=self.budget, target=t)
            for t, source in zip(tables, self.schema.sources)]
        for t in self.router.targets[len(tables):]:
            new_batches.append(batcher_mod.batch_factory(
                "", "", _Fixed(self.router.unrouted_mappers[t.index]), budget=self.budget, target=t))
        routes = batcher_mod.Routed(self.router, new_batches)
        new_batch = new_batches[0]
        if replay is not None:
            def label_of(key, first, last, first_timestamp):
                return labels.make_label(label_prefix, full_name, {key: (first, last)},
                                         salt=batcher_mod.salt_of({key: first_timestamp}))
            full_name = f"{cfg.doris.database}.{cfg.doris.table}"
            cuts = batcher_mod.AlignedBatches(replay.chunk_rows, new_batch, cfg.batch.max_bytes,
                                              earlier=replay.earlier, label_of=label_of,
                                              on_drop=self._replay_dropped)
        elif cfg.exactly_once:
            cuts = batcher_mod.PartitionBatches(cfg.batch, None, routes)
        else:
            cuts = batcher_mod.OpenBatch(cfg.batch, None, routes, hold=self.tracker.hold)
        self.consumer = ConsumerThread(cfg.kafka, self.polled, self.tracker, self.obs,
                                       self.shutdown, bounds=replay, record_cuts=cuts.record_cuts,
                                       budget=self.budget, batches_open=lambda: bool(cuts.open))
        self.batcher = batcher_mod.BatcherThread(self.polled, self.sealed, cuts, self.tracker,
                                                 self.obs, self.schema, label_prefix=label_prefix,
                                                 budget=self.budget if replay is None else None)
        label_window = labels.LabelWindow()      # every writer counts its loads into it
        self.writers = [
            WriterThread(i, cfg.writer, self.sealed, self.loader, self.sink, self.tracker, self.obs,
                         self.shutdown, load_timeout_s=cfg.doris.load_timeout_s,
                         on_schema_error=self.schema.request_refresh,
                         polled_at=lambda: self.consumer.polled_at,
                         on_loaded=on_loaded,
                         finished=replay.earlier.finished if replay is not None else None,
                         label_window=label_window)
            for i in range(cfg.writer.workers)]
        self.threads = [self.consumer, self.batcher, *self.writers]
        for t in self.threads:
            self.health.register_thread(t.name, t)

    def _replay_dropped(self, n: int) -> None:
        self.accounting.rewound(n)
        log.info("replay stopping: %d messages of chunks not read to their end are not loaded "
                 "(a partial chunk would load under a label no re-run forms again); the re-run "
                 "or the resume command reads them again", n)

    def _start_status_server(self):
        address = self.cfg.server.address
        if address is None:
            return
        from .config import redacted
        from .observability.status_server import StatusServer
        self.status_server = StatusServer(address, self.metrics.registry, self.health,
                                          lambda: redacted(self.cfg),
                                          ready_stall_s=self.cfg.server.ready_stall_s,
                                          debug=self.cfg.server.debug,
                                          debug_token=self.cfg.server.debug_token,
                                          status_fn=self.status)
        self.status_server.start()
        announce_status(self.status_server.port)
        log.info("metrics and health on http://%s:%d/", self.status_server.host,
                 self.status_server.port)

    def status(self) -> dict:
        """The /status document (`sinker status`, `sinker top`)."""
        from .observability.status_server import metric_samples, status_document
        return status_document(
            metric_samples(self.metrics.registry), self.health.liveness(),
            self.health.readiness(self.cfg.server.ready_stall_s),
            {"worker": worker_index(), "last_error": self.health.last_error(),
             "batches_waiting_for_cut": self.tracker.unrecorded_count(),
             "batches_pending": self.tracker.pending_count(),
             "table": ", ".join(self.cfg.tables)})

    # -- signals --------------------------------------------------------------------------------
    def install_signal_handlers(self):
        """First SIGINT/SIGTERM: a clean stop. Another one more than SAME_SIGNAL_S later: exit at
        once without committing. One within that second is the same request arriving twice —
        a terminal's Ctrl-C reaches every process of the group, and the one-file binary's
        bootloader forwards what it gets to sinker as well."""
        first_at = [0.0]

        def handler(signum, _frame):
            now = time.monotonic()
            if self._signals and now - first_at[0] < SAME_SIGNAL_S:
                return
            self._signals += 1
            if self._signals == 1:
                first_at[0] = now
                log.info("got %s: loading what is in flight, then committing and exiting "
                         "(send it again to exit at once without committing)",
                         signal.Signals(signum).name)
                self.shutdown.request_stop()
            else:
                log.warning("second signal: exiting now without committing")
                logging.shutdown()
                os._exit(Interrupted.exit_code)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        follow_parent()         # a worker of `run --workers N`: SIGTERM when its parent dies

    @property
    def interrupted(self) -> bool:
        """A stop signal arrived (replay reports it as interrupted, not as a failure)."""
        return self._signals > 0

    def request_stop(self):
        self.shutdown.request_stop()

    def seal_now(self):
        """Seal the open batch without waiting for max_interval_s (the benchmark's end of input)."""
        self.polled.put(batcher_mod.SEAL_ALL)

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        self.health.set_phase("starting")
        if self.cfg.mapping.max_filter_ratio:
            log.warning("mapping.max_filter_ratio is %g, but sinker loads with max_filter_ratio 0 "
                        "and dead-letters every row Doris rejects (Doris names at most 50 of the "
                        "rows it drops): the setting no longer changes what is loaded; remove it",
                        self.cfg.mapping.max_filter_ratio)
        log.info("delivery: %s", self.cfg.delivery if self.replay is None else "replay")
        self._start_status_server()
        self.schema.start()
        try:
            if self.replay is None:
                require_topics(self.cfg.kafka)      # a mistyped topic: exit 3, never created
            for t in self.threads:
                t.start()
            self.consumer.ready.wait(60)
            self.health.set_phase("running")
            error = self._watch()
            if error is None:
                error = self._drain()
            else:
                self._fail(error)
        finally:
            self._close()
        committed = dict(self.consumer.committed)
        if error is None:
            log.info("stopped cleanly; %s", self._summary())
            return RunResult(0, committed)
        return RunResult(getattr(error, "exit_code", 1), committed, error)

    def _first_error(self):
        for t in self.threads:
            err = getattr(t, "error", None)
            if err is not None:
                return err
        return None

    def _watch(self):
        every = self.cfg.logging.progress_s if self.replay is None else 0
        last_at, last = time.monotonic(), self.metrics.snapshot() if every else None
        while not self.shutdown.wait_stop_requested(0.1):
            err = self._first_error()
            if err is not None:
                return err
            if self.consumer.read_everything():
                return None
            if every and time.monotonic() - last_at >= every:
                now_at, now = time.monotonic(), self.metrics.snapshot()
                self._log_progress(last, now, now_at - last_at)
                last_at, last = now_at, now
        return None

    def _log_progress(self, before: dict, now: dict, seconds: float) -> None:
        """The info line every logging.progress_s: is it keeping up?"""
        from .observability.metrics import progress_fields
        f = progress_fields(before, now, seconds)
        log.info("progress: %.1f rows/s (%d rows, %d loads in %.0fs), lag %d, %d dead letters in all",
                 f["rows_per_s"], f["rows"], f["loads"], seconds, f["lag"], f["dead_letters"],
                 extra={**f, "table": ", ".join(self.cfg.tables)})

    def _drain(self):
        """Graceful stop: seal and load what is in flight, then commit (bounded by the timeout)."""
        self.health.set_phase("draining")
        deadline = time.monotonic() + self.cfg.shutdown_timeout_s
        self.shutdown.drain()
        while self.consumer.holding() and self.consumer.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            self.polled.put(batcher_mod.STOP, timeout=max(0.1, deadline - time.monotonic()))
        except queue.Full:
            pass
        for t in [self.batcher, *self.writers]:
            t.join(max(0.0, deadline - time.monotonic()))
        err = self._first_error()
        late = [t.name for t in (self.batcher, *self.writers) if t.is_alive()]
        if late and err is None:
            err = RetriesExhausted(
                f"shutdown timeout ({self.cfg.shutdown_timeout_s:g}s) reached with {self.tracker.pending_count()} "
                "batches not loaded; only what Doris confirmed was committed, the rest is re-read on "
                "restart")
        if err is not None:
            self.shutdown.abort()
        self.shutdown.finish()
        self.consumer.join(30)
        return err or self.consumer.error

    def _fail(self, error):
        log.error("stopping: %s", error)
        self.health.fail(str(error))
        self.shutdown.abort()
        self.shutdown.drain()
        try:    # end the batcher too (nothing it seals will be loaded or committed now)
            self.polled.put_nowait(batcher_mod.STOP)
        except queue.Full:
            pass
        self.shutdown.finish()
        self.consumer.join(30)

    def _close(self):
        self.health.set_phase("stopped")
        self.schema.stop()
        for closer in (self.sink, self.loader):
            try:
                closer.close()
            except Exception as e:  # noqa: BLE001
                log.warning("closing %s: %s", type(closer).__name__, e)
        if self.status_server is not None:
            self.status_server.stop()

    def _summary(self) -> str:
        snap = self.accounting.snapshot()
        return ", ".join(f"{k}={v}" for k, v in snap.items())
