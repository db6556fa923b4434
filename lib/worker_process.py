"""What a process started by ``sinker run --workers N`` knows and does as one worker: its index
(in its logs and /debug), its parent (it stops when the parent dies), and where it tells the
parent its status port. Set through the environment by lib/commands/workers.py's Supervisor;
a process run on its own has none of it."""
from __future__ import annotations

import json
import os
import signal
import sys

ENV_INDEX = "SINKER_WORKER_INDEX"      # the child's index, in its logs
ENV_DIR = "SINKER_WORKER_DIR"          # where a child writes its status port (parent serves)
ENV_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
ENV_PARENT = "SINKER_WORKER_PARENT"    # the supervisor's pid (see follow_parent)


def worker_index() -> int | None:
    """This process's index when it runs as one of ``run --workers N``, else None."""
    value = os.environ.get(ENV_INDEX)
    return int(value) if value and value.isdigit() else None


def child_overrides() -> dict:
    """A child never binds server.listen (the parent does): its status server takes an ephemeral
    loopback port when the parent serves, and stays off when it does not."""
    if worker_index() is None:
        return {}
    return {"server.listen": "127.0.0.1:0" if os.environ.get(ENV_DIR) else ""}


def follow_parent() -> None:
    """A worker stops like on SIGTERM (drain, commit) when its parent dies: in a session of its
    own, nothing else would tell it. Linux, not under the PyInstaller binary (there the worker's
    parent is its own bootloader, which outlives the supervisor)."""
    parent = os.environ.get(ENV_PARENT, "")
    if worker_index() is None or not parent.isdigit() or getattr(sys, "frozen", False) \
            or not sys.platform.startswith("linux"):
        return
    import ctypes
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != int(parent):       # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def announce_status(port: int) -> None:
    """Tell the parent where this child's status server listens (atomic: write, then rename)."""
    index, where = worker_index(), os.environ.get(ENV_DIR)
    if index is None or not where:
        return
    path = os.path.join(where, f"worker-{index}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"index": index, "pid": os.getpid(), "port": port}, f)
    os.replace(path + ".tmp", path)
