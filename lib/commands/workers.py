"""``sinker run --workers N``: N consumer processes in one consumer group.

Python runs one core per process; Kafka spreads the partitions over the group's members, which is
also how users scale across machines. The parent supervises:

- Signals. Each child runs in its own session, so a terminal's Ctrl-C or ``timeout`` (which
  signal the whole process group) reach only the parent, and the parent passes each stop on to
  every child exactly once. A copy of the same stop arriving within ``SAME_SIGNAL_S`` (the
  PyInstaller bootloader forwards what it gets, and a group signal reaches it too) is not passed
  on again; a second stop after that is, and the children exit at once.
- One status endpoint. The parent alone binds ``server.listen``: /metrics adds up the children's
  metrics with prometheus-client's multiprocess mode (each child writes them under
  ``PROMETHEUS_MULTIPROC_DIR``), /health and /ready summarise each child's own status server,
  which listens on an ephemeral loopback port it writes into the workers' directory.
  ``/workers`` lists them and ``/worker/<i>/<page>`` shows one child's page (its /debug/threads).
- Failures. A worker that exits with a code that a restart cannot fix (config, refused, bug)
  stops the others and the command exits with its code; one that exits 4 (a dependency down, a
  retry budget spent) or is killed leaves the others running: they take over its partitions.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from ..lifecycle import SAME_SIGNAL_S
from ..worker_process import ENV_DIR, ENV_INDEX, ENV_METRICS_DIR, ENV_PARENT

log = logging.getLogger("sinker.workers")

TRANSIENT_EXITS = frozenset({0, 4})    # exit codes that leave the other workers running
CHILD_TIMEOUT_S = 2.0                  # how long the parent waits for a child's status page


# -- the parent's side ------------------------------------------------------------------------
def worker_command(config_path: str, overrides: dict | None) -> list[str]:
    if getattr(sys, "frozen", False):          # the PyInstaller binary
        cmd = [sys.executable, "run", "-c", config_path]
    else:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        cmd = [sys.executable, os.path.join(root, "sinker.py"), "run", "-c", config_path]
    if overrides and overrides.get("kafka.group_id"):
        cmd += ["--group-id", overrides["kafka.group_id"]]
    return cmd


@dataclass
class WorkersResult:
    codes: list            # each worker's return code (negative: killed by that signal)
    failed: int | None     # the exit code of a worker that failed the whole command


def _fetch(port: int, path: str) -> tuple[int, bytes, str]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=CHILD_TIMEOUT_S) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "application/json")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "application/json")


class Supervisor:
    """The children of one ``run --workers N`` and what the parent knows about them."""

    def __init__(self, n: int, command: list[str], status_dir: str | None):
        self.n = n
        self.command = command
        self.status_dir = status_dir
        self.children: list[subprocess.Popen] = []
        self.codes: dict[int, int] = {}
        self.stopping = False
        self._last_forward: float | None = None
        self._forwarded: list[int] = []      # signals passed on, logged from the main loop
        self._duplicates = 0

    def start(self) -> None:
        base = {**os.environ, ENV_PARENT: str(os.getpid())}
        if self.status_dir:
            base[ENV_DIR] = self.status_dir
            base[ENV_METRICS_DIR] = self.status_dir
        for i in range(self.n):
            # own session: a signal to the parent's process group does not reach the child
            self.children.append(subprocess.Popen(self.command, env={**base, ENV_INDEX: str(i)},
                                                  start_new_session=True))

    # -- signals (called from the signal handler: no logging here) ------------------------------
    def on_signal(self, signum: int, _frame=None) -> None:
        now = time.monotonic()
        if self._last_forward is not None and now - self._last_forward < SAME_SIGNAL_S:
            self._duplicates += 1
            return
        self._last_forward = now
        self._forwarded.append(signum)
        self.stopping = True
        self._send(signum)

    def _send(self, signum: int) -> None:
        for c in self.children:
            if c.poll() is None:
                try:
                    c.send_signal(signum)
                except ProcessLookupError:
                    pass

    def stop_all(self) -> None:
        """Stop the children (one SIGTERM each: they drain and commit)."""
        if not self.stopping:
            self.stopping = True
            self._last_forward = time.monotonic()
            self._send(signal.SIGTERM)

    # -- watching ---------------------------------------------------------------------------------
    def watch(self) -> WorkersResult:
        failed = None
        while len(self.codes) < self.n:
            self._log_signals()
            for i, c in enumerate(self.children):
                if i in self.codes or c.poll() is None:
                    continue
                self.codes[i] = c.returncode
                self._forget(i, c.pid)
                if c.returncode in TRANSIENT_EXITS or self.stopping:
                    if c.returncode != 0 and not self.stopping:
                        log.error("worker %d exited with %d; the others take over its partitions "
                                  "after the group rebalances", i, c.returncode)
                    continue
                if c.returncode < 0:
                    log.error("worker %d was killed by %s; the others take over its partitions "
                              "after the group rebalances", i, signal.Signals(-c.returncode).name)
                    continue
                failed = c.returncode
                log.error("worker %d failed with exit code %d (see its log above): stopping the "
                          "other workers", i, c.returncode)
                self.stop_all()
            time.sleep(0.1)
        self._log_signals()
        return WorkersResult([self.codes[i] for i in range(self.n)], failed)

    def _log_signals(self) -> None:
        while self._forwarded:
            name = signal.Signals(self._forwarded.pop(0)).name
            log.info("got %s: passed it on to each worker once", name)
        if self._duplicates:
            log.info("ignored %d copies of the same stop signal (arrived within %.0fs)",
                     self._duplicates, SAME_SIGNAL_S)
            self._duplicates = 0

    def _forget(self, index: int, pid: int) -> None:
        if not self.status_dir:
            return
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid, self.status_dir)   # its live gauges leave the sums
        try:
            os.remove(os.path.join(self.status_dir, f"worker-{index}.json"))
        except FileNotFoundError:
            pass

    # -- what the parent's status server asks ---------------------------------------------------
    def worker_port(self, index: int) -> int | None:
        try:
            with open(os.path.join(self.status_dir, f"worker-{index}.json"), encoding="utf-8") as f:
                return int(json.load(f)["port"])
        except (OSError, ValueError, KeyError):
            return None

    def describe(self) -> list[dict]:
        out = []
        for i, c in enumerate(self.children):
            code = c.poll()
            out.append({"index": i, "pid": c.pid, "port": self.worker_port(i),
                        "state": "running" if code is None else "exited", "exit_code": code})
        return out

    def page(self, index: int, path: str) -> tuple[int, bytes, str] | None:
        """One child's status page, or None when it is not serving (starting or gone)."""
        if not 0 <= index < len(self.children) or self.children[index].poll() is not None:
            return None
        port = self.worker_port(index)
        if port is None:
            return None
        try:
            return _fetch(port, path)
        except OSError:
            return None

    def _each(self, path: str) -> list[tuple[int, dict | None, str | None]]:
        """(index, the child's JSON answer, why there is none) for each child."""
        out = []
        for i, c in enumerate(self.children):
            code = c.poll()
            if code is not None:
                out.append((i, None, f"exited with code {code}"))
                continue
            got = self.page(i, path)
            if got is None:
                out.append((i, None, "starting (no status yet)"))
                continue
            try:
                out.append((i, json.loads(got[1]), None))
            except ValueError:
                out.append((i, None, f"answered {path} with HTTP {got[0]}"))
        return out


