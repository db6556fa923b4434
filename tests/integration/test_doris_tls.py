"""sinker against a Doris that speaks only TLS (the emulator's FE, BE and MySQL port with a test
CA made by openssl for this module), reading from the real Kafka broker.

With `doris.https` and `doris.ca_file` rows load and the schema is read over verified TLS; a CA
that did not sign the certificate, or a host the certificate does not name, stops sinker with
exit 3 and a message that says which CA was used and what to check, committing nothing past the
first message. The https -> http redirect refusal is tested in tests/unit/test_stream_load.py."""
from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import uuid

import pytest

from sinker_lib.config import config_from_dict
from sinker_lib.errors import DorisFatalError
from sinker_lib.schema import connect
from tests.doris_emulator import DorisEmulator
from tests.doris_emulator.tls import make_test_ca
from tests.integration.support import (
    ROOT, InProcess, committed_offsets, count_rows, nothing_consumed, stack_config, unique,
    wait_for, write_config)
from tests.stack.kafka import create_topic, produce

DDL = """CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, qty INT NOT NULL)
DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1"""
SCHEMA = [{"name": "id", "type": "bigint", "nullable": False},
          {"name": "qty", "type": "int", "nullable": False}]
PASSWORD = f"tls-pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def tls_doris():
    emu = DorisEmulator(password=PASSWORD, tls=True)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def other_ca():
    """A CA that signed nothing the emulator presents."""
    ca = make_test_ca()
    try:
        yield ca.ca_file
    finally:
        ca.remove()


class Forwarder:
    """Relays 127.0.0.2:<port> to a port on 127.0.0.1: the same server under an address its
    certificate does not name (it names 127.0.0.1 and localhost)."""

    HOST = "127.0.0.2"

    def __init__(self, target_port: int):
        class Relay(socketserver.BaseRequestHandler):
            def handle(self):
                with socket.create_connection(("127.0.0.1", target_port), timeout=10) as up:
                    a = threading.Thread(target=_pipe, args=(self.request, up), daemon=True)
                    a.start()
                    _pipe(up, self.request)
                    a.join(10)

        self.server = socketserver.ThreadingTCPServer((self.HOST, 0), Relay)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@pytest.fixture
def forward():
    made = []

    def make(port):
        f = Forwarder(port)
        made.append(f)
        return f
    yield make
    for f in made:
        f.close()


def setup(tmp_path, kafka_bootstrap, doris, n, **sections):
    topic, db, table = unique("tls"), unique("db"), unique("t")
    create_topic(kafka_bootstrap, topic, 1)
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    doris.query(DDL.format(db=db, table=table))
    produce(kafka_bootstrap, topic, (json.dumps({"id": i, "qty": i}).encode() for i in range(n)))
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, **sections)
    cfg["doris"].update({"https": True, "ca_file": doris.ca_file})
    return cfg, topic, db, table


def run_cli(path, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKER_")}
    return subprocess.run([sys.executable, str(ROOT / "sinker.py"), "run", "-c", str(path)],
                          capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)


def refused(tmp_path, kafka_bootstrap, cfg, topic) -> str:
    """Run sinker to its end; it must exit 3 with nothing consumed. Returns its last line."""
    r = run_cli(write_config(tmp_path, cfg))
    assert r.returncode == 3, (r.returncode, r.stderr[-3000:])
    assert PASSWORD not in r.stdout + r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("sinker: error: "), last
    assert nothing_consumed(committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1))
    return last


def test_https_with_ca_file_loads_rows(tmp_path, kafka_bootstrap, tls_doris):
    """The schema comes over the TLS query port, the rows over HTTPS to FE and BE."""
    assert tls_doris.scheme == "https"
    cfg, topic, db, table = setup(tmp_path, kafka_bootstrap, tls_doris, 500)
    with InProcess(cfg) as run:
        wait_for(lambda: count_rows(tls_doris, db, table) == 500, 60, 0.2, "rows in Doris")
        wait_for(lambda: committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1)
                 == {0: 500}, 60, 0.3, "offsets committed")
        result = run.stop()
    assert result.exit_code == 0 and result.error is None
    assert count_rows(tls_doris, db, table) == 500


