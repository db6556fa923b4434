"""StreamLoader against small fake FE/BE HTTP servers (no Doris emulator needed).

The fakes record every request (method, path, headers, body) so the tests can check what really
went over the wire: the empty-body probe to the FE, auth on every hop, exact Content-Length.
"""
from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sinker_lib.config import DorisConfig
from sinker_lib.errors import DorisFatalError, TransportError
from tests.fakes import free_port
from sinker_lib.stream_load import LoadResponse, StreamLoader, body_chunks, next_url, safe_url

PASSWORD = "s3cret-pw"
AUTH = "Basic " + base64.b64encode(f"root:{PASSWORD}".encode()).decode()


@dataclass
class Req:
    method: str
    path: str
    headers: dict
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _serve(self):
        fake = self.server.fake
        h = {k.lower(): v for k, v in self.headers.items()}
        body = b""
        if fake.read_body and "content-length" in h:
            body = self.rfile.read(int(h["content-length"]))
        req = Req(self.command, self.path, h, body)
        with fake.lock:
            fake.requests.append(req)
        answer = fake.behave(req, self)
        if answer is None:            # the behaviour handled the socket itself
            self.close_connection = True
            return
        status, headers, payload = answer
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_PUT = do_GET = _serve


class Fake:
    """A tiny HTTP server on 127.0.0.1:<free port>; ``behave(req, handler)`` decides the answer."""

    def __init__(self, behave, tls_ctx=None, read_body=True):
        self.behave = behave
        self.read_body = read_body
        self.requests: list[Req] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.srv.daemon_threads = True
        self.srv.handle_error = lambda *a: None
        self.srv.fake = self
        if tls_ctx is not None:
            self.srv.socket = tls_ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def puts(self):
        return [r for r in self.requests if r.method == "PUT"]

    def close(self):
        self.release.set()
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def servers():
    made = []

    def make(behave, **kw):
        f = Fake(behave, **kw)
        made.append(f)
        return f
    yield make
    for f in made:
        f.close()


def success(req, h):
    return 200, {}, {"Status": "Success", "Message": "OK", "Label": req.headers.get("label"),
                     "NumberLoadedRows": req.body.count(b"\n")}


def redirect_to(be: Fake, userinfo=f"root:{PASSWORD}@", query="?from=fe"):
    def behave(req, h):
        path = req.path.split("?")[0]
        return 307, {"Location": f"http://{userinfo}{be.addr}{path}{query}"}, b""
    return behave


def cfg(fe_hosts, **kw) -> DorisConfig:
    kw.setdefault("connect_timeout_s", 2.0)
    kw.setdefault("load_timeout_s", 60.0)
    return DorisConfig(fe_hosts=tuple(fe_hosts), user="root", password=PASSWORD, **kw)


LINES = [b'{"id":1,"name":"a"}\n', b'{"id":2,"name":"b"}\n', b'{"id":3,"name":"\xc3\xa9"}\n']
NBYTES = sum(map(len, LINES))
HDRS = {"format": "json", "read_json_by_line": "true"}


# -- the FE redirect path -------------------------------------------------------------------------
def test_probe_then_body_to_be_with_auth_and_no_userinfo(servers):
    be = servers(success)
    fe = servers(redirect_to(be))
    loader = StreamLoader(cfg([fe.addr]))
    resp = loader.load("db1", "t1", "lbl-1", LINES, NBYTES, HDRS)

    assert isinstance(resp, LoadResponse)
    assert resp.http_status == 200 and resp.body["Status"] == "Success"
    assert resp.body["Label"] == "lbl-1"
    (probe,) = fe.puts()
    assert probe.path == "/api/db1/t1/_stream_load"
    assert probe.headers["content-length"] == "0" and probe.body == b""
    assert probe.headers["authorization"] == AUTH
    assert probe.headers["expect"] == "100-continue"
    assert probe.headers["label"] == "lbl-1"
    assert probe.headers["timeout"] == "60"
    assert probe.headers["format"] == "json"
    (put,) = be.puts()
    assert put.path == "/api/db1/t1/_stream_load?from=fe"       # path + query kept
    assert put.headers["authorization"] == AUTH                  # re-applied on the new host
    assert put.headers["host"] == be.addr                         # no userinfo went anywhere
    assert put.headers["label"] == "lbl-1" and put.headers["read_json_by_line"] == "true"
    assert put.body == b"".join(LINES)
    loader.close()


