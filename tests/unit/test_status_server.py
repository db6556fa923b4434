"""StatusServer: real HTTP requests against a server on 127.0.0.1 and a free port."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from lib.errors import ConfigError
from lib.observability.health import Health
from lib.observability.metrics import Metrics
from lib.config import HostPort
from lib.observability.status_server import StatusServer

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never via a proxy


@dataclass(frozen=True)
class FakeConfig:
    password: str = "***"
    topics: tuple = ("events",)


def get(srv, path, accept=None):
    req = urllib.request.Request(f"http://{srv.host}:{srv.port}{path}")
    if accept:
        req.add_header("Accept", accept)
    try:
        with OPENER.open(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture
def parts():
    metrics, health = Metrics(), Health()
    srv = StatusServer(HostPort("127.0.0.1", 0), metrics.registry, health, lambda: FakeConfig(), ready_stall_s=60)
    srv.start()
    yield srv, metrics, health
    srv.stop()


def test_picks_a_free_port_on_loopback(parts):
    srv, _, _ = parts
    assert srv.host == "127.0.0.1" and srv.port > 0


def test_metrics_exposition(parts):
    srv, metrics, _ = parts
    metrics.observe_retry("db.t", "timeout")
    metrics.accounting.consumed({("t", 0): 7})
    status, ctype, body = get(srv, "/metrics")
    text = body.decode()
    assert status == 200 and ctype.startswith("text/plain")
    assert 'sinker_load_retries_total{reason="timeout",table="db.t"} 1.0' in text
    assert 'sinker_messages_consumed_total{partition="0",topic="t"} 7.0' in text
    status, ctype, body = get(srv, "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and "openmetrics" in ctype and body.decode().endswith("# EOF\n")


def test_health_ok_then_failed(parts):
    srv, _, health = parts
    status, ctype, body = get(srv, "/health")
    doc = json.loads(body)
    assert status == 200 and ctype == "application/json" and doc["status"] == "ok"
    health.fail("retries exhausted")
    status, _, body = get(srv, "/health")
    doc = json.loads(body)
    assert status == 503 and doc["status"] == "fail"
    assert doc["reasons"] == ["pipeline failed: retries exhausted"]


def test_ready_transitions(parts):
    srv, _, health = parts
    status, _, body = get(srv, "/ready")
    assert status == 503 and "phase is starting" in json.loads(body)["reasons"]
    health.set_phase("running")
    health.set_assigned(2)
    status, _, body = get(srv, "/ready")
    doc = json.loads(body)
    assert status == 200 and doc["status"] == "ok" and doc["assigned"] == 2 and doc["stall_s"] == 60


def test_debug_threads_lists_every_thread_with_stacks(parts):
    srv, _, _ = parts
    gate = threading.Event()
    t = threading.Thread(target=gate.wait, name="writer-7", daemon=True)
    t.start()
    try:
        status, _, body = get(srv, "/debug/threads")
    finally:
        gate.set()
        t.join()
    text = body.decode()
    assert status == 200
    assert "--- thread writer-7" in text and "--- thread MainThread" in text
    assert "--- thread status-server" in text
    assert "in wait" in text          # a stack frame of the waiting thread


def test_debug_config_is_json_of_config_fn(parts):
    srv, _, _ = parts
    status, ctype, body = get(srv, "/debug/config")
    assert status == 200 and ctype == "application/json"
    assert json.loads(body) == {"password": "***", "topics": ["events"]}


def test_index_and_not_found(parts):
    srv, _, _ = parts
    status, _, body = get(srv, "/")
    assert status == 200 and b"/metrics" in body and b"/debug/threads" in body
    status, _, body = get(srv, "/nope")
    assert status == 404 and b"not found: /nope" in body


def test_a_failing_page_answers_500_and_server_keeps_serving():
    def boom():
        raise RuntimeError("config exploded")
    srv = StatusServer(HostPort("127.0.0.1", 0), Metrics().registry, Health(), boom)
    srv.start()
    try:
        status, _, body = get(srv, "/debug/config")
        assert status == 500 and b"config exploded" in body
        assert get(srv, "/health")[0] == 200
    finally:
        srv.stop()


def test_stop_frees_the_port_and_is_idempotent():
    srv = StatusServer(HostPort("127.0.0.1", 0), Metrics().registry, Health(), dict)
    srv.start()
    port = srv.port
    srv.stop()
    srv.stop()
    again = StatusServer(HostPort("127.0.0.1", port), Metrics().registry, Health(), dict)
    again.start()
    try:
        assert again.port == port and get(again, "/health")[0] == 200
    finally:
        again.stop()


def test_port_in_use_is_a_config_error(parts):
    srv, _, _ = parts
    other = StatusServer(HostPort("127.0.0.1", srv.port), Metrics().registry, Health(), dict)
    with pytest.raises(ConfigError, match="Address already in use.*server.listen"):
        other.start()
    assert get(srv, "/health")[0] == 200