def test_wrong_ca_for_stream_load_names_the_ca_file(tmp_path, kafka_bootstrap, tls_doris, other_ca):
    cfg, topic, db, table = setup(tmp_path, kafka_bootstrap, tls_doris, 20,
                                  mapping={"schema": SCHEMA})      # no query port: HTTP first
    cfg["doris"]["ca_file"] = other_ca
    last = refused(tmp_path, kafka_bootstrap, cfg, topic)
    assert f"the CA file {other_ca} (doris.ca_file)" in last, last
    assert "_stream_load" in last and "signed the FE and BE certificates" in last, last
    assert count_rows(tls_doris, db, table) == 0


def test_wrong_ca_for_the_query_port_names_the_ca_file(tmp_path, kafka_bootstrap, tls_doris,
                                                       other_ca):
    cfg, topic, db, table = setup(tmp_path, kafka_bootstrap, tls_doris, 20)
    cfg["doris"]["ca_file"] = other_ca
    last = refused(tmp_path, kafka_bootstrap, cfg, topic)
    assert f"MySQL port of Doris FE 127.0.0.1:{tls_doris.query_port}" in last, last
    assert f"the CA file {other_ca} (doris.ca_file)" in last, last
    assert count_rows(tls_doris, db, table) == 0


def test_host_the_certificate_does_not_name_is_refused(tmp_path, kafka_bootstrap, tls_doris,
                                                       forward):
    fe = forward(tls_doris.fe_http_port)
    cfg, topic, db, table = setup(tmp_path, kafka_bootstrap, tls_doris, 20,
                                  mapping={"schema": SCHEMA})
    cfg["doris"]["fe_hosts"] = [f"{fe.HOST}:{fe.port}"]
    last = refused(tmp_path, kafka_bootstrap, cfg, topic)
    assert "does not name the host" in last and "subjectAltName" in last, last
    assert "127.0.0.2" in last, last
    assert count_rows(tls_doris, db, table) == 0


def doris_section(emu, **extra) -> dict:
    d = {"fe_hosts": [f"127.0.0.1:{emu.fe_http_port}"], "query_port": emu.query_port,
         "user": emu.user, "password": emu.password, "database": "d", "table": "t",
         "connect_timeout_s": 3, "https": True, "ca_file": emu.ca_file}
    d.update(extra)
    return config_from_dict({"kafka": {"brokers": ["k:9092"], "topics": ["t"]}, "doris": d},
                            env={}).doris


def test_query_port_uses_verified_tls(tls_doris, other_ca, forward):
    conn, where = connect(doris_section(tls_doris))
    try:
        assert where == f"127.0.0.1:{tls_doris.query_port}"
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchall()[0][0] == 1
        assert conn._sock.version().startswith("TLSv1.")        # the socket is TLS-wrapped
    finally:
        conn.close()
    with pytest.raises(DorisFatalError) as exc:
        connect(doris_section(tls_doris, ca_file=other_ca))
    assert f"the CA file {other_ca}" in str(exc.value)
    q = forward(tls_doris.query_port)
    with pytest.raises(DorisFatalError, match="does not name the host"):
        connect(doris_section(tls_doris, fe_hosts=[f"{q.HOST}:{tls_doris.fe_http_port}"],
                              query_port=q.port))


def test_a_plain_query_port_is_refused_under_https(doris, tls_doris):
    """The plaintext session emulator: TLS required but not offered must not fall back."""
    cfg = doris_section(doris, https=True, ca_file=tls_doris.ca_file)
    with pytest.raises(DorisFatalError, match="does not offer TLS"):
        connect(cfg)
