"""The Doris emulator's HTTP side: the FE (redirects, 2PC, backends, health) and the BE (Stream Load).

What a client can observe is modelled on Doris 2.1/3.x (see docs/doris-protocol.md): the FE
answers 307 without reading the body, the BE reads credentials only from the Authorization header,
answers header-level errors before `100 Continue`, and always answers HTTP 200 with a JSON body.
Responses are written with one sendall (no Nagle stalls); a connection we answer early is closed
gracefully (we drain what the client still sends), so the client reads our answer instead of a reset.
"""
from __future__ import annotations

import base64
import json
import socket
import ssl
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from . import loader
from .faults import Faults
from .transactions import LabelExists, TooManyRunningTxns, TxnBook

_PRECOMMIT_CHECK_S = 0.2


class _State:
    """What both servers share."""

    def __init__(self, catalog, host, user, password, faults, bench, auth_error_style, load_state_style,
                 txns: TxnBook, query_port, tls: ssl.SSLContext | None):
        self.catalog, self.host, self.user, self.password = catalog, host, user, password
        self.tls = tls
        self.scheme = "https" if tls is not None else "http"
        self.faults, self.bench, self.auth_error_style = faults, bench, auth_error_style
        self.load_state_style = load_state_style
        self.query_port = query_port
        self.fe_port = 0
        self.be_port = 0
        self.txns = txns
        self.error_logs: dict[str, str] = {}
        self.error_log_order: list[str] = []
        self.lock = threading.Lock()

    def add_error_log(self, txn_id: int, lines: list[str]) -> str:
        name = f"__shard_{txn_id % 8}/error_log_insert_stmt_{uuid.uuid4().hex[:16]}_{txn_id}"
        with self.lock:
            self.error_logs[name] = "".join(lines)
            self.error_log_order.append(name)
            while len(self.error_log_order) > 2000:        # keep memory bounded in long runs
                self.error_logs.pop(self.error_log_order.pop(0), None)
        return f"{self.scheme}://{self.host}:{self.be_port}/api/_load_error_log?file={name}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, state: _State):
        self.state = state
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        """TLS mode: the handshake runs here, in the connection's own thread, not in the accept loop."""
        tls = self.state.tls
        if tls is None:
            return super().finish_request(request, client_address)
        try:
            request.settimeout(10)
            conn = tls.wrap_socket(request, server_side=True)
            conn.settimeout(None)
        except (ssl.SSLError, OSError):
            return                    # an untrusting or plain-HTTP client: nothing to answer
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def drop_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _js(obj) -> bytes:
    return json.dumps(obj).encode()


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DorisEmulator/2.1"
    server: _Server

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self):
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def handle_expect_100(self):
        """Decide later: the FE never sends 100, the BE only once the headers pass."""
        self.expects_100 = True
        return True

    def handle_one_request(self):
        self.expects_100 = False
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True

    # -- replies ------------------------------------------------------------------------------------
    def reply(self, code: int, body: bytes, ctype: str = "application/json; charset=UTF-8",
              headers: dict | None = None, close: bool = False) -> None:
        reason = {200: "OK", 307: "Temporary Redirect", 401: "Unauthorized", 404: "Not Found",
                  500: "Internal Server Error", 405: "Method Not Allowed"}.get(code, "")
        head = [f"HTTP/1.1 {code} {reason}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        if close:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        if close:
            self.linger_close()

    def linger_close(self) -> None:
        """Close without a reset: the client may still be sending a body we never read."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5.0)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if not sock.recv(1 << 20):
                    break
        except OSError:
            pass

    def reset_connection(self) -> None:
        """RST instead of FIN: SO_LINGER 0, then close."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def drop_connection(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- request helpers -----------------------------------------------------------------------------
    def credentials(self) -> tuple[str, str] | None:
        h = self.headers.get("Authorization") or ""
        if not h.lower().startswith("basic "):
            return None
        try:
            user, _, pw = base64.b64decode(h[6:].strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, pw

    def auth_ok(self) -> bool:
        c = self.credentials()
        st = self.server.state
        if c is None:
            return False
        user = c[0].split("@")[0]               # old clients send user@default_cluster
        return user == st.user and c[1] == st.password

    def read_body(self) -> bytes | None:
        """The whole body (Content-Length or chunked); None when the client went away."""
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    return None
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:
                        t = self.rfile.readline(65537)
                        if not t or t in (b"\r\n", b"\n"):
                            break
                    return b"".join(parts)
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    return None
                parts.append(chunk)
                self.rfile.readline(3)
        n = int(self.headers.get("Content-Length") or 0)
        if n <= 0:
            return b""
        data = self.rfile.read(n)
        return data if len(data) == n else None

    def route(self):
        u = urlsplit(self.path)
        parts = [unquote(p) for p in u.path.split("/") if p]
        return parts, u.query

    def not_found(self):
        self.reply(404, _js({"msg": "Not Found", "code": 404, "data": f"no handler for {self.path}",
                             "count": 0}), close=self.has_body())

    def has_body(self) -> bool:
        return bool(int(self.headers.get("Content-Length") or 0)) or \
            (self.headers.get("Transfer-Encoding") or "").lower() == "chunked"

    def two_pc(self, db: str, fe: bool) -> None:
        st = self.server.state
        if not self.auth_ok():
            return self.unauthorized(fe)
        h = {k.lower(): v for k, v in self.headers.items()}
        op = (h.get("txn_operation") or "").strip().lower()
        close = self.has_body()
        if op not in ("commit", "abort"):
            return self.reply(200, _js({"status": "Fail", "msg": "txn_operation must be commit or abort"}),
                              close=close)
        if not st.catalog.has_database(db):
            return self.reply(200, _js({"status": "Fail", "msg": f"unknown database, database={db}"}),
                              close=close)
        txn_id = None
        if h.get("txn_id"):
            try:
                txn_id = int(h["txn_id"])
            except ValueError:
                return self.reply(200, _js({"status": "Fail", "msg": f"invalid txn_id {h['txn_id']}"}),
                                  close=close)
        label = h.get("label")
        if txn_id is None and not label:
            return self.reply(200, _js({"status": "Fail", "msg": "give the txn_id or label header"}),
                              close=close)
        try:
            ok, msg = st.txns.two_phase(db, txn_id, label, op)
        except Exception as e:  # noqa: BLE001 - e.g. the catalog refusing the rows
            ok, msg = False, f"errCode = 2, detailMessage = {e}"
        self.reply(200, _js({"status": "Success" if ok else "Fail", "msg": msg}), close=close)

    def unauthorized(self, fe: bool) -> None:
        st = self.server.state
        body = _js({"msg": "Unauthorized", "code": 401,
                    "data": "Access denied for user; check the user name and password (HTTP Basic auth)",
                    "count": 0})
        if fe and st.auth_error_style == "http401":
            return self.reply(401, body, headers={"WWW-Authenticate": 'Basic realm="doris"'}, close=True)
        if fe:
            return self.reply(200, body, close=True)
        return self.reply(200, _js({"status": "FAILED", "msg": "no valid Basic authorization"}), close=True)


class FEHandler(_Base):
    """Port 8030: redirect Stream Loads to the BE; 2PC; backends and health."""

    def do_PUT(self):
        parts, query = self.route()
        st = self.server.state
        if len(parts) == 3 and parts[0] == "api" and parts[2] == "_stream_load_2pc":
            return self.two_pc(parts[1], fe=True)
        if not (len(parts) == 4 and parts[0] == "api" and parts[3] == "_stream_load"):
            return self.not_found()
        if not self.auth_ok():
            return self.unauthorized(fe=True)
        if not self.expects_100:
            return self.reply(200, _js({"status": "FAILED", "msg": "There is no 100-continue header"}),
                              close=True)
        if st.faults.armed() and st.catalog.get_table(parts[1], parts[2]) is not None \
                and st.faults.fire("fe_500"):
            return self.reply(500, _js({"status": "FAILED", "msg": "injected fault fe_500"}), close=True)
        user, pw = self.credentials()
        loc = f"{st.scheme}://{user}:{pw}@{st.host}:{st.be_port}/api/{parts[1]}/{parts[2]}/_stream_load"
        if query:
            loc += "?" + query
        self.reply(307, b"", headers={"Location": loc}, close=True)

    def do_GET(self):
        parts, query = self.route()
        st = self.server.state
        if parts == ["api", "backends"]:
            return self.reply(200, _js({"msg": "success", "code": 0, "data": {"backends": [
                {"ip": st.host, "http_port": st.be_port, "is_alive": True}]}, "count": 0}))
        if parts == ["api", "health"]:
            return self.reply(200, _js({"msg": "success", "code": 0, "data": {
                "online_backend_num": 1, "total_backend_num": 1}, "count": 0}))
        if len(parts) == 3 and parts[0] == "api" and parts[2] == "get_load_state":
            return self.load_state(parts[1], (parse_qs(query).get("label") or [""])[0])
        if parts == ["api", "bootstrap"]:
            return self.reply(200, _js({"msg": "success", "code": 0, "data": {
                "replayedJournalId": 0, "queryPort": st.query_port, "rpcPort": 0,
                "version": "doris-2.1.7-rc01-emulator"}, "count": 0}))
        return self.not_found()


    def load_state(self, db: str, label: str) -> None:
        """A label's txn state without the MySQL port, in the wrapped (newer) or flat (older) shape."""
        st = self.server.state
        if not self.auth_ok():
            return self.unauthorized(fe=True)
        if not label:
            return self.reply(200, _js({"msg": "No label selected: give ?label=...", "code": 1, "data": None,
                                        "count": 0}))
        if not st.catalog.has_database(db):
            return self.reply(200, _js({"msg": f"unknown database, database={db}", "code": 1, "data": None,
                                        "count": 0}))
        state = st.txns.label_state(db, label)
        if st.load_state_style == "flat":
            return self.reply(200, _js({"Label": label, "Status": "Success", "State": state}))
        self.reply(200, _js({"msg": "success", "code": 0, "data": state, "count": 0}))


class BEHandler(_Base):
    """Port 8040: Stream Load itself, the error log, and the 2PC API (Doris serves it here too)."""

    def do_GET(self):
        parts, query = self.route()
        st = self.server.state
        if parts == ["api", "_load_error_log"]:
            name = (parse_qs(query).get("file") or [""])[0]
            text = st.error_logs.get(name)
            if text is None:
                return self.reply(404, b"error log not found (it may have expired)\n", "text/plain")
            return self.reply(200, text.encode(), "text/plain; charset=UTF-8")
        if parts == ["api", "health"]:
            return self.reply(200, _js({"status": "OK", "msg": "To Be Added"}))
        return self.not_found()

    def do_PUT(self):
        parts, _ = self.route()
        if len(parts) == 3 and parts[0] == "api" and parts[2] == "_stream_load_2pc":
            return self.two_pc(parts[1], fe=False)
        if not (len(parts) == 4 and parts[0] == "api" and parts[3] == "_stream_load"):
            return self.not_found()
        self.stream_load(parts[1], parts[2])

    # -- the load --------------------------------------------------------------------------------------
    def stream_load(self, db: str, table: str) -> None:
        st = self.server.state
        t0 = time.monotonic()
        h = {k.lower(): v for k, v in self.headers.items()}
        resp = {"TxnId": 0, "Label": h.get("label") or "", "Comment": h.get("comment") or "",
                "TwoPhaseCommit": "false", "Status": "Fail", "Message": ""}

        def early(message: str, status: str = "Fail", **extra) -> None:
            """An answer from the headers alone, before 100 Continue and before the body."""
            resp.update(Status=status, Message=message, **extra)
            self.reply(200, _js(_full(resp, t0)), close=True)

        if not self.auth_ok():
            return early("[ANALYSIS_ERROR]no valid Basic authorization")
        try:
            spec = loader.parse_spec(h)
        except loader.LoadError as e:
            return early(str(e))
        resp["TwoPhaseCommit"] = "true" if spec.two_phase_commit else "false"
        if not st.catalog.has_database(db):
            return early(f"[ANALYSIS_ERROR]unknown database, database={db}")
        tdef = st.catalog.get_table(db, table)
        if tdef is None:
            return early(f"[ANALYSIS_ERROR]TStatus: errCode = 2, detailMessage = table not found, "
                         f"tableName={table}")
        faults = st.faults
        if faults.armed():
            if faults.fire("http_500"):
                return self.reply(500, _js({"status": "FAILED", "msg": "injected fault http_500"}), close=True)
            if faults.fire("txn_limit"):       # an old build's limit of 100, whatever the real slots say
                return early("[ANALYSIS_ERROR]TStatus: errCode = 2, detailMessage = current running txns "
                             "on db 10001 is 100, larger than limit 100")
            if faults.fire("label_running"):
                return early(f"Label [{resp['Label']}] has already been used, relate to txn [0]",
                             status="Label Already Exists", ExistingJobStatus="RUNNING")
        if spec.group_commit:
            label = f"group_commit_{uuid.uuid4().hex}"
            resp["GroupCommit"] = True
        else:
            label = spec.label or str(uuid.uuid4())
        resp["Label"] = label
        try:
            plan = loader.plan(spec, tdef)
        except loader.LoadError as e:
            return early(str(e))
        try:
            txn = st.txns.begin(db, label, spec.timeout_s)
        except LabelExists as e:
            return early(f"Label [{label}] has already been used, relate to txn [{e.txn.txn_id}]",
                         status="Label Already Exists", ExistingJobStatus=e.job_status)
        except TooManyRunningTxns as e:
            return early(str(e))
        resp["TxnId"] = txn.txn_id
        t_begin = time.monotonic()
        try:
            self.load_body(st, spec, plan, db, tdef, txn, resp, t0, t_begin)
        except BaseException:
            st.txns.abort(txn, "load failed inside the emulator")
            raise

    def load_body(self, st, spec, plan, db, tdef, txn, resp, t0, t_begin) -> None:
        faults = st.faults
        if self.expects_100:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if faults.armed() and faults.fire("reset"):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read1(max(1, min(n // 2, 1 << 20)))      # part of it, whatever has arrived
            st.txns.abort(txn, "connection reset (injected)")
            return self.reset_connection()
        self.connection.settimeout(max(1, spec.timeout_s))     # a client stuck mid-body ends like a Doris
        body = self.read_body()                                # load timeout: txn aborted, label free
        self.connection.settimeout(None)
        if body is None:
            st.txns.abort(txn, "the client closed the connection before the whole body arrived")
            return self.drop_connection()
        t_read = time.monotonic()
        resp["LoadBytes"] = len(body)
        timing = {"BeginTxnTimeMs": _ms(t_begin - t0), "ReadDataTimeMs": _ms(t_read - t_begin)}
        if faults.armed() and faults.fire("too_many_versions"):
            msg = (f"[E-235]too many versions, tablet_id={10000 + txn.txn_id % 997}, version count: 2001, "
                   f"exceed limit: 2000. Please reduce the frequency of loading data or adjust the "
                   f"max_tablet_version_num")
            st.txns.abort(txn, msg)
            return self.answer(resp, t0, timing, Status="Fail", Message=msg)
        try:
            out = loader.count(spec, plan, body) if st.bench else loader.run(spec, plan, body)
        except loader.LoadError as e:
            st.txns.abort(txn, str(e))
            return self.answer(resp, t0, timing, Status="Fail", Message=str(e))
        loaded = out.total - out.filtered - out.unselected
        resp.update(NumberTotalRows=out.total, NumberLoadedRows=loaded, NumberFilteredRows=out.filtered,
                    NumberUnselectedRows=out.unselected)
        if out.filtered:
            resp["ErrorURL"] = st.add_error_log(txn.txn_id, _error_lines(out.errors))
        if out.filtered and out.filtered / out.total > spec.max_filter_ratio:
            msg = "[DATA_QUALITY_ERROR]too many filtered rows"
            st.txns.abort(txn, msg)
            resp["NumberLoadedRows"] = loaded
            return self.answer(resp, t0, timing, Status="Fail", Message=msg)
        t_write = time.monotonic()
        timing["WriteDataTimeMs"] = _ms(t_write - t_read)
        publish_timeout = False
        try:
            if spec.two_phase_commit:
                st.txns.precommit(txn, tdef.name, None if st.bench else out.rows, plan.with_sign)
            else:
                if out.rows and not st.bench:
                    st.catalog.insert_rows(db, tdef.name, out.rows, delete_sign=plan.with_sign)
                publish_timeout = bool(faults.armed() and faults.fire("publish_timeout"))
                st.txns.visible(txn, committed_only=publish_timeout)
                if publish_timeout:
                    threading.Timer(0.5, st.txns.visible, (txn,)).start()
        except Exception as e:  # noqa: BLE001 - the catalog refusing rows fails the load, like Doris
            st.txns.abort(txn, str(e))
            return self.answer(resp, t0, timing, Status="Fail", Message=f"[INTERNAL_ERROR]{e}")
        timing["CommitAndPublishTimeMs"] = _ms(time.monotonic() - t_write)
        if faults.armed():
            if faults.fire("slow"):
                time.sleep(faults.delay("slow"))
            if faults.fire("commit_then_drop"):
                return self.drop_connection()
            if publish_timeout:
                return self.answer(resp, t0, timing, Status="Publish Timeout",
                                   Message="transaction commit successfully, BUT data will be visible later")
        self.answer(resp, t0, timing, Status="Success", Message="OK")

    def answer(self, resp, t0, timing, **fields) -> None:
        resp.update(fields)
        resp.update(timing)
        self.reply(200, _js(_full(resp, t0)))


_ORDER = ("TxnId", "Label", "Comment", "TwoPhaseCommit", "Status", "ExistingJobStatus", "Message",
          "NumberTotalRows", "NumberLoadedRows", "NumberFilteredRows", "NumberUnselectedRows", "LoadBytes",
          "LoadTimeMs", "BeginTxnTimeMs", "StreamLoadPutTimeMs", "ReadDataTimeMs", "WriteDataTimeMs",
          "CommitAndPublishTimeMs", "ErrorURL", "GroupCommit")


_MAX_ERROR_ROWS = 50     # the BE writes this many rejected rows, then TOO MUCH ERROR!


def _error_lines(errors: list[tuple[str, str]]) -> list[str]:
    """The error log file: the first 50 rejected rows; NumberFilteredRows keeps the true count."""
    lines = [f"Reason: {reason}. src line [{src}]; \n" for reason, src in errors[:_MAX_ERROR_ROWS]]
    if len(errors) > _MAX_ERROR_ROWS:
        lines.append("TOO MUCH ERROR!\n")
    return lines


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _full(resp: dict, t0: float) -> dict:
    """Every field Doris sends, in Doris's order; counters default to 0."""
    resp.setdefault("LoadTimeMs", _ms(time.monotonic() - t0))
    out = {}
    for k in _ORDER:
        if k in resp:
            out[k] = resp[k]
        elif k not in ("ExistingJobStatus", "ErrorURL", "GroupCommit"):
            out[k] = 0
    return out


class DorisHTTP:
    """Both HTTP servers, with take_down()/bring_up() on the same ports."""

    def __init__(self, catalog, host: str = "127.0.0.1", fe_port: int = 0, be_port: int = 0,
                 user: str = "root", password: str = "", faults: Faults | None = None, bench: bool = False,
                 auth_error_style: str = "http401", precommit_timeout_s: float = 3600.0,
                 query_port: int = 0, max_running_txn_num_per_db: int = 1000,
                 load_state_style: str = "wrapped", tls: ssl.SSLContext | None = None):
        if auth_error_style not in ("http401", "json200"):
            raise ValueError("auth_error_style must be 'http401' or 'json200'")
        if load_state_style not in ("wrapped", "flat"):
            raise ValueError("load_state_style must be 'wrapped' ({msg, code, data}) or 'flat' ({Label, Status, State})")
        self.faults = faults or Faults()
        txns = TxnBook(catalog, precommit_timeout_s, max_running_txn_num_per_db)
        self.state = _State(catalog, host, user, password, self.faults, bench, auth_error_style, load_state_style,
                            txns, query_port, tls)
        self.host = host
        self.fe_port, self.be_port = fe_port, be_port
        self._servers: list[tuple[_Server, threading.Thread]] = []
        self._stop = threading.Event()
        self._janitor: threading.Thread | None = None

    def start(self) -> "DorisHTTP":
        self.bring_up()
        self._janitor = threading.Thread(target=self._expire_loop, name="doris-emu-2pc-expiry", daemon=True)
        self._janitor.start()
        return self

    def _expire_loop(self) -> None:
        while not self._stop.wait(_PRECOMMIT_CHECK_S):
            try:
                self.state.txns.expire()
            except Exception:  # noqa: BLE001 - keep the janitor alive
                pass

    def bring_up(self) -> None:
        """Listen again (on the ports chosen at the first start)."""
        if self._servers:
            return
        for role, handler in (("be", BEHandler), ("fe", FEHandler)):
            port = self.be_port if role == "be" else self.fe_port
            srv = _Server((self.host, port), handler, self.state)
            port = srv.server_address[1]
            if role == "be":
                self.be_port = self.state.be_port = port
            else:
                self.fe_port = self.state.fe_port = port
            th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"doris-emu-{role}-{port}", daemon=True)
            th.start()
            self._servers.append((srv, th))

    def take_down(self) -> None:
        """Stop listening (connection refused) and cut open connections; data and labels stay."""
        servers, self._servers = self._servers, []
        for srv, th in servers:
            srv.shutdown()
            srv.server_close()
            srv.drop_connections()
            th.join(5)

    def stop(self) -> None:
        self._stop.set()
        self.take_down()
