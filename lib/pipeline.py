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
from . import schema as schema_mod
from .config import Config
from .consumer import ConsumerThread
from .dead_letter import open_sink
from .errors import Interrupted, RetriesExhausted, SinkerError
from .mapping import Mapper
from .metrics import Metrics
from .health import Health
from .offsets import OffsetTracker
from .stream_load import StreamLoader
from .writer import WriterThread

log = logging.getLogger("sinker.pipeline")


class SchemaSource:
    """The current Mapper for the table; looks for schema changes every ``schema_refresh_s`` so an
    added column is picked up without a restart (the batcher seals, then maps with the new one)."""

    def __init__(self, cfg: Config, clock=time.monotonic):
        self.cfg = cfg
        self.clock = clock
        self._lock = threading.Lock()
        self._refresh_requested = False
        self._columns = self._fetch()
        self._mapper = self._build(self._columns)
        self._next_check = clock() + cfg.mapping.schema_refresh_s

    @staticmethod
    def fetch_columns(cfg: Config):
        """The table's columns: listed in the config, or read from Doris."""
        if cfg.mapping.schema:
            return schema_mod.columns_from_config(cfg.mapping)
        return schema_mod.fetch_schema(cfg.doris, cfg.doris.database, cfg.doris.table)

    def _fetch(self):
        return self.fetch_columns(self.cfg)

    def _build(self, columns):
        return Mapper(columns, self.cfg.mapping, timezone=self.cfg.doris.timezone)

    @property
    def columns(self):
        return self._columns

    def mapper(self):
        return self._mapper

    def request_refresh(self) -> None:
        """Called by a writer when Doris names a column we do not know."""
        with self._lock:
            self._refresh_requested = True

    def changed(self) -> bool:
        now = self.clock()
        with self._lock:
            due = self._refresh_requested or now >= self._next_check
            self._refresh_requested = False
        if not due or self.cfg.mapping.schema:
            return False
        self._next_check = now + self.cfg.mapping.schema_refresh_s
        try:
            columns = self._fetch()
        except SinkerError as e:
            log.warning("schema refresh failed (keeping the current one): %s", e)
            return False
        if columns == self._columns:
            return False
        added = [c.name for c in columns if c.name not in {x.name for x in self._columns}]
        log.info("the Doris table changed (new columns: %s); mapping with the new schema",
                 ", ".join(added) or "none, types changed")
        self._columns = columns
        self._mapper = self._build(columns)
        return True


@dataclass
class RunResult:
    exit_code: int
    committed: dict = field(default_factory=dict)
    error: BaseException | None = None


