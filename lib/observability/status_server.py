"""A small HTTP server for operators: /metrics, /health, /ready and /debug/*.

It runs on its own daemon thread with the standard library's ThreadingHTTPServer, so a slow
scrape never blocks the pipeline and nothing extra needs installing. It binds to 127.0.0.1 unless
``server.listen`` names another host. The debug pages show thread stacks and the (redacted)
config, so they are off unless ``server.debug`` is true, and with ``server.debug_token`` (env
SINKER_STATUS_TOKEN) they answer only a request that carries ``Authorization: Bearer <token>``.
"""
from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder

from ..errors import ConfigError

log = logging.getLogger("sinker.status")

INDEX = """sinker status
  /metrics        Prometheus metrics
  /health         liveness: 200 ok, 503 when a thread died or the pipeline failed
  /ready          readiness: 200 when loading normally, 503 with the reasons otherwise
  /status         one JSON page for `sinker status` and `sinker top`: state and why, partitions,
                  loads, retries and dead letters per table, the last error
  /debug/threads  stack of every thread{debug}
  /debug/config   effective configuration (secrets redacted){debug}
"""
DEBUG_STATE = {"off": "  [off: set server.debug: true]",
               "token": "  [needs Authorization: Bearer $SINKER_STATUS_TOKEN]", "open": ""}
TEXT = "text/plain; charset=utf-8"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _V6Server(_Server):
    address_family = socket.AF_INET6


def thread_dump() -> str:
    """Every thread's name and current stack, the first thing to read when sinker seems stuck."""
    names = {t.ident: t for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        t = names.get(ident)
        name = t.name if t else "?"
        flags = " daemon" if t is not None and t.daemon else ""
        out.append(f"--- thread {name} (id {ident}{flags})\n")
        out.extend(traceback.format_stack(frame))
        out.append("\n")
    return "".join(out)


class StatusServer:
    """Serves the status endpoints of one pipeline; ``port`` 0 picks a free one."""

    def __init__(self, address, registry, health, config_fn, ready_stall_s: float = 120.0,
                 debug: bool = False, debug_token: str | None = None, status_fn=None):
        self.registry = registry
        self.status_fn = status_fn      # () -> dict, the /status document
        self.health = health
        self.config_fn = config_fn
        self.ready_stall_s = ready_stall_s
        self.debug = debug
        self._token = debug_token or None
        state = "off" if not debug else "token" if self._token else "open"
        self.index = INDEX.format(debug=DEBUG_STATE[state])
        self._host, self._port = address     # a config.HostPort
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._server.server_address[0] if self._server else self._host

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    def start(self) -> None:
        cls = _V6Server if ":" in self._host else _Server
        try:
            self._server = cls((self._host, self._port), _handler(self))
        except OSError as e:
            raise ConfigError(f"cannot listen on {self._host}:{self._port} for /metrics and /health: {e}; "
                          "set server.listen to a free port (port 0 picks one) or to \"\" to disable") from e
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="status-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None

    # -- pages (each returns status, content type, body bytes) ----------------------------------
    def page(self, path: str, accept: str | None, authorization: str | None = None):
        if path.startswith("/debug/"):
            refused = self._debug_refusal(authorization)
            if refused is not None:
                return refused
        if path == "/metrics":
            encoder, ctype = choose_encoder(accept or "")
            return 200, ctype, encoder(self.registry)
        if path == "/health":
            ok, detail = self.health.liveness()
            return _json_status(ok, detail)
        if path == "/ready":
            ok, detail = self.health.readiness(self.ready_stall_s)
            return _json_status(ok, detail)
        if path == "/debug/threads":
            return 200, TEXT, thread_dump().encode()
        if path == "/debug/config":
            return 200, "application/json", _to_json(self.config_fn())
        if path == "/status" and self.status_fn is not None:
            return 200, "application/json", _to_json(self.status_fn())
        if path in ("/", ""):
            return 200, TEXT, self.index.encode()
        return 404, TEXT, f"not found: {path}\n\n{self.index}".encode()

    def _debug_refusal(self, authorization: str | None):
        """None when /debug/* may be served to this request, else the answer that refuses it."""
        if not self.debug:
            return 404, TEXT, (b"the /debug pages are off: set server.debug: true to serve them "
                               b"(and env SINKER_STATUS_TOKEN to require a token)\n")
        if self._token is None:
            return None
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              self._token.encode()):
            return None
        return 401, TEXT, b"the /debug pages need the header Authorization: Bearer <token> " \
                          b"(the value of SINKER_STATUS_TOKEN)\n"


