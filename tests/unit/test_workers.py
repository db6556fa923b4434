"""run --workers N: the parent's summaries of its workers, and how it passes signals on and reacts
to a worker that fails (real child processes: small Python scripts standing in for workers)."""
from __future__ import annotations

import signal
import sys
import textwrap

from sinker_lib import worker_process
from sinker_lib.commands import workers as w

CHILD = textwrap.dedent("""
    import os, signal, sys, time
    index = int(os.environ["SINKER_WORKER_INDEX"])
    log = sys.argv[1] + f"/signals-{index}"
    def on_signal(signum, frame):
        with open(log, "a") as f:
            f.write(f"{signum}\\n")
    signal.signal(signal.SIGTERM, on_signal)
    open(sys.argv[1] + f"/up-{index}", "w").close()
    if index == int(sys.argv[2]):
        while not all(os.path.exists(sys.argv[1] + f"/up-{i}") for i in range(int(sys.argv[4]))):
            time.sleep(0.02)     # the others handle SIGTERM by now
        sys.exit(int(sys.argv[3]))
    while not os.path.exists(log):
        time.sleep(0.02)
    time.sleep(0.3)     # a second copy of the signal, if one were sent, arrives in this time
    sys.exit(0)
""")


def supervisor(tmp_path, n, failing=-1, code=0):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return w.Supervisor(n, [sys.executable, str(script), str(tmp_path), str(failing), str(code), str(n)],
                        status_dir=None)


def signals_seen(tmp_path, index):
    p = tmp_path / f"signals-{index}"
    return p.read_text().split() if p.exists() else []


def wait_up(tmp_path, n):
    from tests.integration.support import wait_for
    wait_for(lambda: all((tmp_path / f"up-{i}").exists() for i in range(n)), 30, 0.02, "children up")


def test_a_stop_signal_delivered_twice_reaches_each_worker_once(tmp_path):
    sup = supervisor(tmp_path, 2)
    sup.start()
    wait_up(tmp_path, 2)
    sup.on_signal(signal.SIGTERM)
    sup.on_signal(signal.SIGTERM)     # the bootloader's or the process group's copy
    result = sup.watch()
    assert result.codes == [0, 0] and result.failed is None
    assert signals_seen(tmp_path, 0) == signals_seen(tmp_path, 1) == [str(int(signal.SIGTERM))]


def test_a_worker_that_fails_for_good_stops_the_others_with_its_code(tmp_path):
    sup = supervisor(tmp_path, 3, failing=1, code=3)
    sup.start()
    result = sup.watch()
    assert result.failed == 3
    assert result.codes == [0, 3, 0]
    assert signals_seen(tmp_path, 0) == signals_seen(tmp_path, 2) == [str(int(signal.SIGTERM))]


def test_a_transient_failure_leaves_the_others_running(tmp_path):
    sup = supervisor(tmp_path, 2, failing=0, code=4)
    sup.start()
    wait_up(tmp_path, 2)
    from tests.integration.support import wait_for
    wait_for(lambda: sup.children[0].poll() is not None, 30, 0.02, "worker 0 exited")
    assert sup.children[1].poll() is None
    assert signals_seen(tmp_path, 1) == []
    sup.on_signal(signal.SIGTERM)
    result = sup.watch()
    assert result.codes == [4, 0] and result.failed is None


def test_child_listens_on_loopback_only_when_the_parent_serves(monkeypatch):
    monkeypatch.delenv(worker_process.ENV_INDEX, raising=False)
    assert worker_process.child_overrides() == {}
    monkeypatch.setenv(worker_process.ENV_INDEX, "1")
    monkeypatch.delenv(worker_process.ENV_DIR, raising=False)
    assert worker_process.child_overrides() == {"server.listen": ""}
    monkeypatch.setenv(worker_process.ENV_DIR, "/tmp/somewhere")
    assert worker_process.child_overrides() == {"server.listen": "127.0.0.1:0"}


def ok(**extra):
    return {"status": "ok", "reasons": [], **extra}


def fail(*reasons):
    return {"status": "fail", "reasons": list(reasons)}


def test_ready_when_every_worker_is_ready_or_only_idle():
    ready, doc = w.summarise_readiness([(0, ok(), None), (1, ok(), None)])
    assert ready and doc["ready_workers"] == 2
    ready, doc = w.summarise_readiness([(0, ok(), None), (1, fail("no partitions assigned"), None)])
    assert ready, doc
    ready, doc = w.summarise_readiness([(0, fail("no partitions assigned"), None)])
    assert not ready and doc["reasons"] == ["no worker has partitions assigned"]
    ready, doc = w.summarise_readiness([(0, ok(), None), (1, fail("Doris failing for 200s: x"), None)])
    assert not ready and doc["reasons"] == ["worker 1: Doris failing for 200s: x"]
    ready, doc = w.summarise_readiness([(0, ok(), None), (1, None, "starting (no status yet)")])
    assert not ready and doc["reasons"] == ["worker 1 starting (no status yet)"]


def test_alive_unless_a_worker_died_or_fails():
    alive, _ = w.summarise_liveness([(0, ok(), None), (1, None, "starting (no status yet)")])
    assert alive
    alive, doc = w.summarise_liveness([(0, ok(), None), (1, None, "exited with code 4")])
    assert not alive and doc["reasons"] == ["worker 1 exited with code 4"]
    alive, doc = w.summarise_liveness([(0, fail("threads died: writer-0"), None)])
    assert not alive and doc["reasons"] == ["worker 0: threads died: writer-0"]