def test_content_length_exact_and_never_chunked(servers):
    be = servers(success)
    fe = servers(redirect_to(be))
    lines = [(b"%08d," % i) + b"x" * (i % 97) + b"\n" for i in range(60_000)]   # ~3.4 MB
    nbytes = sum(map(len, lines))
    assert len(list(body_chunks(lines, nbytes))) > 5                  # sent in pieces
    loader = StreamLoader(cfg([fe.addr]))
    loader.load("db", "t", "big", lines, nbytes, {"format": "csv", "Content-Length": "1",
                                                  "Transfer-Encoding": "chunked", "label": "x"})
    (put,) = be.puts()
    assert put.headers["content-length"] == str(nbytes)
    assert "transfer-encoding" not in put.headers
    assert put.headers["label"] == "big"                     # a mapper header cannot override ours
    assert put.body == b"".join(lines)


def test_nbytes_mismatch_is_refused_before_sending(servers):
    fe = servers(success)
    loader = StreamLoader(cfg([fe.addr]))
    with pytest.raises(ValueError):
        loader.load("db", "t", "l", LINES, NBYTES + 1, HDRS)
    assert fe.requests == []


def test_fe_error_answer_is_returned_as_is(servers):
    fe = servers(lambda req, h: (200, {}, {"code": 401, "msg": "Unauthorized"}))
    resp = StreamLoader(cfg([fe.addr])).load("db", "t", "l", LINES, NBYTES, HDRS)
    assert resp.http_status == 200 and resp.body == {"code": 401, "msg": "Unauthorized"}


def test_fe_that_loads_the_empty_probe_is_fatal(servers):
    fe = servers(lambda req, h: (200, {}, {"Status": "Success", "NumberLoadedRows": 0}))
    with pytest.raises(DorisFatalError, match="empty redirect probe"):
        StreamLoader(cfg([fe.addr])).load("db", "t", "l", LINES, NBYTES, HDRS)


def hop_server(servers, final_hop: int, relative=True):
    """Redirects ?hop=n to ?hop=n+1 on itself until final_hop, then answers Success."""
    def behave(req, h):
        hop = int(req.path.rsplit("hop=", 1)[1]) if "hop=" in req.path else 0
        if hop >= final_hop:
            return success(req, h)
        path = req.path.split("?")[0]
        loc = f"{path}?hop={hop + 1}" if relative else f"http://u:p@{fake.addr}{path}?hop={hop + 1}"
        return 307, {"Location": loc}, b""
    fake = servers(behave)
    return fake


def test_three_redirect_hops_are_followed(servers):
    fake = hop_server(servers, final_hop=3)
    resp = StreamLoader(cfg([fake.addr])).load("db", "t", "l", LINES, NBYTES, HDRS)
    assert resp.body["Status"] == "Success"
    puts = fake.puts()
    assert [p.path for p in puts] == ["/api/db/t/_stream_load", "/api/db/t/_stream_load?hop=1",
                                      "/api/db/t/_stream_load?hop=2", "/api/db/t/_stream_load?hop=3"]
    assert all(p.headers["authorization"] == AUTH for p in puts)
    assert puts[-1].body == b"".join(LINES)


def test_a_fourth_redirect_is_refused(servers):
    fake = hop_server(servers, final_hop=4, relative=False)
    with pytest.raises(DorisFatalError, match="more than 3") as exc:
        StreamLoader(cfg([fake.addr])).load("db", "t", "l", LINES, NBYTES, HDRS)
    assert "u:p@" not in str(exc.value)
    assert len(fake.puts()) == 4


def test_redirect_loop_is_refused(servers):
    fake = servers(lambda req, h: (307, {"Location": "/api/db/t/_stream_load"}, b""))
    with pytest.raises(DorisFatalError, match="loop"):
        StreamLoader(cfg([fake.addr])).load("db", "t", "l", LINES, NBYTES, HDRS)


