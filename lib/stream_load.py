"""Doris Stream Load over HTTP: the FE's 307 followed by hand, auth on every hop, BE discovery.

Why by hand: urllib3 drops ``Authorization`` when a redirect changes host (FE:8030 -> BE:8040), and
it does not wait for ``100 Continue``, so a big body would be shipped to the FE only to be answered
with a redirect. We therefore ask the FE with an EMPTY body, read its 307, and PUT the real body to
the BE it named (or straight to a BE when ``be_hosts`` / ``discover_backends`` is set).

Transport failures raise ``TransportError`` (``.timeout`` says whether it was a timeout): the
outcome is unknown and the writer retries under the SAME label. Nothing here retries a body.
Each load (and each ErrorURL fetch, 2PC call) has a total deadline besides the per-socket
timeouts: a BE that stalls or trickles mid-body is cut off by a watchdog (see ``_Deadline``).
The password never appears in a URL, a log line or an exception message.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (ConnectTimeoutError, HTTPError, NewConnectionError,
                                ReadTimeoutError, SSLError)
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from .config import DEFAULT_BE_PORT, DorisConfig, HostPort
from .errors import DorisFatalError, TransportError

try:
    import ujson as _json
except ImportError:  # pragma: no cover - ujson is a dependency; plain json works too
    import json as _json

log = logging.getLogger("sinker.stream_load")

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
BACKENDS_TTL_S = 60.0           # how long a discovered BE list is trusted
DISCOVERY_RETRY_S = 10.0        # after a failed discovery, use the FE path this long before asking again
CHUNK_BYTES = 256 * 1024        # body pieces are joined into sends of about this size (few syscalls)
# Headers that only this module may set: a mapper header must never change framing or auth, and
# never let Doris drop rows: with max_filter_ratio above 0 Doris loads a batch without the rows it
# rejects but names at most 50 of them, so the writer could not account for the rest.
_RESERVED = frozenset(("authorization", "content-length", "transfer-encoding", "expect", "label",
                       "host", "max_filter_ratio", "group_commit"))


def load_headers(doris_cfg, headers: dict[str, str], label: str | None,
                 group_commit: str | None = None) -> dict[str, str]:
    """The Stream Load headers of a load, as they go on the wire (without credentials and
    Content-Length): the mapper's, the load timeout, the label and ``max_filter_ratio: 0``.
    ``label`` None is a group-commit load: ``group_commit`` instead of a label, because Doris
    does not group-commit a load that carries one."""
    hdrs = {"timeout": str(max(1, int(doris_cfg.load_timeout_s)))}
    for k, v in (headers or {}).items():
        if k.lower() not in _RESERVED:
            hdrs[k] = v
    if label is None:
        hdrs["group_commit"] = group_commit or doris_cfg.group_commit
    else:
        hdrs["label"] = label
    hdrs["max_filter_ratio"] = "0"
    return hdrs


@dataclass
class _Answer:
    status: int
    data: bytes
    headers: dict


@dataclass
class LoadResponse:
    http_status: int
    body: dict | None       # the parsed JSON answer; None when the body is not a JSON object
    raw: bytes
    url: str = ""           # where the final answer came from (no userinfo), for messages


class _ConnectFailed(TransportError):
    """Could not connect: no byte of the request left us, so another host may be tried at once."""


def _transport_error(msg: str, timeout: bool = False, cls=TransportError) -> TransportError:
    err = cls(msg)
    err.timeout = timeout
    return err


class _Deadline:
    """The total time one load may take. Socket timeouts bound each read or send alone (a BE that
    sends a byte every few minutes never trips them); when this deadline passes, a watchdog timer
    shuts down the socket of the request in progress, which ends any blocked read or send at once,
    and the request raises a timeout ``TransportError`` (retried under the same label)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sock = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()

    def attach(self, conn) -> None:
        """The connection a request of this load is about to use (from its request()). Its
        socket is kept: http.client drops ``conn.sock`` once an answer without a length starts."""
        with self._lock:
            self._sock = conn.sock
            if self.expired:
                _shut(self._sock)

    def detach(self) -> None:
        with self._lock:
            self._sock = None

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass       # already closed: nothing is blocked on it


