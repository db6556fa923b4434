"""Operating sinker, the parts without a broker: the /status document from metrics and health
(pure), the route, the rendering, the progress line's numbers, structured log fields, the lag
refresh when a commit passes the known end offset, and Kafka errors (a missing topic named with
the closest ones, topics never auto-created, a broker outage said once each way and in /ready,
kafka-python's connection noise dropped)."""
from __future__ import annotations

import io
import json
import logging

import pytest

from sinker_lib.commands import status as st
from sinker_lib.config import HostPort, LoggingConfig
from sinker_lib.errors import ConfigError, StatusUnavailable
from sinker_lib.observability import logs
from sinker_lib.observability.health import Health
from sinker_lib.observability.metrics import Metrics, progress_fields
from sinker_lib.observability.status_server import StatusServer, metric_samples, status_document
from tests.fakes import Clock, recs
from tests.unit.test_config import build
from tests.unit.test_status_server import get


def busy_metrics():
    m = Metrics()
    m.accounting.consumed({("t", 0): 7, ("t", 1): 3})
    m.accounting.loaded(6)
    m.accounting.dead_lettered(1)
    m.set_end_offsets({("t", 0): 20, ("t", 1): 3})
    m.set_committed({("t", 0): 7})
    m.observe_load("db.t", "success", {"NumberLoadedRows": 6}, 0.1)
    m.observe_load("db.t", "http_500", None, 0.1)
    m.observe_retry("db.t", "http_500")
    m.observe_dead_letters("db.t", [type("DL", (), {"reason": "conversion: qty", "column": "qty"})()])
    return m


def test_status_document_has_state_why_partitions_tables_and_totals():
    clock = Clock()
    h = Health(clock=clock)
    h.set_phase("running")
    h.set_assigned(2)
    h.doris_error("HTTP 500")
    clock.advance(200)
    doc = status_document(metric_samples(busy_metrics().registry), h.liveness(), h.readiness(120),
                          {"batches_waiting_for_cut": 2, "last_error": h.last_error()})
    assert doc["state"] == "not ready" and doc["alive"] and not doc["ready"]
    assert doc["reasons"] == ["Doris failing for 200s: HTTP 500"]
    assert doc["phase"] == "running" and doc["assigned"] == 2
    assert doc["partitions"] == [
        {"topic": "t", "partition": 0, "committed": 7, "end": 20, "lag": 13, "consumed": 7},
        {"topic": "t", "partition": 1, "committed": None, "end": 3, "lag": None, "consumed": 3}]
    assert doc["lag"] == 13
    assert doc["tables"] == {"db.t": {"loads": {"success": 1, "http_500": 1}, "rows_loaded": 6,
                                      "retries": {"http_500": 1}, "dead_letters": {"conversion": 1}}}
    assert doc["totals"] == {"consumed": 10, "loaded": 6, "dead_lettered": 1, "pending": 3}
    assert doc["batches_waiting_for_cut"] == 2
    assert doc["last_error"] == {"message": "Doris: HTTP 500", "age_s": 200.0}
    h.doris_ok()
    assert h.last_error()["message"] == "Doris: HTTP 500"      # kept after recovery


def test_status_route_and_rendering():
    m, h = Metrics(), Health()
    srv = StatusServer(HostPort("127.0.0.1", 0), m.registry, h, lambda: {}, ready_stall_s=60,
                       status_fn=lambda: status_document(metric_samples(m.registry), h.liveness(),
                                                         h.readiness(60), {"table": "db.t"}))
    srv.start()
    try:
        status, ctype, body = get(srv, "/status")
        assert status == 200 and ctype == "application/json"
        doc = st.fetch(f"http://{srv.host}:{srv.port}")
        assert doc == json.loads(body) and doc["state"] == "not ready"
    finally:
        srv.stop()
    with pytest.raises(StatusUnavailable, match="is sinker running there"):
        st.fetch(f"http://{srv.host}:{srv.port}", timeout_s=1)
    from rich.console import Console
    doc = status_document(metric_samples(busy_metrics().registry), h.liveness(), h.readiness(60),
                          {"table": "db.t", "last_error": {"message": "Doris: boom", "age_s": 3},
                           "workers": [{"index": 0, "state": "ready", "reasons": [], "assigned": 2}]})
    out = io.StringIO()
    Console(file=out, width=160).print(st.render(doc, "http://x:1"))
    text = out.getvalue()
    for word in ("NOT READY", "why: phase is starting", "partitions", "success 1", "conversion 1",
                 "last error (3s ago): Doris: boom", "workers"):
        assert word in text, (word, text)


def test_default_url_from_server_listen():
    assert st.default_url(build({"server": {"listen": "0.0.0.0:9200"}})) == "http://127.0.0.1:9200"
    assert st.default_url(build({"server": {"listen": "10.1.2.3:9108"}})) == "http://10.1.2.3:9108"
    assert st.default_url(build({"server": {"listen": "[::]:9108"}})) == "http://[::1]:9108"
    with pytest.raises(StatusUnavailable, match="pass --url"):
        st.default_url(build({"server": {"listen": ""}}))