def test_next_url_rules():
    cur = "http://fe:8030/api/db/t/_stream_load"
    assert next_url(cur, "http://root:pw@be:8040/api/db/t/_stream_load?x=1") == \
        "http://be:8040/api/db/t/_stream_load?x=1"
    assert next_url(cur, "/other?y=2") == "http://fe:8030/other?y=2"
    assert next_url("https://fe/a", "https://be:8040/b") == "https://be:8040/b"
    assert next_url("http://fe/a", "https://be:8040/b") == "https://be:8040/b"   # upgrade is fine
    with pytest.raises(DorisFatalError, match="https to plain http"):
        next_url("https://fe:8030/a", "http://root:pw@be:8040/b")
    with pytest.raises(DorisFatalError):
        next_url(cur, "ftp://be/x")
    assert safe_url("http://root:pw@be:8040/x?q") == "http://be:8040/x?q"


@pytest.fixture
def tls_files(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx, str(cert)


def test_https_fe_redirect_to_http_is_refused(servers, tls_files):
    ctx, ca = tls_files
    be = servers(success)
    fe = servers(redirect_to(be), tls_ctx=ctx)
    loader = StreamLoader(cfg([fe.addr], https=True, ca_file=ca))
    with pytest.raises(DorisFatalError, match="https to plain http") as exc:
        loader.load("db", "t", "l", LINES, NBYTES, HDRS)
    assert PASSWORD not in str(exc.value)
    assert len(fe.puts()) == 1 and be.requests == []       # nothing went out in clear text


def test_https_end_to_end_with_ca_file(servers, tls_files):
    ctx, ca = tls_files
    be = servers(success, tls_ctx=ctx)

    def fe_behave(req, h):
        return 307, {"Location": f"https://{be.addr}/api/db/t/_stream_load"}, b""
    fe = servers(fe_behave, tls_ctx=ctx)
    resp = StreamLoader(cfg([fe.addr], https=True, ca_file=ca)).load("db", "t", "l", LINES,
                                                                     NBYTES, HDRS)
    assert resp.body["Status"] == "Success"
    assert be.puts()[0].headers["authorization"] == AUTH


def test_https_untrusted_certificate_is_fatal(servers, tls_files):
    ctx, _ = tls_files
    fe = servers(success, tls_ctx=ctx)
    with pytest.raises(DorisFatalError, match="ca_file"):
        StreamLoader(cfg([fe.addr], https=True)).load("db", "t", "l", LINES, NBYTES, HDRS)


# -- FE failover ----------------------------------------------------------------------------------
def test_fe_failover_starts_from_the_last_that_worked(servers):
    be = servers(success)
    fe = servers(redirect_to(be))
    dead = f"127.0.0.1:{free_port()}"
    loader = StreamLoader(cfg([dead, fe.addr]))
    sent = []
    real_send = loader._send

    def spy(method, url, *a):
        sent.append(url)
        return real_send(method, url, *a)
    loader._send = spy
    assert loader.load("db", "t", "l1", LINES, NBYTES, HDRS).body["Status"] == "Success"
    assert sent[0].startswith(f"http://{dead}/")             # tried in order the first time
    sent.clear()
    assert loader.load("db", "t", "l2", LINES, NBYTES, HDRS).body["Status"] == "Success"
    assert sent[0].startswith(f"http://{fe.addr}/")          # then from the one that worked
    assert not any(dead in u for u in sent)


def test_all_fes_down_names_them(servers):
    a, b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    with pytest.raises(TransportError) as exc:
        StreamLoader(cfg([a, b])).load("db", "t", "l", LINES, NBYTES, HDRS)
    assert a in str(exc.value) and b in str(exc.value)
    assert exc.value.timeout is False
    assert PASSWORD not in str(exc.value)


def test_fe_host_without_port_uses_http_port(servers):
    be = servers(success)
    fe = servers(redirect_to(be))
    loader = StreamLoader(cfg(["127.0.0.1"], http_port=fe.port))
    assert loader.load("db", "t", "l", LINES, NBYTES, HDRS).body["Status"] == "Success"


# -- direct to BE ---------------------------------------------------------------------------------
def test_direct_be_round_robin_skips_fe(servers):
    fe = servers(success)
    be1, be2 = servers(success), servers(success)
    loader = StreamLoader(cfg([fe.addr], be_hosts=(be1.addr, be2.addr)))
    for i in range(4):
        loader.load("db", "t", f"l{i}", LINES, NBYTES, HDRS)
    assert fe.requests == []
    assert len(be1.puts()) == 2 and len(be2.puts()) == 2
    for put in be1.puts() + be2.puts():
        assert put.headers["authorization"] == AUTH and put.body == b"".join(LINES)


def test_direct_be_skips_one_that_refuses_connections(servers):
    be = servers(success)
    loader = StreamLoader(cfg(["127.0.0.1:1"], be_hosts=(f"127.0.0.1:{free_port()}", be.addr)))
    for i in range(2):
        assert loader.load("db", "t", f"l{i}", LINES, NBYTES, HDRS).body["Status"] == "Success"
    assert len(be.puts()) == 2


def backends_fe(be_addrs, redirect_be=None):
    def behave(req, h):
        if req.method == "GET" and req.path.startswith("/api/backends"):
            assert req.path == "/api/backends?is_alive=true"
            items = [{"ip": a.split(":")[0], "http_port": int(a.split(":")[1]), "is_alive": True}
                     for a in be_addrs]
            items.append({"ip": "10.255.255.1", "http_port": 8040, "is_alive": False})
            return 200, {}, {"msg": "success", "code": 0, "data": {"backends": items}, "count": 0}
        if redirect_be is not None:
            return redirect_to(redirect_be)(req, h)
        return 500, {}, b"unexpected"
    return behave


def test_discovery_loads_straight_to_live_bes_and_caches(servers):
    be = servers(success)
    fe = servers(backends_fe([be.addr]))
    loader = StreamLoader(cfg([fe.addr], discover_backends=True))
    assert loader.backends() == [be.addr]
    for i in range(3):
        assert loader.load("db", "t", f"l{i}", LINES, NBYTES, HDRS).body["Status"] == "Success"
    gets = [r for r in fe.requests if r.method == "GET"]
    assert len(gets) == 2                # the explicit call above + one cached discovery
    assert all(r.headers["authorization"] == AUTH for r in gets)
    assert fe.puts() == [] and len(be.puts()) == 3


def test_discovery_failure_falls_back_to_fe_redirect(servers):
    be = servers(success)

    def fe_behave(req, h):
        if req.method == "GET":
            return 500, {}, b"<html>boom</html>"
        return redirect_to(be)(req, h)
    fe = servers(fe_behave)
    loader = StreamLoader(cfg([fe.addr], discover_backends=True))
    assert loader.load("db", "t", "l", LINES, NBYTES, HDRS).body["Status"] == "Success"
    assert len(fe.puts()) == 1 and fe.puts()[0].body == b""
    assert len(be.puts()) == 1


def test_discovered_be_down_falls_back_to_fe_and_rediscovers(servers):
    be = servers(success)
    dead = f"127.0.0.1:{free_port()}"
    fe = servers(backends_fe([dead], redirect_be=be))
    loader = StreamLoader(cfg([fe.addr], discover_backends=True))
    assert loader.load("db", "t", "l1", LINES, NBYTES, HDRS).body["Status"] == "Success"
    assert len(fe.puts()) == 1 and len(be.puts()) == 1       # via the FE, nothing lost
    loader.load("db", "t", "l2", LINES, NBYTES, HDRS)
    assert len([r for r in fe.requests if r.method == "GET"]) == 2    # cache dropped, asked again


# -- transport failures ---------------------------------------------------------------------------
def test_connection_reset_mid_body_is_transport_error(servers):
    def reset(req, h):
        h.rfile.read(1000)
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
        return None
    be = servers(reset, read_body=False)
    lines = [b"x" * 1023 + b"\n"] * 16 * 1024          # 16 MB: still sending when the reset comes
    loader = StreamLoader(cfg(["127.0.0.1:1"], be_hosts=(be.addr,)))
    with pytest.raises(TransportError) as exc:
        loader.load("db", "t", "l", lines, 16 * 1024 * 1024, HDRS)
    assert exc.value.timeout is False
    assert PASSWORD not in str(exc.value)


def test_read_timeout_is_transport_error_with_timeout(servers):
    class QuickLoader(StreamLoader):
        READ_TIMEOUT_MARGIN_S = 0.0

    def hang(req, h):
        h.server.fake.release.wait(30)
        return success(req, h)
    be = servers(hang)
    loader = QuickLoader(cfg(["127.0.0.1:1"], be_hosts=(be.addr,), load_timeout_s=0.5))
    with pytest.raises(TransportError) as exc:
        loader.load("db", "t", "l", LINES, NBYTES, HDRS)
    assert exc.value.timeout is True
    assert be.puts()[0].headers["timeout"] == "1"
    assert be.puts()[0].body == b"".join(LINES)


def test_non_json_body_keeps_raw(servers):
    be = servers(lambda req, h: (502, {}, b"<html>Bad Gateway</html>"))
    resp = StreamLoader(cfg(["127.0.0.1:1"], be_hosts=(be.addr,))).load("db", "t", "l", LINES,
                                                                         NBYTES, HDRS)
    assert resp.http_status == 502 and resp.body is None
    assert resp.raw == b"<html>Bad Gateway</html>"


# -- ErrorURL, 2PC ----------------------------------------------------------------------------------
def test_fetch_error_rows(servers):
    text = ("Reason: column count mismatch. src line [a,b]; \n"
            "Reason: too long. src line [x]; \n")
    srv = servers(lambda req, h: (200, {}, text.encode()))
    loader = StreamLoader(cfg([srv.addr]))
    rows = loader.fetch_error_rows(f"http://root:{PASSWORD}@{srv.addr}/api/_load_error_log?"
                                   "file=__shard_1/error_log_x")
    assert rows == ["Reason: column count mismatch. src line [a,b]; ",
                    "Reason: too long. src line [x]; "]
    (req,) = srv.requests
    assert req.method == "GET" and req.path == "/api/_load_error_log?file=__shard_1/error_log_x"
    assert req.headers["authorization"] == AUTH


def test_fetch_error_rows_http_error_raises(servers):
    srv = servers(lambda req, h: (404, {}, b"not found"))
    with pytest.raises(TransportError, match="404"):
        StreamLoader(cfg([srv.addr])).fetch_error_rows(f"http://{srv.addr}/api/_load_error_log")


def test_commit_2pc_call_shape_follows_redirect(servers):
    be = servers(lambda req, h: (200, {}, {"status": "Success",
                                           "msg": "transaction [42] commit successfully."}))
    fe = servers(redirect_to(be, query=""))
    loader = StreamLoader(cfg([fe.addr]))
    answer = loader.commit_2pc("db1", 42, "commit")
    assert answer["status"] == "Success"
    (probe,) = fe.puts()
    assert probe.path == "/api/db1/_stream_load_2pc"
    assert probe.headers["txn_id"] == "42" and probe.headers["txn_operation"] == "commit"
    assert probe.headers["authorization"] == AUTH
    (put,) = be.puts()
    assert put.path == "/api/db1/_stream_load_2pc"
    assert put.headers["authorization"] == AUTH and put.headers["txn_id"] == "42"


def test_commit_2pc_by_label_and_non_json(servers):
    fe = servers(lambda req, h: (500, {}, b"oops"))
    answer = StreamLoader(cfg([fe.addr])).commit_2pc("db", "sinker_db_t_1", "abort")
    assert answer["status"] == "Fail" and "500" in answer["msg"]
    (req,) = fe.puts()
    assert req.headers["label"] == "sinker_db_t_1" and req.headers["txn_operation"] == "abort"
    assert "txn_id" not in req.headers
    with pytest.raises(ValueError):
        StreamLoader(cfg([fe.addr])).commit_2pc("db", 1, "rollback")


def test_slow_reader_is_not_cut_by_the_connect_timeout(servers):
    """urllib3 would send the body under the (short) connect timeout; we use the read timeout."""
    def slow(req, h):
        n = int(req.headers["content-length"])
        first = h.rfile.read(1000)
        h.server.fake.release.wait(1.0)        # stall well past the 0.2 s connect timeout
        rest = h.rfile.read(n - len(first))
        req.body = first + rest
        return success(req, h)
    be = servers(slow, read_body=False)
    lines = [b"y" * 1023 + b"\n"] * 8 * 1024     # 8 MB: more than the socket buffers hold
    loader = StreamLoader(cfg(["127.0.0.1:1"], be_hosts=(be.addr,), connect_timeout_s=0.2))
    resp = loader.load("db", "t", "l", lines, 8 * 1024 * 1024, HDRS)
    assert resp.body["Status"] == "Success"
    assert be.puts()[0].body == b"".join(lines)


def test_loads_never_let_doris_drop_rows():
    """max_filter_ratio is always 0: a Doris that drops rows names at most 50 of them."""
    loader = StreamLoader(cfg(["fe1"]))
    hdrs = loader._load_headers("l", 3, {"max_filter_ratio": "0.9", "format": "csv"})
    assert hdrs["max_filter_ratio"] == "0" and hdrs["format"] == "csv"


# -- which hosts get credentials ------------------------------------------------------------------
def error_log_server(servers):
    return servers(lambda req, h: (200, {}, b"Reason: too long. src line [x]; \n"))


def test_error_url_on_the_redirect_target_gets_credentials(servers):
    """The BE the FE redirected to is in the cluster: its ErrorURL is fetched with auth."""
    be = servers(lambda req, h: (200, {}, b"Reason: bad. src line [x]; \n") if req.method == "GET"
                 else success(req, h))
    fe = servers(redirect_to(be))
    loader = StreamLoader(cfg([fe.addr]))
    loader.load("db", "t", "l", LINES, NBYTES, HDRS)
    assert loader.fetch_error_rows(f"http://{be.addr}/api/_load_error_log?file=x") == \
        ["Reason: bad. src line [x]; "]
    (get,) = [r for r in be.requests if r.method == "GET"]
    assert get.headers["authorization"] == AUTH


def test_error_url_on_a_discovered_be_gets_credentials(servers):
    be = error_log_server(servers)
    fe = servers(backends_fe([be.addr]))
    loader = StreamLoader(cfg([fe.addr], discover_backends=True))
    assert loader.backends() == [be.addr]
    loader.fetch_error_rows(f"http://{be.addr}/api/_load_error_log?file=x")
    assert be.requests[0].headers["authorization"] == AUTH


def test_error_url_on_an_unknown_host_gets_no_credentials_and_one_warning(servers, caplog):
    stranger = error_log_server(servers)
    be = servers(success)
    fe = servers(redirect_to(be))
    loader = StreamLoader(cfg([fe.addr], be_hosts=(be.addr,)))
    caplog.set_level("WARNING", logger="sinker.stream_load")
    for _ in range(3):
        rows = loader.fetch_error_rows(f"http://root:{PASSWORD}@{stranger.addr}/api/_load_error_log")
        assert rows == ["Reason: too long. src line [x]; "]
    assert len(stranger.requests) == 3
    assert all("authorization" not in r.headers for r in stranger.requests)
    warnings = [r for r in caplog.records if stranger.addr in r.getMessage()]
    assert len(warnings) == 1 and "without credentials" in warnings[0].getMessage()
    assert PASSWORD not in caplog.text
    # the configured hosts still get them
    loader.fetch_error_rows(f"http://{be.addr}/api/_load_error_log")
    assert be.requests[-1].headers["authorization"] == AUTH


def test_same_host_other_port_is_not_trusted(servers):
    fe = servers(success)
    other = error_log_server(servers)      # same 127.0.0.1, another port
    StreamLoader(cfg([fe.addr])).fetch_error_rows(f"http://{other.addr}/api/_load_error_log")
    assert "authorization" not in other.requests[0].headers


def test_plain_http_error_url_is_refused_under_https(servers, tls_files):
    ctx, ca = tls_files
    fe = servers(success, tls_ctx=ctx)
    plain = error_log_server(servers)
    loader = StreamLoader(cfg([fe.addr], https=True, ca_file=ca, be_hosts=(plain.addr,)))
    with pytest.raises(DorisFatalError, match="doris.https is true.*plain http") as exc:
        loader.fetch_error_rows(f"http://{plain.addr}/api/_load_error_log?file=x")
    assert PASSWORD not in str(exc.value)
    assert plain.requests == []              # not even asked, though it is a configured BE


def test_https_error_url_on_a_trusted_be_gets_credentials(servers, tls_files):
    ctx, ca = tls_files
    be = servers(lambda req, h: (200, {}, b"Reason: bad; \n"), tls_ctx=ctx)
    loader = StreamLoader(cfg(["127.0.0.1:1"], https=True, ca_file=ca, be_hosts=(be.addr,)))
    assert loader.fetch_error_rows(f"https://{be.addr}/api/_load_error_log") == ["Reason: bad; "]
    assert be.requests[0].headers["authorization"] == AUTH


def test_untrusted_certificate_message_names_the_ca_file(servers, tls_files, tmp_path):
    ctx, _ = tls_files
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(tmp_path / "other.key"), "-out", str(other_ca), "-days", "1",
                    "-subj", "/CN=other"], check=True, capture_output=True)
    fe = servers(success, tls_ctx=ctx)
    with pytest.raises(DorisFatalError) as exc:
        StreamLoader(cfg([fe.addr], https=True, ca_file=str(other_ca))).load(
            "db", "t", "l", LINES, NBYTES, HDRS)
    msg = str(exc.value)
    assert f"the CA file {other_ca} (doris.ca_file)" in msg and "signed the FE and BE" in msg
    assert fe.requests == []
    with pytest.raises(DorisFatalError, match="system CA store"):
        StreamLoader(cfg([fe.addr], https=True)).load("db", "t", "l", LINES, NBYTES, HDRS)


