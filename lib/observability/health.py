"""Liveness and readiness: the two questions an orchestrator asks about a long-running sinker.

Liveness ("should I restart it?") fails only when restarting helps: a worker thread died, the
pipeline failed, or a load has run past its deadline (the Stream Load client cuts a load off at
its deadline, so one still running later is stuck where nothing else will end it). Readiness ("is it doing its job?") also fails when sinker is not moving data that
is waiting: no partitions, Doris failing for longer than ``stall_s``, or lag with no progress for
longer than ``stall_s``. A quiet topic stays ready: no traffic means no loads and no lag.

The pipeline threads report events; the checks are computed on demand from an injectable clock
so tests can walk every transition without sleeping.
"""
from __future__ import annotations

import threading
import time

PHASES = ("starting", "running", "draining", "stopped")


class Health:
    """Thread-safe health state of one pipeline."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._phase = "starting"
        self._running_since: float | None = None
        self._assigned = 0
        self._lag = 0
        self._lag_since: float | None = None      # when lag last went from 0 to > 0
        self._progress_at: float | None = None
        self._doris_ok_at: float | None = None
        self._doris_error: str | None = None
        self._doris_error_since: float | None = None   # first error after the last OK
        self._failed: str | None = None
        self._loads: dict[str, tuple[str, float, float]] = {}   # who -> (label, started, deadline_s)
        self._kafka_down: tuple[str, float] | None = None   # (why, since) while no broker answers
        self._last_error: tuple[str, float] | None = None   # kept after recovery, for `status`

    # -- events ---------------------------------------------------------------------------------
    def register_thread(self, name: str, thread: threading.Thread) -> None:
        with self._lock:
            self._threads[name] = thread

    def set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}: use one of {', '.join(PHASES)}")
        with self._lock:
            if phase == "running" and self._phase != "running":
                self._running_since = self._clock()
            self._phase = phase

    def set_assigned(self, n: int) -> None:
        with self._lock:
            self._assigned = n

    def set_lag(self, n: int) -> None:
        with self._lock:
            if n > 0 and self._lag <= 0:
                self._lag_since = self._clock()   # a burst after a quiet spell is not a stall yet
            self._lag = n

    def progress(self) -> None:
        """A batch was confirmed or offsets were committed."""
        with self._lock:
            self._progress_at = self._clock()

    def doris_ok(self) -> None:
        with self._lock:
            self._doris_ok_at = self._clock()
            self._doris_error = None
            self._doris_error_since = None

    def doris_error(self, msg: str) -> None:
        with self._lock:
            self._doris_error = msg
            self._last_error = (f"Doris: {msg}", self._clock())
            if self._doris_error_since is None:
                self._doris_error_since = self._clock()

    def load_started(self, who: str, label: str, deadline_s: float) -> None:
        """``who`` (a writer thread) started one Stream Load that must end within deadline_s."""
        with self._lock:
            self._loads[who] = (label, self._clock(), deadline_s)

    def load_finished(self, who: str) -> None:
        with self._lock:
            self._loads.pop(who, None)
    def kafka_down(self, msg: str) -> None:
        """No Kafka broker answers (the consumer saw it for a while): not ready until one does."""
        with self._lock:
            if self._kafka_down is None:
                self._kafka_down = (msg, self._clock())
                self._last_error = (f"Kafka: {msg}", self._clock())

    def kafka_ok(self) -> None:
        with self._lock:
            self._kafka_down = None

    def fail(self, msg: str) -> None:
        with self._lock:
            self._failed = msg or "failed"
            self._last_error = (self._failed, self._clock())

    def last_error(self) -> dict | None:
        """The last error reported (also after recovery): its message and how long ago."""
        with self._lock:
            last = self._last_error
        if last is None:
            return None
        return {"message": last[0], "age_s": round(self._clock() - last[1], 3)}

    # -- checks ---------------------------------------------------------------------------------
    def liveness(self) -> tuple[bool, dict]:
        """Alive unless failed, a started worker thread died while it should be running, or a load
        is stuck past its deadline."""
        now = self._clock()
        with self._lock:
            phase, failed = self._phase, self._failed
            threads = dict(self._threads)
            loads = dict(self._loads)
        states = {name: _thread_state(t) for name, t in threads.items()}
        dead = sorted(n for n, s in states.items() if s == "dead")
        reasons = []
        if failed:
            reasons.append(f"pipeline failed: {failed}")
        if dead and phase not in ("draining", "stopped"):
            reasons.append(f"threads died: {', '.join(dead)}")
        for who, (label, started, deadline_s) in sorted(loads.items()):
            if now - started > deadline_s:
                reasons.append(f"load stuck: {who} has been loading {label} for "
                               f"{now - started:.0f}s, past its {deadline_s:.0f}s deadline")
        return not reasons, {"phase": phase, "threads": states, "loads_in_progress": len(loads),
                             "reasons": reasons}

    def readiness(self, stall_s: float) -> tuple[bool, dict]:
        """Ready when running, owning partitions, Doris answering, and not stuck behind lag."""
        now = self._clock()
        with self._lock:
            phase, failed, assigned, lag = self._phase, self._failed, self._assigned, self._lag
            ok_at, err, err_since = self._doris_ok_at, self._doris_error, self._doris_error_since
            kafka_down = self._kafka_down
            since = max((t for t in (self._progress_at, self._running_since, self._lag_since)
                         if t is not None), default=None)
        reasons = []
        if failed:
            reasons.append(f"pipeline failed: {failed}")
        if phase != "running":
            reasons.append(f"phase is {phase}")
        if assigned <= 0:
            reasons.append("no partitions assigned")
        if kafka_down is not None:
            reasons.append(f"Kafka: {kafka_down[0]} (for {now - kafka_down[1]:.0f}s)")
        if err_since is not None and now - err_since > stall_s:
            reasons.append(f"Doris failing for {now - err_since:.0f}s: {err}")
        idle = None if since is None else now - since
        if lag > 0 and idle is not None and idle > stall_s:
            reasons.append(f"stuck: lag {lag} and no progress for {idle:.0f}s")
        detail = {
            "phase": phase,
            "assigned": assigned,
            "lag": lag,
            "seconds_since_progress": None if idle is None else round(idle, 3),
            "doris": {
                "last_ok_age_s": None if ok_at is None else round(now - ok_at, 3),
                "error": err,
                "failing_for_s": None if err_since is None else round(now - err_since, 3),
            },
            "stall_s": stall_s,
            "reasons": reasons,
        }
        return not reasons, detail


def _thread_state(t: threading.Thread) -> str:
    if t.ident is None:
        return "not_started"
    return "alive" if t.is_alive() else "dead"