def test_progress_fields():
    before = {"loaded": 100, "loads": {"success": 2}, "lag": 0, "dead_lettered": 0}
    now = {"loaded": 400, "loads": {"success": 4, "http_500": 1}, "lag": 50, "dead_lettered": 2}
    assert progress_fields(before, now, 30.0) == {"rows_per_s": 10.0, "rows": 300, "loads": 3,
                                                  "lag": 50, "dead_letters": 2}


def test_progress_s_is_validated():
    assert build().logging.progress_s == 30.0
    assert build({"logging": {"progress_s": 0}}).logging.progress_s == 0
    with pytest.raises(ConfigError, match="logging.progress_s"):
        build({"logging": {"progress_s": -1}})


def test_json_lines_carry_structured_fields_and_the_worker(monkeypatch):
    monkeypatch.setenv("SINKER_WORKER_INDEX", "2")
    out = io.StringIO()
    logs.setup_logging(LoggingConfig(format="json"), out)
    try:
        logging.getLogger("sinker.writer").warning(
            "load x", extra={"table": "db.t", "partition": [0], "label": "L", "rows": 5})
    finally:
        logs.reset_logging()
    doc = json.loads(out.getvalue())
    assert (doc["table"], doc["partition"], doc["label"], doc["rows"], doc["worker"]) == (
        "db.t", [0], "L", 5, 2)


def test_a_commit_past_the_known_end_refreshes_the_end_offsets(monkeypatch):
    from sinker_lib import consumer as cm
    from tests.unit.test_consumer import TP0, make, step
    clock = Clock()
    monkeypatch.setattr(cm.time, "monotonic", clock)
    t, fake, out = make(log={TP0: recs("t", 0, range(10))})
    fake.rebalance([TP0])
    step(t)
    assert t._ends == {("t", 0): 10}
    fake.log[TP0] += recs("t", 0, range(10, 15))
    t.tracker.add(0, {("t", 0): (0, 14)})
    t.tracker.confirm(0)
    clock.advance(cm.END_OFFSETS_SOON_S)
    step(t)                               # commits 15, past the end known since the last refresh
    assert t.committed == {("t", 0): 15}
    assert t._ends == {("t", 0): 15}      # long before END_OFFSETS_INTERVAL_S
    assert t.obs.metrics.end_offset.labels("t", "0")._value.get() == 15


def test_missing_topic_names_the_closest_existing_ones():
    from sinker_lib.kafka_client import missing_topics_message
    msg = missing_topics_message(["ordrs"], {"orders", "payments", "orders-dlq"}, ("b:9092",))
    assert msg.startswith("topic 'ordrs' (did you mean orders") and "on b:9092" in msg
    assert "never creates topics" in msg
    assert "did you mean" not in missing_topics_message(["zzz"], {"orders"}, ("b:9092",))


def test_consumer_never_asks_the_broker_to_create_a_topic():
    from sinker_lib.config import KafkaConfig
    from sinker_lib.kafka_client import consumer_options
    assert consumer_options(KafkaConfig(topics=("t",)), group=True)["allow_auto_create_topics"] is False


def test_no_broker_for_a_while_is_one_line_and_not_ready_then_one_line_back(monkeypatch, caplog):
    from sinker_lib import consumer as cm
    from tests.unit.test_consumer import TP0, make, step
    clock = Clock()
    monkeypatch.setattr(cm.time, "monotonic", clock)
    t, fake, out = make(log={TP0: recs("t", 0, range(3))})
    t.obs.health._clock = clock
    t.obs.health.set_phase("running")
    fake.rebalance([TP0])
    step(t)
    fake.reachable = False
    with caplog.at_level(logging.INFO, logger="sinker.consumer"):
        for _ in range(5):
            step(t)
            clock.advance(cm.BROKER_DOWN_AFTER_S / 2)
        ready, detail = t.obs.health.readiness(120)
        assert not ready and any(r.startswith("Kafka: no broker") for r in detail["reasons"])
        fake.reachable = True
        step(t, 3)
    lines = [r.getMessage() for r in caplog.records if r.name == "sinker.consumer"]
    assert sum(x.startswith("Kafka: no broker") for x in lines) == 1
    assert sum(x.startswith("Kafka is back") for x in lines) == 1
    assert not any("Kafka" in r for r in t.obs.health.readiness(120)[1]["reasons"])


def test_kafka_connection_noise_is_dropped_and_other_records_kept():
    noise = logs.KafkaConnectionNoise()

    def rec(name, msg):
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), None)
    assert not noise.filter(rec("kafka.net.connection", "Connection lost: KafkaConnectionError: 111"))
    assert not noise.filter(rec("kafka.cluster", "No node available for metadata refresh"))
    assert noise.filter(rec("kafka.coordinator", "Heartbeat session expired"))
    assert noise.filter(rec("sinker.consumer", "Connection lost: KafkaConnectionError"))