# -- connections whose body sends use the read timeout, not the connect timeout -----------------
# urllib3 applies the *connect* timeout (seconds) to the socket while it sends the body; a busy BE
# that stalls reading for longer would turn a healthy load into a retry. Connect first under the
# connect timeout, then switch the socket to the send timeout for the whole body. ``on_request``
# hands the connection to the load's deadline before a byte is sent.
def _connection_classes(send_timeout: float, on_request):
    class LoadHTTPConnection(HTTPConnection):
        def request(self, method, url, body=None, headers=None, **kw):
            if self.sock is None:
                self.connect()
            self.timeout = send_timeout
            on_request(self)
            return super().request(method, url, body=body, headers=headers, **kw)

    class LoadHTTPSConnection(HTTPSConnection):
        def request(self, method, url, body=None, headers=None, **kw):
            if self.sock is None:
                self.connect()
            self.timeout = send_timeout
            on_request(self)
            return super().request(method, url, body=body, headers=headers, **kw)

    class LoadHTTPPool(HTTPConnectionPool):
        ConnectionCls = LoadHTTPConnection

    class LoadHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = LoadHTTPSConnection

    return {"http": LoadHTTPPool, "https": LoadHTTPSPool}


# -- small pure helpers (tested directly) -------------------------------------------------------
def safe_url(url: str) -> str:
    """The URL without any ``user:password@`` part: the only form that may be logged or raised."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc).geturl()


def next_url(current: str, location: str) -> str:
    """Resolve a redirect's Location against the current URL; userinfo dropped, no https->http."""
    target = safe_url(urljoin(current, location.strip()))
    cur_scheme = urlsplit(current).scheme.lower()
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise DorisFatalError(f"Doris redirected {safe_url(current)} to an unsupported URL "
                              f"{target!r}; check the FE/BE addresses Doris advertises.")
    if cur_scheme == "https" and scheme == "http":
        raise DorisFatalError(
            f"refusing to follow a redirect from https to plain http ({safe_url(current)} -> "
            f"{target}): credentials and data would travel unencrypted. Enable HTTPS on the Doris "
            "BEs, or load straight to them with doris.be_hosts using https.")
    return target


def body_chunks(lines: list[bytes], nbytes: int, chunk_bytes: int = CHUNK_BYTES):
    """Yield the body in pieces of about chunk_bytes: few sends, and never one huge bytes object."""
    n = len(lines)
    if n == 0 or nbytes <= 0:
        return
    per = max(1, int(chunk_bytes * n / nbytes))
    for i in range(0, n, per):
        yield b"".join(lines[i:i + per])


def _parse_json(raw: bytes) -> dict | None:
    if not raw:
        return None
    try:
        value = _json.loads(raw)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def _describe(exc: BaseException) -> str:
    """A short reason for an urllib3 error (its str() names internal objects; no URLs with secrets)."""
    inner = exc
    for _ in range(3):
        nested = getattr(inner, "reason", None) or (inner.args[1] if len(inner.args) > 1 and
                                                    isinstance(inner.args[1], BaseException) else None)
        if not isinstance(nested, BaseException):
            break
        inner = nested
    text = str(inner)
    if ">: " in text:          # "<urllib3.connection.HTTPConnection object at 0x..>: Failed to ..."
        text = text.split(">: ", 1)[1]
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