def metric_samples(registry) -> list[tuple[str, dict, float]]:
    return [(s.name, s.labels, s.value) for family in registry.collect()
            if family.name.startswith("sinker_") for s in family.samples]


def status_document(samples, liveness: tuple[bool, dict], readiness: tuple[bool, dict],
                    extra: dict | None = None) -> dict:
    """The /status page, pure: metric samples ``(name, labels, value)`` and the two health
    answers in, one document out (what `sinker status` and `sinker top` show)."""
    alive, live = liveness
    ready, detail = readiness
    parts: dict[tuple[str, str], dict] = {}
    tables: dict[str, dict] = {}
    totals = {"consumed": 0, "loaded": 0, "dead_lettered": 0, "pending": 0}
    per_partition = {"sinker_committed_offset": "committed", "sinker_partition_end_offset": "end",
                     "sinker_consumer_lag": "lag", "sinker_messages_consumed_total": "consumed"}
    per_table = {"sinker_loads_total": ("loads", "outcome"),
                 "sinker_load_retries_total": ("retries", "reason"),
                 "sinker_dead_letter_reasons_total": ("dead_letters", "category")}
    scalars = {"sinker_messages_consumed_total": "consumed", "sinker_rows_loaded_total": "loaded",
               "sinker_dead_letters_total": "dead_lettered", "sinker_messages_pending": "pending"}
    for name, labels, value in samples:
        if name in scalars:
            totals[scalars[name]] += int(value)
        if name in per_partition and "partition" in labels:
            key = (labels["topic"], labels["partition"])
            row = parts.setdefault(key, {"topic": key[0], "partition": int(key[1])})
            row[per_partition[name]] = int(value)
        elif name in per_table:
            field, label = per_table[name]
            t = tables.setdefault(labels["table"], {})
            by = t.setdefault(field, {})
            by[labels[label]] = by.get(labels[label], 0) + int(value)
        elif name == "sinker_doris_loaded_rows_total":
            t = tables.setdefault(labels["table"], {})
            t["rows_loaded"] = t.get("rows_loaded", 0) + int(value)
    for row in parts.values():
        for k in ("committed", "end", "lag", "consumed"):
            row.setdefault(k, None)
    for t in tables.values():
        for k in ("loads", "retries", "dead_letters"):
            t.setdefault(k, {})
        t.setdefault("rows_loaded", 0)
    reasons = list(live.get("reasons", [])) + [r for r in detail.get("reasons", [])
                                               if r not in live.get("reasons", [])]
    doc = {
        "state": "failed" if not alive else "ready" if ready else "not ready",
        "phase": detail.get("phase", live.get("phase")),
        "alive": alive, "ready": ready, "reasons": reasons,
        "assigned": detail.get("assigned"),
        "lag": sum(r["lag"] or 0 for r in parts.values()),
        "partitions": [parts[k] for k in sorted(parts, key=lambda k: (k[0], int(k[1])))],
        "tables": dict(sorted(tables.items())),
        "totals": totals,
        "doris": detail.get("doris"),
    }
    doc.update(extra or {})
    return doc


def _json_status(ok: bool, detail: dict):
    body = {"status": "ok" if ok else "fail", **detail}
    return (200 if ok else 503), "application/json", _to_json(body)


def _to_json(obj) -> bytes:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def _handler(server: StatusServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sinker"

        def do_GET(self):  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            try:
                status, ctype, body = server.page(path, self.headers.get("Accept"),
                                                  self.headers.get("Authorization"))
            except Exception as e:  # noqa: BLE001 - a broken page must not kill the server
                log.exception("status page %s failed", path)
                status, ctype, body = 500, TEXT, f"error: {e}\n".encode()
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="sinker debug"')
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            log.debug("status %s " + fmt, self.address_string(), *args)

    return Handler