def test_hostname_mismatch_message_says_what_to_check(servers, tls_files):
    ctx, ca = tls_files                       # the certificate names only IP 127.0.0.1
    fe = servers(success, tls_ctx=ctx)
    with pytest.raises(DorisFatalError) as exc:
        StreamLoader(cfg([f"localhost:{fe.port}"], https=True, ca_file=ca)).load(
            "db", "t", "l", LINES, NBYTES, HDRS)
    msg = str(exc.value)
    assert "does not name the host" in msg and "subjectAltName" in msg, msg
    assert fe.requests == []


# -- the total deadline of a load ---------------------------------------------------------------
def stalls_mid_body(length: int | None, trickle_s: float | None):
    """Answer the status line, headers and a few bytes of the body, then stall (trickle_s None)
    or send one more byte every trickle_s seconds: never the whole body, until the test ends."""
    def behave(req, h):
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
        if length is not None:
            h.wfile.write(f"Content-Length: {length}\r\n".encode())
        h.wfile.write(b'\r\n{"Status": "Succ')
        h.wfile.flush()
        fake = h.server.fake
        while not fake.release.wait(trickle_s if trickle_s is not None else None):
            try:
                h.wfile.write(b" ")
                h.wfile.flush()
            except OSError:
                return None              # the client gave up: the deadline closed the socket
        return None
    return behave


