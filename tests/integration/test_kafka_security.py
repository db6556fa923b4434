"""sinker against a broker that wants TLS and SASL (the `secure_kafka` fixture): rows load over
SCRAM-SHA-512 on SASL_SSL, PLAIN on SASL_PLAINTEXT and client certificates on SSL; a refused
login or an untrusted certificate stops sinker with exit 3 and a message that names what was
refused, never a password. Setup (topics, produce, committed offsets) uses the broker's PLAINTEXT
listener; sinker itself only ever talks to the secure ones."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from tests.integration.support import (
    ROOT, InProcess, committed_offsets, count_rows, read_dead_letters, stack_config, start_process,
    stop_process, unique, wait_for, write_config)
from tests.integration.conftest import CLIENTS
from tests.stack.kafka import create_topic, produce

DDL = """CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, qty INT NOT NULL)
DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1"""


def password(broker) -> str:
    return broker.security.users["sinker"]


def sasl(broker, listener: str, mechanism: str, **extra) -> dict:
    """kafka settings for `listener`; the password comes from the environment, not the file."""
    k = {"brokers": [broker.address(listener)], "security_protocol": listener,
         "sasl_mechanism": mechanism, "sasl_username": "sinker"}
    if listener == "SASL_SSL":
        k["ssl_cafile"] = str(broker.security.pki.ca_cert)
    k.update(extra)
    return k


def mtls(broker, **extra) -> dict:
    pki = broker.security.pki
    k = {"brokers": [broker.address("SSL")], "security_protocol": "SSL",
         "ssl_cafile": str(pki.ca_cert), "ssl_certfile": str(pki.client_cert),
         "ssl_keyfile": str(pki.client_key)}
    k.update(extra)
    return k


def make(doris, broker, tmp_path, kafka: dict, n: int = 0, **sections):
    topic, db, table = unique("sec"), unique("db"), unique("t")
    create_topic(broker.bootstrap, topic, 1)
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    doris.query(DDL.format(db=db, table=table))
    if n:
        produce(broker.bootstrap, topic, (json.dumps({"id": i, "qty": i}).encode() for i in range(n)))
    cfg = stack_config(tmp_path, broker.bootstrap, doris, topic, db, table, **sections)
    cfg["kafka"].update(kafka)
    return cfg, topic, db, table


def run_cli(path, env, timeout=120):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([sys.executable, str(ROOT / "sinker.py"), "run", "-c", str(path)],
                          capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=e)


def load_with_process(tmp_path, broker, doris, cfg, topic, db, table, n, env) -> str:
    """`sinker run` until all n rows are in Doris and committed; returns everything it printed."""
    log = tmp_path / "sinker.log"
    proc = start_process(write_config(tmp_path, cfg), log_path=log, env=env)
    try:
        wait_for(lambda: count_rows(doris, db, table) >= n or proc.poll() is not None, 60, 0.2,
                 "rows in Doris")
        assert proc.poll() is None, log.read_text()[-3000:]
        wait_for(lambda: committed_offsets(broker.bootstrap, cfg["kafka"]["group_id"], topic, 1)
                 == {0: n}, 60, 0.3, "offsets committed")
    finally:
        code = stop_process(proc)
    out = log.read_text()
    assert code == 0, out[-3000:]
    assert count_rows(doris, db, table) == n
    return out


@pytest.mark.parametrize("client", CLIENTS)
def test_scram_sha_512_over_sasl_ssl_loads_rows(tmp_path, secure_kafka, doris, client):
    cfg, topic, db, table = make(doris, secure_kafka, tmp_path,
                                 sasl(secure_kafka, "SASL_SSL", "SCRAM-SHA-512", client=client),
                                 n=300)
    out = load_with_process(tmp_path, secure_kafka, doris, cfg, topic, db, table, 300,
                            env={"SINKER_KAFKA_SASL_PASSWORD": password(secure_kafka)})
    assert password(secure_kafka) not in out


@pytest.mark.parametrize("client", CLIENTS)
def test_plain_over_sasl_plaintext_loads_rows(tmp_path, secure_kafka, doris, client):
    cfg, topic, db, table = make(doris, secure_kafka, tmp_path,
                                 sasl(secure_kafka, "SASL_PLAINTEXT", "PLAIN", client=client), n=200)
    out = load_with_process(tmp_path, secure_kafka, doris, cfg, topic, db, table, 200,
                            env={"SINKER_KAFKA_SASL_PASSWORD": password(secure_kafka)})
    assert password(secure_kafka) not in out


@pytest.mark.parametrize("client", CLIENTS)
def test_client_certificate_over_ssl_loads_rows(tmp_path, secure_kafka, doris, client):
    key_password = secure_kafka.security.pki.client_key_password
    cfg, topic, db, table = make(doris, secure_kafka, tmp_path, mtls(secure_kafka, client=client),
                                 n=200)
    out = load_with_process(tmp_path, secure_kafka, doris, cfg, topic, db, table, 200,
                            env={"SINKER_KAFKA_SSL_KEY_PASSWORD": key_password})
    assert key_password not in out


@pytest.mark.parametrize("client", CLIENTS)
def test_wrong_password_is_refused_naming_mechanism_and_user(tmp_path, secure_kafka, doris, client):
    for listener, mechanism in (("SASL_SSL", "SCRAM-SHA-512"), ("SASL_PLAINTEXT", "PLAIN")):
        cfg, topic, db, table = make(doris, secure_kafka, tmp_path,
                                     sasl(secure_kafka, listener, mechanism, client=client), n=5)
        wrong = f"not-{password(secure_kafka)}"
        r = run_cli(write_config(tmp_path, cfg), env={"SINKER_KAFKA_SASL_PASSWORD": wrong})
        # exit 3 is the refusal read from the broker; the 30 s bootstrap timeout would be exit 4
        assert r.returncode == 3, r.stderr[-3000:]
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("sinker: error: ") and f"SASL {mechanism}" in last, last
        assert "user 'sinker'" in last and "SINKER_KAFKA_SASL_PASSWORD" in last, last
        assert wrong not in r.stdout + r.stderr and password(secure_kafka) not in r.stdout + r.stderr
        assert count_rows(doris, db, table) == 0
        assert committed_offsets(secure_kafka.bootstrap, cfg["kafka"]["group_id"], topic, 1) == {0: None}


def test_untrusted_broker_certificate_names_the_ca_used(tmp_path, secure_kafka, doris):
    other_ca = str(secure_kafka.security.pki.other_ca_cert)
    cfg, topic, db, table = make(doris, secure_kafka, tmp_path,
                                 sasl(secure_kafka, "SASL_SSL", "SCRAM-SHA-512", ssl_cafile=other_ca),
                                 n=5)
    r = run_cli(write_config(tmp_path, cfg), env={"SINKER_KAFKA_SASL_PASSWORD": password(secure_kafka)})
    assert r.returncode == 3, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "is not trusted" in last and f"CA used: kafka.ssl_cafile {other_ca}" in last, last
    assert password(secure_kafka) not in r.stdout + r.stderr
    assert committed_offsets(secure_kafka.bootstrap, cfg["kafka"]["group_id"], topic, 1) == {0: None}


def test_ssl_listener_without_client_certificate_is_refused(tmp_path, secure_kafka, doris):
    kafka = mtls(secure_kafka)
    del kafka["ssl_certfile"], kafka["ssl_keyfile"]
    cfg, topic, db, table = make(doris, secure_kafka, tmp_path, kafka, n=5)
    r = run_cli(write_config(tmp_path, cfg), env={})
    assert r.returncode == 3, r.stderr[-3000:]
    assert "requires a TLS client certificate" in r.stderr and "kafka.ssl_certfile" in r.stderr
    assert committed_offsets(secure_kafka.bootstrap, cfg["kafka"]["group_id"], topic, 1) == {0: None}


def test_wrong_client_key_password_is_a_config_error(tmp_path, secure_kafka, doris):
    cfg, topic, db, table = make(doris, secure_kafka, tmp_path, mtls(secure_kafka), n=5)
    wrong = f"not-{secure_kafka.security.pki.client_key_password}"
    r = run_cli(write_config(tmp_path, cfg), env={"SINKER_KAFKA_SSL_KEY_PASSWORD": wrong})
    assert r.returncode == 2, r.stderr[-3000:]
    assert "kafka.ssl_keyfile" in r.stderr and "SINKER_KAFKA_SSL_KEY_PASSWORD" in r.stderr
    assert wrong not in r.stdout + r.stderr


def test_dead_letters_to_a_kafka_topic_over_sasl_ssl(tmp_path, secure_kafka, doris):
    dlq = unique("dlq")
    create_topic(secure_kafka.bootstrap, dlq, 1)
    kafka = sasl(secure_kafka, "SASL_SSL", "SCRAM-SHA-512", sasl_password=password(secure_kafka))
    cfg, topic, db, table = make(doris, secure_kafka, tmp_path, kafka,
                                 dead_letter={"type": "kafka", "topic": dlq})
    produce(secure_kafka.bootstrap, topic, [json.dumps({"id": 1, "qty": 1}).encode(), b"\xff{nope",
                                            json.dumps({"id": 3, "qty": "x"}).encode(),
                                            json.dumps({"id": 4, "qty": 4}).encode()])
    with InProcess(cfg) as run:
        wait_for(lambda: committed_offsets(secure_kafka.bootstrap, cfg["kafka"]["group_id"], topic, 1)
                 == {0: 4}, 60, 0.3, "offsets past the dead letters")
        assert run.stop().exit_code == 0
    assert count_rows(doris, db, table) == 2
    from kafka import KafkaConsumer
    c = KafkaConsumer(dlq, bootstrap_servers=[secure_kafka.bootstrap], auto_offset_reset="earliest",
                      consumer_timeout_ms=5000, group_id=None)
    try:
        got = [json.loads(m.value) for m in c]
    finally:
        c.close()
    # the dead-letter output is at-least-once: a rebalance before the commit (a new group's
    # first join often has one) writes a batch's dead letters again, under the same key
    assert sorted({(d["offset"], d["category"]) for d in got}) == [(1, "invalid_json"), (2, "conversion")]
    assert base64.b64decode(got[0]["value_b64"]) == b"\xff{nope"
    assert read_dead_letters(tmp_path / "dead.jsonl") == []


def test_dead_letter_producer_is_refused_like_the_consumer(tmp_path, secure_kafka, doris):
    """The dead-letter producer is built first; a wrong password stops it the same way."""
    dlq = unique("dlq")
    create_topic(secure_kafka.bootstrap, dlq, 1)
    cfg, topic, db, table = make(doris, secure_kafka, tmp_path,
                                 sasl(secure_kafka, "SASL_SSL", "SCRAM-SHA-512",
                                      request_timeout_ms=5000), n=5,   # how long: not the point
                                 dead_letter={"type": "kafka", "topic": dlq})
    wrong = f"not-{password(secure_kafka)}"
    r = run_cli(write_config(tmp_path, cfg), env={"SINKER_KAFKA_SASL_PASSWORD": wrong})
    assert r.returncode == 3, r.stderr[-3000:]
    assert "SASL SCRAM-SHA-512" in r.stderr and "user 'sinker'" in r.stderr
    assert wrong not in r.stdout + r.stderr


@pytest.mark.parametrize("client", CLIENTS)
def test_broker_that_does_not_answer_is_unavailable_not_refused(tmp_path, secure_kafka, doris,
                                                                client):
    """Nothing listens: the preflight steps aside, the client gives up on bootstrapping and that
    is exit 4 (a restart may succeed), not 3 and not an internal error."""
    from tests.stack.kafka import free_port
    dead = f"127.0.0.1:{free_port()}"
    cfg, topic, db, table = make(doris, secure_kafka, tmp_path,
                                 sasl(secure_kafka, "SASL_SSL", "SCRAM-SHA-512", brokers=[dead],
                                      client=client, request_timeout_ms=5000))  # not the point
    r = run_cli(write_config(tmp_path, cfg), env={"SINKER_KAFKA_SASL_PASSWORD": password(secure_kafka)})
    assert r.returncode == 4, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert f"could not reach any Kafka broker at {dead}" in last, last
    assert password(secure_kafka) not in r.stdout + r.stderr
