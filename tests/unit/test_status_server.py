"""StatusServer: real HTTP requests against a server on 127.0.0.1 and a free port."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from sinker_lib.errors import ConfigError
from sinker_lib.observability.health import Health
from sinker_lib.observability.metrics import Metrics
from sinker_lib.config import HostPort
from sinker_lib.observability.status_server import StatusServer

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never via a proxy


@dataclass(frozen=True)
class FakeConfig:
    password: str = "***"
    topics: tuple = ("events",)


def get(srv, path, accept=None, headers=None, full=False):
    req = urllib.request.Request(f"http://{srv.host}:{srv.port}{path}", headers=headers or {})
    if accept:
        req.add_header("Accept", accept)
    try:
        with OPENER.open(req, timeout=10) as r:
            answer = r.status, r.headers.get("Content-Type"), r.read(), r.headers
    except urllib.error.HTTPError as e:
        answer = e.code, e.headers.get("Content-Type"), e.read(), e.headers
    return answer if full else answer[:3]


@pytest.fixture
def parts():
    metrics, health = Metrics(), Health()
    srv = StatusServer(HostPort("127.0.0.1", 0), metrics.registry, health, lambda: FakeConfig(),
                       ready_stall_s=60, debug=True)
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
    srv = StatusServer(HostPort("127.0.0.1", 0), Metrics().registry, Health(), boom, debug=True)
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


# -- /debug/* is opt-in, and may want a token ------------------------------------------------------
@pytest.fixture
def start():
    made = []

    def make(**kw):
        srv = StatusServer(HostPort("127.0.0.1", 0), Metrics().registry, Health(),
                           lambda: FakeConfig(), **kw)
        srv.start()
        made.append(srv)
        return srv
    yield make
    for srv in made:
        srv.stop()


def test_debug_pages_are_off_by_default(start):
    srv = start()
    for path in ("/debug/threads", "/debug/config"):
        status, _, body = get(srv, path)
        assert status == 404 and b"set server.debug: true" in body, path
        assert b"MainThread" not in body and b"password" not in body
    assert get(srv, "/health")[0] == 200 and get(srv, "/metrics")[0] == 200
    status, _, index = get(srv, "/")
    assert status == 200 and index.count(b"[off: set server.debug: true]") == 2


def test_debug_token_is_required_when_set(start):
    srv = start(debug=True, debug_token="t0k-123")
    for path in ("/debug/threads", "/debug/config"):
        status, _, body, headers = get(srv, path, full=True)
        assert status == 401 and b"Authorization: Bearer" in body, path
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert b"t0k-123" not in body and b"MainThread" not in body
        for wrong in ("Bearer t0k-12", "Bearer t0k-1234", "Basic t0k-123", "t0k-123", "Bearer "):
            assert get(srv, path, headers={"Authorization": wrong})[0] == 401, (path, wrong)
        status, _, body = get(srv, path, headers={"Authorization": "Bearer t0k-123"})
        assert status == 200 and body, path
    assert get(srv, "/debug/config", headers={"Authorization": "bearer t0k-123"})[0] == 200
    # the other endpoints never want it: Prometheus and probes scrape without
    for path in ("/metrics", "/health", "/"):
        assert get(srv, path)[0] == 200, path
    index = get(srv, "/")[2]
    assert index.count(b"[needs Authorization: Bearer $SINKER_STATUS_TOKEN]") == 2
    assert b"t0k-123" not in index


def test_debug_without_token_is_open_and_the_index_says_nothing_more(start):
    srv = start(debug=True)
    assert get(srv, "/debug/threads")[0] == 200
    index = get(srv, "/")[2]
    assert b"[off" not in index and b"[needs" not in index and b"/debug/config" in index
