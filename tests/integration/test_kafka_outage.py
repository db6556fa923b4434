"""Kafka errors at start and mid-run, against a real broker: a mistyped topic is an error naming
the closest topics (and is never created), and a broker that goes away mid-run shows in sinker's
log (one line down, one line back) and in /ready, and loading resumes by itself. The outage test
stops a broker of its own, so no other test sees it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT as REPO
from tests.integration.support import (
    ROOT, InProcess, count_rows, get_json, stack_config, unique, wait_committed, wait_for,
    write_config)
from tests.stack.kafka import create_topic, produce

DDL = """CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, qty INT NOT NULL)
DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1"""
OUTAGE_LOG = REPO / ".stack" / "kafka-outage-test.log"


@pytest.fixture(scope="module")
def own_broker():
    from tests.conftest import _start_broker
    from tests.stack.kafka import KafkaBroker
    OUTAGE_LOG.parent.mkdir(exist_ok=True)
    broker = KafkaBroker(log_path=str(OUTAGE_LOG))
    _start_broker(broker, OUTAGE_LOG, "outage test Kafka broker")
    try:
        yield broker
    finally:
        broker.stop()


def table(doris):
    db, t = unique("db"), unique("t")
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    doris.query(DDL.format(db=db, table=t))
    return db, t


def topics_on(bootstrap) -> set:
    from kafka import KafkaConsumer
    c = KafkaConsumer(bootstrap_servers=[bootstrap])
    try:
        return c.topics()
    finally:
        c.close()


def test_a_mistyped_topic_exits_3_naming_the_closest_and_is_not_created(tmp_path, kafka_bootstrap,
                                                                        doris):
    topic = unique("orders")
    create_topic(kafka_bootstrap, topic, 1)
    db, t = table(doris)
    typo = topic[:-1] + ("x" if topic[-1] != "x" else "y")
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, typo, db, t)
    path = write_config(tmp_path, cfg)
    r = subprocess.run([sys.executable, str(ROOT / "sinker.py"), "run", "-c", str(path)],
                       capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert r.returncode == 3, r.stdout + r.stderr
    # the closest name first (the shared broker may hold other similar names, listed after it)
    assert f"topic '{typo}'" in r.stderr and f"did you mean {topic}" in r.stderr, r.stderr
    assert typo not in topics_on(kafka_bootstrap)


def test_broker_outage_mid_run_is_logged_once_unready_and_loading_resumes(tmp_path, own_broker,
                                                                          doris):
    bootstrap = own_broker.bootstrap
    n, topic = 2000, unique("outage")
    create_topic(bootstrap, topic, 2)
    db, t = table(doris)
    cfg = stack_config(tmp_path, bootstrap, doris, topic, db, t,
                       batch={"max_rows": 200, "max_interval_s": 0.3},
                       logging={"format": "json", "level": "info", "output": "file",
                                "file": str(tmp_path / "sinker.log")})
    values = [json.dumps({"id": i, "qty": i}).encode() for i in range(n)]
    produce(bootstrap, topic, values[: n // 2], partition=lambda i: i % 2)
    with InProcess(cfg) as run:
        from sinker_lib.observability import logs
        logs.setup_logging(run.cfg.logging)
        try:
            wait_for(lambda: run.pipeline.status_server is not None
                     and count_rows(doris, db, t) == n // 2, 60, 0.2, "the first half loaded")
            port = run.pipeline.status_server.port
            wait_for(lambda: get_json(port, "/ready")[0] == 200, 60, 0.2, "ready")
            own_broker.kill()
            status, doc = wait_for(lambda: (got := get_json(port, "/ready"))[0] == 503 and got, 60,
                                   0.5, "/ready says Kafka is down")
            assert any(r.startswith("Kafka: no broker") for r in doc["reasons"]), doc
            assert get_json(port, "/health")[0] == 200          # alive: a restart would not help
            own_broker.start()
            produce(bootstrap, topic, values[n // 2:], partition=lambda i: i % 2)
            wait_for(lambda: count_rows(doris, db, t) == n, 120, 0.5, "the second half loaded")
            wait_committed(bootstrap, cfg["kafka"]["group_id"], topic, 2, n, 90, "everything committed")
            wait_for(lambda: get_json(port, "/ready")[0] == 200, 60, 0.5, "ready again")
            result = run.stop()
        finally:
            logs.reset_logging()
    assert result.exit_code == 0, result.error
    assert count_rows(doris, db, t) == n
    lines = [json.loads(x) for x in (tmp_path / "sinker.log").read_text().splitlines()]
    down = [x for x in lines if x["msg"].startswith("Kafka: no broker")]
    back = [x for x in lines if x["msg"].startswith("Kafka is back")]
    assert len(down) == 1 and len(back) == 1, [x["msg"] for x in lines]
    kafka_errors = [x for x in lines if x["logger"].startswith(("kafka", "sinker.kafka.librdkafka"))
                    and x["level"] == "error"]
    assert len(kafka_errors) <= 3, [x["msg"] for x in kafka_errors]
