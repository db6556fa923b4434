"""Health: every liveness/readiness transition, driven by a fake clock (no sleeping)."""
from __future__ import annotations

import threading

import pytest

from sinker_lib.observability.health import Health

STALL = 120.0


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t

    def advance(self, s):
        self.t += s


@pytest.fixture
def clock():
    return Clock()


def running(clock, assigned=3) -> Health:
    h = Health(clock=clock)
    h.set_phase("running")
    h.set_assigned(assigned)
    return h


def reasons(h):
    return h.readiness(STALL)[1]["reasons"]


def test_startup_is_alive_but_not_ready(clock):
    h = Health(clock=clock)
    h.set_phase("starting")
    t = threading.Thread(target=lambda: None)      # registered before it is started
    h.register_thread("writer-0", t)
    ok, detail = h.liveness()
    assert ok and detail["threads"] == {"writer-0": "not_started"}
    ok, detail = h.readiness(STALL)
    assert not ok
    assert "phase is starting" in detail["reasons"]
    assert "no partitions assigned" in detail["reasons"]


def test_running_with_partitions_is_ready(clock):
    h = running(clock)
    ok, detail = h.readiness(STALL)
    assert ok, detail
    assert detail["phase"] == "running" and detail["assigned"] == 3
    assert detail["doris"]["last_ok_age_s"] is None          # no load attempted yet: fine


def test_running_without_partitions_is_not_ready(clock):
    h = running(clock, assigned=0)
    assert reasons(h) == ["no partitions assigned"]
    h.set_assigned(2)
    assert reasons(h) == []


def test_quiet_topic_stays_ready(clock):
    h = running(clock)
    h.doris_ok()
    clock.advance(10 * STALL)            # no traffic: no loads, no lag
    h.set_lag(0)
    assert h.readiness(STALL)[0]


def test_doris_down_then_recovery(clock):
    h = running(clock)
    h.doris_ok()
    h.progress()
    h.set_lag(500)
    clock.advance(5)
    h.doris_error("connection refused")
    assert h.readiness(STALL)[0], "a fresh error is not yet an outage"
    clock.advance(STALL / 2)
    h.doris_error("connection refused")  # still failing; the outage started at the first error
    assert h.readiness(STALL)[0]
    clock.advance(STALL / 2 + 1)
    ok, detail = h.readiness(STALL)
    assert not ok
    assert any(r.startswith("Doris failing for") and "connection refused" in r for r in detail["reasons"])
    assert any(r.startswith("stuck: lag 500") for r in detail["reasons"])
    assert detail["doris"]["error"] == "connection refused"
    assert h.liveness()[0], "Doris being down is not a reason to restart sinker"
    # recovery
    h.doris_ok()
    h.progress()
    ok, detail = h.readiness(STALL)
    assert ok, detail
    assert detail["doris"]["error"] is None and detail["doris"]["last_ok_age_s"] == 0


def test_stuck_with_lag_and_no_progress(clock):
    h = running(clock)
    h.set_lag(10)
    clock.advance(STALL - 1)
    assert h.readiness(STALL)[0]          # measured from when running started
    clock.advance(2)
    assert any(r.startswith("stuck") for r in reasons(h))
    h.progress()
    assert h.readiness(STALL)[0]
    clock.advance(STALL + 1)
    assert not h.readiness(STALL)[0]
    h.set_lag(0)                          # caught up: nothing to make progress on
    assert h.readiness(STALL)[0]


def test_failure_is_neither_alive_nor_ready(clock):
    h = running(clock)
    h.fail("Doris refused: unknown table")
    ok, detail = h.liveness()
    assert not ok and detail["reasons"] == ["pipeline failed: Doris refused: unknown table"]
    assert "pipeline failed: Doris refused: unknown table" in reasons(h)


def test_dead_thread_fails_liveness_only_while_running(clock):
    h = running(clock)
    t = threading.Thread(target=lambda: None, name="batcher")
    t.start()
    t.join()
    h.register_thread("batcher", t)
    alive = threading.Event()
    w = threading.Thread(target=alive.wait, name="writer-0")
    w.start()
    h.register_thread("writer-0", w)
    try:
        ok, detail = h.liveness()
        assert not ok
        assert detail["threads"] == {"batcher": "dead", "writer-0": "alive"}
        assert detail["reasons"] == ["threads died: batcher"]
        for phase in ("draining", "stopped"):
            h.set_phase(phase)
            assert h.liveness()[0]
            assert f"phase is {phase}" in reasons(h)
    finally:
        alive.set()
        w.join()


def test_unknown_phase_is_rejected():
    with pytest.raises(ValueError, match="use one of"):
        Health().set_phase("paused")


def test_detail_is_json_friendly(clock):
    import json
    h = running(clock)
    h.doris_error("x")
    json.dumps(h.readiness(STALL)[1])
    json.dumps(h.liveness()[1])


def test_a_load_past_its_deadline_fails_liveness_until_it_ends(clock):
    h = running(clock)
    h.load_started("writer-0", "sinker_db_t_abc", 630.0)
    clock.advance(600)
    ok, detail = h.liveness()
    assert ok and detail["loads_in_progress"] == 1          # long, but within its deadline
    clock.advance(31)
    ok, detail = h.liveness()
    assert not ok
    assert detail["reasons"] == ["load stuck: writer-0 has been loading sinker_db_t_abc for 631s, "
                                 "past its 630s deadline"]
    h.load_finished("writer-0")
    ok, detail = h.liveness()
    assert ok and detail["loads_in_progress"] == 0
    h.load_finished("writer-0")                              # finishing twice is harmless