def url_host(url: str) -> HostPort:
    """The (host, port) a URL dials, lowercased, the scheme's default port filled in."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return HostPort((parts.hostname or "").lower(), port)


def certificate_refused(where: str, detail: str, cfg: DorisConfig) -> DorisFatalError:
    """The error for a Doris certificate that did not verify: which CA was used, what to check."""
    trusted = (f"the CA file {cfg.ca_file} (doris.ca_file)" if cfg.ca_file
               else "the system CA store (doris.ca_file is not set)")
    if "mismatch" in detail.lower() or "hostname" in detail.lower():
        return DorisFatalError(
            f"{where}: the Doris certificate does not name the host sinker connected to "
            f"({detail}). The host in doris.fe_hosts / doris.be_hosts, or the one the FE "
            "redirects to, must be in the certificate's subjectAltName: use that name, or "
            "reissue the certificate.")
    return DorisFatalError(
        f"{where}: the Doris certificate is not signed by a CA sinker trusts ({detail}); it "
        f"was checked against {trusted}. Check that doris.ca_file is the CA certificate (PEM) "
        "that signed the FE and BE certificates, and that the certificate has not expired.")


class StreamLoader:
    """One urllib3 PoolManager shared by the writer threads (urllib3 pools are thread-safe)."""

    READ_TIMEOUT_MARGIN_S = 30.0   # read timeout = load_timeout_s + this: Doris times out first
    DEADLINE_MARGIN_S = 60.0       # a whole load (all hops, the body, the answer) ends by
                                   # load_timeout_s + this, however the BE trickles
    PROBE_READ_TIMEOUT_S = 30.0    # FE answers (307, backends, health) are quick

    def __init__(self, cfg: DorisConfig, pool_size: int = 4):
        self.cfg = cfg
        self.scheme = "https" if cfg.https else "http"
        self._auth = urllib3.make_headers(basic_auth=f"{cfg.user}:{cfg.password}")["authorization"]
        self._fes = [hp.netloc for hp in cfg.fe_addresses]
        if not self._fes:
            raise DorisFatalError("doris.fe_hosts is empty: list at least one Doris FE host")
        self._bes = [hp.netloc for hp in cfg.be_addresses]
        self._lock = threading.Lock()
        self._trusted = {HostPort(hp.host.lower(), hp.port)
                         for hp in (*cfg.fe_addresses, *cfg.be_addresses)}
        self._warned_hosts: set[HostPort] = set()
        self._fe_index = 0
        self._rr = itertools.count()
        self._discovered: list[str] = []
        self._discovered_until = 0.0      # monotonic time until which _discovered is trusted
        self._local = threading.local()   # .deadline: the _Deadline of this thread's load
        self.deadline_s = cfg.load_timeout_s + self.DEADLINE_MARGIN_S
        read = cfg.load_timeout_s + self.READ_TIMEOUT_MARGIN_S
        self._load_timeout = urllib3.Timeout(connect=cfg.connect_timeout_s, read=read)
        self._short_timeout = urllib3.Timeout(connect=cfg.connect_timeout_s,
                                              read=min(read, self.PROBE_READ_TIMEOUT_S))
        tls = {}
        if cfg.https:
            tls["cert_reqs"] = "CERT_REQUIRED"
            if cfg.ca_file:
                tls["ca_certs"] = cfg.ca_file
        self._http = urllib3.PoolManager(num_pools=16, maxsize=max(1, pool_size), block=False,
                                         retries=False, timeout=self._load_timeout, **tls)
        self._http.pool_classes_by_scheme = _connection_classes(read, self._on_request)

    # -- public API ---------------------------------------------------------------------------
    def load(self, db: str, table: str, label: str, lines: list[bytes], nbytes: int,
             headers: dict[str, str], group_commit: str | None = None) -> LoadResponse:
        """One Stream Load of the given body under ``label`` (with doris.group_commit: without
        one, ``label`` then only names the load in errors). Raises TransportError when the
        outcome is unknown (retry with the same label), DorisFatalError on a redirect we refuse."""
        actual = sum(map(len, lines))
        if actual != nbytes:
            raise ValueError(f"batch {label}: nbytes={nbytes} but the lines hold {actual} bytes; "
                             "refusing to send a body whose Content-Length would be wrong")
        path = f"/api/{quote(db, safe='')}/{quote(table, safe='')}/_stream_load"
        mode = self.cfg.group_commit if group_commit is None else group_commit
        hdrs = self._load_headers(None if mode != "off" else label, nbytes, headers, mode)
        with self._deadline():
            return self._load(path, hdrs, lines, nbytes)

    def _load(self, path, hdrs, lines, nbytes) -> LoadResponse:
        if self._bes:
            return self._load_direct(self._bes, path, hdrs, lines, nbytes, discovered=False)
        if self.cfg.discover_backends:
            bes = self._discovered_backends()
            if bes:
                try:
                    return self._load_direct(bes, path, hdrs, lines, nbytes, discovered=True)
                except _ConnectFailed as e:
                    log.warning("no discovered Doris BE accepted a connection (%s); loading "
                                "through the FE instead", e)
        return self._load_via_fe(path, hdrs, lines, nbytes)

    def probe_fe(self, fe: HostPort, db: str, table: str) -> tuple[LoadResponse, str | None]:
        """One FE's answer to an empty Stream Load, not followed (``sinker check``): the FE checks
        the password and redirects before reading a body, so nothing is loaded."""
        path = f"/api/{quote(db, safe='')}/{quote(table, safe='')}/_stream_load"
        url = f"{self.scheme}://{fe.netloc}{path}"
        return self._send("PUT", url, self._load_headers("sinker_check_never_loaded", 0, {}), None,
                          self._short_timeout)

    def fetch_error_rows(self, error_url: str) -> list[str]:
        """GET Doris's ErrorURL: one line per rejected row with the reason. Credentials go with
        it only when it names a host sinker trusts (_request drops them otherwise)."""
        url = safe_url(error_url.strip())
        with self._deadline():
            resp = self._request("GET", url, {"Authorization": self._auth}, None, self._load_timeout)
        if resp.status != 200:
            raise _transport_error(f"GET {url} answered HTTP {resp.status}: "
                                   f"{resp.data[:200].decode('utf-8', 'replace')}")
        return resp.data.decode("utf-8", "replace").splitlines()

    def commit_2pc(self, db: str, txn_id_or_label, operation: str) -> dict:
        """Commit or abort a pre-committed load (PUT /api/{db}/_stream_load_2pc at the FE)."""
        if operation not in ("commit", "abort"):
            raise ValueError(f"2PC operation must be 'commit' or 'abort', not {operation!r}")
        hdrs = {"Authorization": self._auth, "Expect": "100-continue", "Content-Length": "0",
                "txn_operation": operation}
        ident = str(txn_id_or_label)
        if isinstance(txn_id_or_label, int) or ident.isdigit():
            hdrs["txn_id"] = ident
        else:
            hdrs["label"] = ident
        path = f"/api/{quote(db, safe='')}/_stream_load_2pc"
        with self._deadline():
            resp = self._follow(self._via_fe("PUT", path, hdrs, self._load_timeout), hdrs, None)
        if resp.body is not None:
            return resp.body
        return {"status": "Fail", "msg": f"HTTP {resp.http_status}: "
                                         f"{resp.raw[:200].decode('utf-8', 'replace')}"}

    def backends(self) -> list[str]:
        """'host:port' of the live BEs, from the FE's GET /api/backends?is_alive=true."""
        resp, _ = self._via_fe("GET", "/api/backends?is_alive=true",
                               {"Authorization": self._auth}, self._short_timeout)
        body = resp.body or {}
        data = body.get("data")
        items = data.get("backends") if isinstance(data, dict) else None
        if resp.http_status != 200 or not isinstance(items, list):
            raise DorisFatalError(
                f"the FE's /api/backends answered HTTP {resp.http_status} "
                f"{resp.raw[:200].decode('utf-8', 'replace')!r}; check doris.user's privileges "
                "or turn doris.discover_backends off")
        out = []
        for b in items:
            if not isinstance(b, dict) or b.get("is_alive") is False:
                continue
            host = b.get("ip") or b.get("host")
            port = b.get("http_port") or b.get("httpPort") or DEFAULT_BE_PORT
            if host:
                hp = HostPort(str(host).strip("[]"), int(port))
                self._trust(hp)
                out.append(hp.netloc)
        return out

    def close(self) -> None:
        self._http.clear()

    # -- loading paths ------------------------------------------------------------------------
    def _load_headers(self, label: str, nbytes: int, headers: dict[str, str],
                      group_commit: str | None = None) -> dict[str, str]:
        hdrs = {"Expect": "100-continue", **load_headers(self.cfg, headers, label, group_commit)}
        hdrs["Authorization"] = self._auth
        hdrs["Content-Length"] = str(nbytes)
        return hdrs

    def _load_via_fe(self, path, hdrs, lines, nbytes) -> LoadResponse:
        probe = dict(hdrs)
        probe["Content-Length"] = "0"
        resp, location = self._via_fe("PUT", path, probe, self._short_timeout)
        if resp.http_status in REDIRECT_STATUSES:
            return self._follow((resp, location), hdrs, (lines, nbytes))
        status = (resp.body or {}).get("Status")
        if nbytes > 0 and status in ("Success", "Publish Timeout"):
            # The FE ran the load itself on our empty probe: the label now holds zero rows and a
            # retry would be told "Label Already Exists / FINISHED". Never report that as loaded.
            raise DorisFatalError(
                f"the FE at {resp.url} loaded the empty redirect probe itself (label "
                f"{hdrs.get('label')}) instead of redirecting to a BE; set doris.be_hosts or "
                "doris.discover_backends so sinker loads straight to the BEs")
        return resp

    def _load_direct(self, bes, path, hdrs, lines, nbytes, discovered: bool) -> LoadResponse:
        """PUT to the BEs round robin; a BE we cannot connect to is skipped (nothing was sent)."""
        start = next(self._rr)
        failures = []
        for i in range(len(bes)):
            url = f"{self.scheme}://{bes[(start + i) % len(bes)]}{path}"
            try:
                answer = self._put_body(url, hdrs, lines, nbytes)
            except _ConnectFailed as e:
                failures.append(str(e))
                if discovered:
                    self._forget_backends()
                continue
            except TransportError:
                if discovered:
                    self._forget_backends()
                raise
            return self._follow(answer, hdrs, (lines, nbytes))
        raise _transport_error("could not connect to any Doris BE: " + "; ".join(failures),
                               timeout=False, cls=_ConnectFailed)

    def _follow(self, answer, hdrs, body) -> LoadResponse:
        """Follow redirects by hand: auth re-applied, userinfo dropped, at most MAX_REDIRECTS.
        ``body`` is (lines, nbytes) to PUT at each new hop, or None for a body-less request."""
        resp, location = answer
        visited = {resp.url}
        hops = 0
        while resp.http_status in REDIRECT_STATUSES and location:
            if hops >= MAX_REDIRECTS:
                raise DorisFatalError(
                    f"Doris redirected more than {MAX_REDIRECTS} times (last: {resp.url}); check "
                    "the FE/BE network setup or load straight to the BEs with doris.be_hosts")
            target = next_url(resp.url, location)
            if target in visited:
                raise DorisFatalError(f"Doris redirect loop at {target}; check the FE/BE setup")
            visited.add(target)
            # Every hop here started at a trusted FE/BE, so the host it names is in the cluster.
            self._trust(url_host(target))
            hops += 1
            log.debug("following redirect %d to %s", hops, target)
            if body is None:
                resp, location = self._send("PUT", target, hdrs, None, self._load_timeout)
            else:
                resp, location = self._put_body(target, hdrs, *body)
        return resp

    def _put_body(self, url, hdrs, lines, nbytes):
        return self._send("PUT", url, hdrs, body_chunks(lines, nbytes), self._load_timeout)

    def _via_fe(self, method, path, hdrs, timeout) -> tuple[LoadResponse, str | None]:
        """Send a body-less request to the FEs in order, from the last one that answered."""
        with self._lock:
            start = self._fe_index
        failures, timeouts = [], 0
        for i in range(len(self._fes)):
            idx = (start + i) % len(self._fes)
            url = f"{self.scheme}://{self._fes[idx]}{path}"
            try:
                answer = self._send(method, url, hdrs, None, timeout)
            except TransportError as e:
                # No body went out: trying the next FE cannot load anything twice.
                failures.append(str(e))
                timeouts += bool(getattr(e, "timeout", False))
                continue
            with self._lock:
                self._fe_index = idx
            return answer
        raise _transport_error(
            f"no Doris FE answered ({', '.join(self._fes)}): " + "; ".join(failures) +
            ". Check doris.fe_hosts / doris.http_port and that the FEs are up.",
            timeout=timeouts == len(self._fes))

    def _send(self, method, url, hdrs, body, timeout) -> tuple[LoadResponse, str | None]:
        """One request; the answer and its Location header (for redirects)."""
        resp = self._request(method, url, hdrs, body, timeout)
        return (LoadResponse(resp.status, _parse_json(resp.data), resp.data, url),
                resp.headers.get("Location"))

    @contextlib.contextmanager
    def _deadline(self):
        """This thread's requests until the block ends share one deadline."""
        with _Deadline(self.deadline_s) as deadline:
            self._local.deadline = deadline
            try:
                yield deadline
            finally:
                self._local.deadline = None

    def _on_request(self, conn) -> None:
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None:
            deadline.attach(conn)

    def _request(self, method, url, hdrs, body, timeout) -> _Answer:
        """The one place requests leave, answer read whole: plain http is refused under
        doris.https, credentials are dropped for a host sinker does not trust, and past the
        load's deadline it is a timeout TransportError whatever urllib3 made of the shut socket
        (an error, or a body cut short). The URL in messages never has userinfo."""
        shown = f"{method} {safe_url(url)}"
        if self.cfg.https and urlsplit(url).scheme.lower() != "https":
            raise DorisFatalError(
                f"refusing {shown}: doris.https is true but Doris named a plain http URL, so the "
                "request and its answer would travel unencrypted. Enable HTTPS on every Doris "
                "FE and BE (enable_https) so the URLs they hand out are https.")
        if "Authorization" in hdrs and not self._is_trusted(url):
            hdrs = {k: v for k, v in hdrs.items() if k != "Authorization"}
            self._warn_untrusted(url_host(url))
        deadline = getattr(self._local, "deadline", None)
        try:
            answer = self._call(shown, method, url, hdrs, body, timeout)
        except TransportError:
            self._raise_if_expired(shown, deadline)
            raise
        self._raise_if_expired(shown, deadline)
        return answer

    @staticmethod
    def _raise_if_expired(shown: str, deadline: _Deadline | None) -> None:
        if deadline is not None and deadline.expired:
            raise _transport_error(
                f"{shown}: no complete answer within {deadline.seconds:.0f}s (doris.load_timeout_s "
                f"+ {StreamLoader.DEADLINE_MARGIN_S:.0f}s); the connection was closed and the "
                "outcome is unknown", timeout=True)

    def _call(self, shown, method, url, hdrs, body, timeout) -> _Answer:
        """urllib3 call with errors turned into ours; the URL in messages never has userinfo."""
        deadline = getattr(self._local, "deadline", None)
        try:
            resp = self._http.request(method, url, body=body, headers=hdrs, timeout=timeout,
                                      redirect=False, retries=False, preload_content=False)
            try:
                data = resp.read()
            finally:
                if deadline is not None:
                    deadline.detach()        # before the connection can serve another thread
                resp.release_conn()
            return _Answer(resp.status, data, resp.headers)
        except (NewConnectionError, ConnectTimeoutError) as e:
            raise _transport_error(f"{shown}: cannot connect ({_describe(e)})",
                                   timeout=not isinstance(e, NewConnectionError),
                                   cls=_ConnectFailed) from None
        except (ReadTimeoutError, Urllib3Timeout, TimeoutError) as e:
            raise _transport_error(f"{shown}: timed out ({_describe(e)}); the outcome is unknown",
                                   timeout=True) from None
        except SSLError as e:
            if "CERTIFICATE_VERIFY_FAILED" in str(e) or "hostname" in str(e).lower():
                raise certificate_refused(shown, _describe(e), self.cfg) from None
            raise _transport_error(f"{shown}: TLS error ({_describe(e)})") from None
        except (HTTPError, OSError) as e:
            raise _transport_error(f"{shown}: connection failed ({_describe(e)}); the outcome "
                                   "is unknown", timeout=False) from None

    # -- which hosts get credentials ---------------------------------------------------------------
    def _trust(self, hp: HostPort) -> None:
        with self._lock:
            self._trusted.add(HostPort(hp.host.lower(), hp.port))

    def _is_trusted(self, url: str) -> bool:
        hp = url_host(url)
        with self._lock:
            return hp in self._trusted

    def _warn_untrusted(self, hp: HostPort) -> None:
        with self._lock:
            if hp in self._warned_hosts:
                return
            self._warned_hosts.add(hp)
        log.warning("Doris named %s, a host that is neither a configured FE/BE nor one an FE "
                    "pointed sinker to; asking it without credentials. If it is a BE of the "
                    "cluster, list it in doris.be_hosts.", hp.netloc)

    # -- BE discovery ---------------------------------------------------------------------------
    def _discovered_backends(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            if now < self._discovered_until:
                return list(self._discovered)
        try:
            bes = self.backends()
        except Exception as e:  # noqa: BLE001 - any failure means "use the FE path for now"
            log.warning("could not discover Doris BEs (%s); loading through the FE", e)
            bes = []
        with self._lock:
            self._discovered = bes
            self._discovered_until = now + (BACKENDS_TTL_S if bes else DISCOVERY_RETRY_S)
        return list(bes)

    def _forget_backends(self) -> None:
        with self._lock:
            self._discovered_until = 0.0
