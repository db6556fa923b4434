"""``sinker status`` and ``sinker top``: what a running sinker is doing, read from its /status page.

``fetch`` reads the page of a running instance (or of the parent of ``run --workers N``, which
adds a row per worker); ``render`` turns the document into rich renderables without printing
anything, so sinker.py prints it once (status) or keeps it on screen refreshed (top).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from ..errors import StatusUnavailable

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback: never a proxy


def default_url(cfg) -> str:
    """The status URL of the instance a config describes (its server.listen); a wildcard
    address is reached on loopback."""
    address = cfg.server.address
    if address is None:
        raise StatusUnavailable('server.listen is "" in this config, so the instance serves no '
                                "status page: pass --url, or set server.listen and restart it")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{address.port}"


def fetch(url: str, timeout_s: float = 5.0) -> dict:
    """The /status document of the instance at ``url``."""
    page = url.rstrip("/") + "/status"
    try:
        with OPENER.open(page, timeout=timeout_s) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise StatusUnavailable(f"{page} answered HTTP {e.code}: is this a sinker of this version "
                                "(older ones have no /status page)?") from None
    except (OSError, ValueError) as e:
        raise StatusUnavailable(f"cannot read {page}: {e}; is sinker running there? (`--url`, "
                                "or the config's server.listen)") from None


def _by(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


def _num(v) -> str:
    return "-" if v is None else f"{v:,}"


def render(doc: dict, url: str):
    """The document as a rich Group: the state line and its reasons, partitions, tables,
    workers (under ``run --workers N``) and the last error."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    colour = {"ready": "green", "not ready": "yellow", "failed": "red"}.get(doc["state"], "white")
    head = Text.assemble(("sinker ", "bold"), (str(doc.get("table") or ""), "bold"), f"  {url}  ",
                         (doc["state"].upper(), f"bold {colour}"),
                         f"  phase {doc.get('phase')}  partitions {_num(doc.get('assigned'))}"
                         f"  lag {_num(doc.get('lag'))}")
    parts = [head]
    for reason in doc.get("reasons", []):
        parts.append(Text(f"  why: {reason}", style=colour))
    totals = doc.get("totals", {})
    parts.append(Text(
        f"consumed {_num(totals.get('consumed'))}  loaded {_num(totals.get('loaded'))}  dead "
        f"letters {_num(totals.get('dead_lettered'))}  pending {_num(totals.get('pending'))}  "
        f"batches waiting for their cut to be recorded {_num(doc.get('batches_waiting_for_cut'))}"
        f"  batches not confirmed {_num(doc.get('batches_pending'))}"))

    t = Table(title="partitions", title_justify="left", expand=False)
    for col in ("topic", "partition", "committed", "end", "lag", "consumed"):
        t.add_column(col, justify="left" if col == "topic" else "right")
    for p in doc.get("partitions", []):
        t.add_row(p["topic"], str(p["partition"]), _num(p["committed"]), _num(p["end"]),
                  _num(p["lag"]), _num(p["consumed"]))
    parts.append(t)

    t = Table(title="tables", title_justify="left")
    for col in ("table", "rows loaded", "loads", "retries", "dead letters"):
        t.add_column(col)
    for name, row in doc.get("tables", {}).items():
        t.add_row(name, _num(row["rows_loaded"]), _by(row["loads"]), _by(row["retries"]),
                  _by(row["dead_letters"]))
    parts.append(t)

    if doc.get("workers"):
        t = Table(title="workers", title_justify="left")
        for col in ("worker", "state", "partitions", "why"):
            t.add_column(col)
        for w in doc["workers"]:
            t.add_row(str(w["index"]), w["state"], _num(w.get("assigned")), "; ".join(w["reasons"]))
        parts.append(t)

    last = doc.get("last_error")
    parts.append(Text(f"last error ({last['age_s']:.0f}s ago): {last['message']}", style="red")
                 if last else Text("last error: none"))
    return Group(*parts)