class WorkersHealth:
    """/health and /ready of the parent, from each child's own (the Health interface)."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor

    def liveness(self) -> tuple[bool, dict]:
        return summarise_liveness(self.supervisor._each("/health"))

    def readiness(self, _stall_s: float) -> tuple[bool, dict]:
        return summarise_readiness(self.supervisor._each("/ready"))


def summarise_liveness(answers) -> tuple[bool, dict]:
    """Alive when every worker is: one that died or failed makes the whole command unhealthy (a
    restart brings its share of the work back)."""
    reasons, workers = [], {}
    for i, doc, why in answers:
        workers[str(i)] = doc if doc is not None else {"status": "fail", "reasons": [why]}
        if doc is None and why.startswith("exited"):
            reasons.append(f"worker {i} {why}")
        elif doc is not None and doc.get("status") != "ok":
            reasons += [f"worker {i}: {r}" for r in doc.get("reasons", [])] or [f"worker {i} failing"]
    return not reasons, {"workers": workers, "reasons": reasons}


def summarise_readiness(answers) -> tuple[bool, dict]:
    """Ready when every worker is ready; a worker whose only reason is that it owns no partition
    (more workers than partitions) does not count against it, as long as one worker is ready."""
    reasons, workers, ready = [], {}, 0
    for i, doc, why in answers:
        workers[str(i)] = doc if doc is not None else {"status": "fail", "reasons": [why]}
        if doc is None:
            reasons.append(f"worker {i} {why}")
        elif doc.get("status") == "ok":
            ready += 1
        elif doc.get("reasons") != ["no partitions assigned"]:
            reasons += [f"worker {i}: {r}" for r in doc.get("reasons", [])] or [f"worker {i} not ready"]
    if not ready and not reasons:
        reasons.append("no worker has partitions assigned")
    return not reasons, {"workers": workers, "ready_workers": ready, "reasons": reasons}


def _status_server(cfg, supervisor: Supervisor):
    """The parent's status server: the children's metrics summed, their health summarised."""
    from prometheus_client import CollectorRegistry, Info, ProcessCollector, multiprocess

    from ..config import redacted
    from ..observability.metrics import _build_labels
    from ..observability.status_server import StatusServer, metric_samples, status_document

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=supervisor.status_dir)
    ProcessCollector(registry=registry)
    Info("sinker_build", "sinker version and key libraries.", registry=registry).info(_build_labels())

    class ParentServer(StatusServer):
        def page(self, path, accept, authorization=None):
            if path == "/workers":
                body = json.dumps(supervisor.describe(), indent=2) + "\n"
                return 200, "application/json", body.encode()
            if path.startswith("/worker/"):
                index, _, rest = path[len("/worker/"):].partition("/")
                got = supervisor.page(int(index), "/" + rest) if index.isdigit() else None
                if got is None:
                    return 404, "text/plain; charset=utf-8", f"no worker serving at {path}\n".encode()
                status, body, ctype = got
                return status, ctype, body
            if path == "/status":
                return 200, "application/json", (json.dumps(self.status(), indent=2) + "\n").encode()
            return super().page(path, accept, authorization)

        def status(self) -> dict:
            """The parent's /status: the summed metrics, the summarised health, and per worker
            its state, its own reasons and its batches waiting for their cuts."""
            children = supervisor._each("/status")
            docs = [doc for _, doc, _ in children if doc is not None]
            errors = [d["last_error"] for d in docs if d.get("last_error")]
            health = WorkersHealth(supervisor)
            workers = [{"index": i, "state": doc["state"] if doc else why,
                        "reasons": doc["reasons"] if doc else [],
                        "assigned": doc.get("assigned") if doc else None} for i, doc, why in children]
            return status_document(
                metric_samples(registry), health.liveness(), health.readiness(0),
                {"workers": workers, "table": docs[0]["table"] if docs else None,
                 "last_error": min(errors, key=lambda e: e["age_s"]) if errors else None,
                 "batches_waiting_for_cut": sum(d["batches_waiting_for_cut"] for d in docs),
                 "batches_pending": sum(d["batches_pending"] for d in docs)})

    return ParentServer(cfg.server.address, registry, WorkersHealth(supervisor),
                        lambda: redacted(cfg), ready_stall_s=cfg.server.ready_stall_s)


def run_workers(cfg, n: int, config_path: str, overrides: dict | None = None) -> WorkersResult:
    """Start n workers and wait for all of them; see the module docstring for signals, the status
    endpoint and failures."""
    status_dir = tempfile.mkdtemp(prefix="sinker-workers-") if cfg.server.address else None
    supervisor = Supervisor(n, worker_command(config_path, overrides), status_dir)
    server = None
    try:
        if status_dir:
            server = _status_server(cfg, supervisor)
            server.start()       # before the children: a busy port fails the command at once
            log.info("metrics and health of %d workers on http://%s:%d/ (one worker's pages: "
                     "/worker/<i>/...)", n, server.host, server.port)
        signal.signal(signal.SIGINT, supervisor.on_signal)
        signal.signal(signal.SIGTERM, supervisor.on_signal)
        supervisor.start()
        return supervisor.watch()
    finally:
        if server is not None:
            server.stop()
        if status_dir:
            shutil.rmtree(status_dir, ignore_errors=True)