class Pipeline:
    """Owns the threads of one sinker process. ``run()`` blocks until shutdown or failure."""

    def __init__(self, cfg: Config, *, metrics: Metrics | None = None, health: Health | None = None,
                 label_prefix: str = "sinker", replay=None, on_loaded=None):
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.health = health or Health()
        self.accounting = self.metrics.accounting   # one set of counters: the metrics export them
        self.label_prefix = label_prefix
        self.replay = replay          # lib.replay.ReplayPlan: fixed partitions and offset ranges
        self.on_loaded = on_loaded    # callable(batch, acked_at_epoch_s): the benchmark's latency probe
        self.stop_polling = threading.Event()
        self.finish = threading.Event()
        self.stopping = threading.Event()
        self.abort = threading.Event()
        self._signals = 0
        self.threads: list[threading.Thread] = []
        self.status_server = None

    # -- setup ----------------------------------------------------------------------------------
    def _build(self):
        cfg = self.cfg
        self.schema = SchemaSource(cfg)
        self.loader = StreamLoader(cfg.doris)
        self.sink = open_sink(cfg.dead_letter, cfg.kafka)
        self.tracker = OffsetTracker()
        self.polled: queue.Queue = queue.Queue(maxsize=cfg.batch.queue_size)
        self.sealed: queue.Queue = queue.Queue(maxsize=max(2, cfg.writer.workers))
        self.metrics.watch_queue("polled", self.polled)
        self.metrics.watch_queue("sealed", self.sealed)
        self.consumer = ConsumerThread(
            cfg.kafka, self.polled, self.tracker, self.metrics, self.health, self.accounting,
            self.stop_polling, self.finish,
            assignment=self.replay.partitions if self.replay else None,
            start_offsets=self.replay.start if self.replay else None,
            end_offsets=self.replay.end if self.replay else None)
        self.batcher = batcher_mod.BatcherThread(
            cfg.batch, cfg.doris.database, cfg.doris.table, self.schema, self.polled, self.sealed,
            self.tracker, self.metrics, self.health, label_prefix=self.label_prefix,
            aligned_rows=self.replay.chunk_rows if self.replay else None)
        self.writers = [
            WriterThread(i, cfg.writer, self.sealed, self.loader, self.sink, self.tracker,
                         self.metrics, self.health, self.accounting, self.stopping, self.abort,
                         on_schema_error=self.schema.request_refresh, on_loaded=self.on_loaded)
            for i in range(cfg.writer.workers)]
        self.threads = [self.consumer, self.batcher, *self.writers]
        for t in self.threads:
            self.health.register_thread(t.name, t)

    def _start_status_server(self):
        if not self.cfg.server.listen:
            return
        from .config import redacted
        from .status_server import StatusServer
        self.status_server = StatusServer(self.cfg.server.listen, self.metrics.registry, self.health,
                                          lambda: redacted(self.cfg),
                                          ready_stall_s=self.cfg.server.ready_stall_s)
        self.status_server.start()
        log.info("metrics and health on http://%s:%d/", self.status_server.host,
                 self.status_server.port)

    # -- signals --------------------------------------------------------------------------------
    def install_signal_handlers(self):
        def handler(signum, _frame):
            self._signals += 1
            if self._signals == 1:
                log.info("got %s: loading what is in flight, then committing and exiting "
                         "(send it again to exit at once without committing)",
                         signal.Signals(signum).name)
                self.stopping.set()
            else:
                log.warning("second signal: exiting now without committing")
                logging.shutdown()
                os._exit(Interrupted.exit_code)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def request_stop(self):
        self.stopping.set()

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        self.health.set_phase("starting")
        self._build()
        self._start_status_server()
        try:
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
        while not self.stopping.is_set():
            err = self._first_error()
            if err is not None:
                return err
            if self.replay is not None and self._replay_read_all():
                return None
            time.sleep(0.1)
        return None

    def _replay_read_all(self) -> bool:
        """Replay is done reading when every partition reached its fixed end and nothing waits."""
        c = self.consumer
        return (c.ready.is_set() and set(self.replay.partitions) <= c.reached_end
                and c._held is None)

    def _drain(self):
        """Graceful stop: seal and load what is in flight, then commit (bounded by the timeout)."""
        self.health.set_phase("draining")
        deadline = time.monotonic() + self.cfg.shutdown_timeout_s
        self.stop_polling.set()
        while self.consumer._held is not None and self.consumer.is_alive() \
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
            self.abort.set()
        self.finish.set()
        self.consumer.join(30)
        return err or self.consumer.error

    def _fail(self, error):
        log.error("stopping: %s", error)
        self.health.fail(str(error))
        self.abort.set()
        self.stop_polling.set()
        try:    # end the batcher too (nothing it seals will be loaded or committed now)
            self.polled.put_nowait(batcher_mod.STOP)
        except queue.Full:
            pass
        self.finish.set()
        self.consumer.join(30)

    def _close(self):
        self.health.set_phase("stopped")
        for closer in (getattr(self, "sink", None), getattr(self, "loader", None)):
            if closer is not None:
                try:
                    closer.close()
                except Exception as e:  # noqa: BLE001
                    log.warning("closing %s: %s", type(closer).__name__, e)
        if self.status_server is not None:
            self.status_server.stop()

    def _summary(self) -> str:
        snap = self.accounting.snapshot()
        return ", ".join(f"{k}={v}" for k, v in snap.items())