def deadline_loader(be, **kw) -> StreamLoader:
    loader = StreamLoader(cfg([be.addr], be_hosts=(be.addr,), load_timeout_s=1.0, **kw))
    loader.deadline_s = 1.0           # the read timeout stays 31 s: only the deadline can end it
    return loader


@pytest.mark.parametrize("length,trickle_s", [
    (100_000, 0.05),      # a byte every 50 ms: no single read ever times out
    (None, None),         # no Content-Length, then silence: a cut body must not look complete
])
def test_a_load_that_stalls_mid_body_ends_at_its_deadline(servers, length, trickle_s):
    be = servers(stalls_mid_body(length, trickle_s))
    loader = deadline_loader(be)
    with pytest.raises(TransportError) as err:
        loader.load("db", "t", "l1", LINES, NBYTES, HDRS)
    assert err.value.timeout and "no complete answer within 1s" in str(err.value)
    assert PASSWORD not in str(err.value)


def test_an_error_url_that_trickles_ends_at_the_deadline(servers):
    be = servers(stalls_mid_body(100_000, 0.05))
    loader = deadline_loader(be)
    with pytest.raises(TransportError) as err:
        loader.fetch_error_rows(f"http://{be.addr}/api/_load_error_log?file=x")
    assert err.value.timeout and "no complete answer" in str(err.value)


def test_the_next_load_after_an_expired_one_succeeds(servers):
    stalled = threading.Event()

    def first_stalls(req, h):
        if not stalled.is_set():
            stalled.set()
            return stalls_mid_body(100_000, 0.05)(req, h)
        return success(req, h)
    be = servers(first_stalls)
    loader = deadline_loader(be)
    with pytest.raises(TransportError):
        loader.load("db", "t", "l1", LINES, NBYTES, HDRS)
    resp = loader.load("db", "t", "l1", LINES, NBYTES, HDRS)      # same label: the retry
    assert resp.body["Status"] == "Success" and resp.body["NumberLoadedRows"] == 3
