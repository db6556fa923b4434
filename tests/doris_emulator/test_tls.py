"""TLS mode: FE, BE and the MySQL port behind a certificate from a CA made at test time."""
from __future__ import annotations

import json
import os
import ssl

import pymysql
import pytest
import urllib3

from tests.doris_emulator import DorisEmulator
from tests.doris_emulator.test_http import AUTH, DDL, ROW, label
from tests.doris_emulator.tls import make_test_ca


@pytest.fixture(scope="module")
def emu():
    e = DorisEmulator(tls=True).start()
    e.query("CREATE DATABASE d")
    e.query(DDL.format(name="t"))
    yield e
    e.stop()


def test_https_stream_load_through_the_fe_redirect(emu):
    trusting = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=emu.ca_file, retries=False)
    headers = {"Authorization": AUTH, "Expect": "100-continue", "label": label()}
    r = trusting.request("PUT", f"https://127.0.0.1:{emu.fe_http_port}/api/d/t/_stream_load", body=ROW.encode(),
                         headers=headers, redirect=False)
    assert r.status == 307
    location = r.headers["Location"]
    assert location.startswith(f"https://root:@127.0.0.1:{emu.be_http_port}/")
    be_url = "https://" + location.split("@", 1)[1]
    data = json.loads(trusting.request("PUT", be_url, body=ROW.encode(), headers=headers).data)
    assert data["Status"] == "Success" and data["NumberLoadedRows"] == 1
    assert emu.query("SELECT COUNT(*) FROM d.t")[0][0] == 1
    bad = json.loads(trusting.request("PUT", be_url, body=b"x\n", headers={**headers, "label": label()}).data)
    assert bad["ErrorURL"].startswith(f"https://127.0.0.1:{emu.be_http_port}/")
    assert b"Reason:" in trusting.request("GET", bad["ErrorURL"]).data


@pytest.mark.parametrize("port", ["fe_http_port", "be_http_port"])
def test_a_client_that_does_not_trust_the_test_ca_fails_the_handshake(emu, port):
    other = make_test_ca()                      # a CA the emulator's certificate does not chain to
    try:
        untrusting = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=other.ca_file, retries=False)
        with pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.request("GET", f"https://127.0.0.1:{getattr(emu, port)}/api/health")
    finally:
        other.remove()
    assert not os.path.exists(other.dir)


def test_plain_http_to_a_tls_port_gets_no_answer(emu):
    plain = urllib3.PoolManager(retries=False, timeout=10)
    with pytest.raises(urllib3.exceptions.HTTPError):
        plain.request("GET", f"http://127.0.0.1:{emu.fe_http_port}/api/health")


def test_mysql_port_speaks_tls_to_clients_that_ask(emu):
    conn = pymysql.connect(host="127.0.0.1", port=emu.query_port, user="root", password="",
                           ssl={"ca": emu.ca_file})
    try:
        assert isinstance(conn._sock, ssl.SSLSocket)
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM d.t")
            assert cur.fetchone()[0] >= 1
    finally:
        conn.close()
    other = make_test_ca()
    try:
        with pytest.raises(pymysql.err.OperationalError):
            pymysql.connect(host="127.0.0.1", port=emu.query_port, user="root", password="",
                            ssl={"ca": other.ca_file}, connect_timeout=10)
    finally:
        other.remove()
    plain = pymysql.connect(host="127.0.0.1", port=emu.query_port, user="root", password="", ssl_disabled=True)
    try:
        assert not isinstance(plain._sock, ssl.SSLSocket)                # TLS is offered, not required
    finally:
        plain.close()


def test_stop_removes_the_test_ca():
    e = DorisEmulator(tls=True)
    path = e.ca_file
    assert e.scheme == "https" and os.path.exists(path)
    e.start()
    e.stop()
    assert not os.path.exists(path)
    assert DorisEmulator().ca_file is None
