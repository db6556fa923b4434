"""``sinker run --workers N``: N consumer processes in one consumer group.

Python runs one core per process; Kafka spreads the partitions over the group's members, which is
also how users scale across machines. The parent only supervises: it forwards SIGINT/SIGTERM to
every child and returns their exit codes (sinker.py turns them into its own).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

log = logging.getLogger("sinker.workers")


def worker_command(config_path: str, overrides: dict | None) -> list[str]:
    if getattr(sys, "frozen", False):          # the PyInstaller binary
        cmd = [sys.executable, "run", "-c", config_path]
    else:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        cmd = [sys.executable, os.path.join(root, "sinker.py"), "run", "-c", config_path]
    if overrides and overrides.get("kafka.group_id"):
        cmd += ["--group-id", overrides["kafka.group_id"]]
    return cmd


def run_workers(cfg, n: int, config_path: str, overrides: dict | None = None) -> list[int]:
    """Start n workers and wait for all; a signal is passed on to each of them. Returns each
    worker's return code (negative: killed by that signal)."""
    children = [subprocess.Popen(worker_command(config_path, overrides),
                                 env={**os.environ, "SINKER_WORKER_INDEX": str(i)})
                for i in range(n)]
    signals = []

    def forward(signum, _frame):
        signals.append(signum)
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = {}
    while len(codes) < n:
        for i, c in enumerate(children):
            if i not in codes and c.poll() is not None:
                codes[i] = c.returncode
                if c.returncode != 0 and not signals:
                    log.error("worker %d exited with %d; the others take over its partitions "
                              "after the group rebalances", i, c.returncode)
        time.sleep(0.2)
    return [codes[i] for i in range(n)]
