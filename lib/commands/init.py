"""``sinker init``: a commented starting config for one table, written from its schema.

Pure: the caller reads the columns (``lib/schema.py``) and writes the file. The text keeps every
column as a commented ``mapping.columns`` entry beside how a message fills it, so the operator
edits a file that already names the table's columns; ``config.py`` must load it as written.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from .. import __version__
from ..config import MappingConfig, default_group_id
from .describe import describe

_PLAIN = re.compile(r"^[A-Za-z0-9_.:\[\]-]+$")


def _scalar(v: str) -> str:
    """A YAML scalar for a host, topic or name: bare when it is plain, else double-quoted."""
    if _PLAIN.match(v) and v.lower() not in ("yes", "no", "true", "false", "null", "on", "off", "~"):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flow(items) -> str:
    return "[" + ", ".join(_scalar(x) for x in items) + "]"


def render_config(columns, *, database: str, table: str, brokers, topic: str, fe_hosts,
                  http_port: int, query_port: int, user: str, brokers_given: bool) -> str:
    """The YAML text of a config loading ``topic`` into ``database.table``."""
    rows, warnings = describe(columns, MappingConfig())
    width = max([len(r.name) for r in rows] + [8])
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    brokers_note = ("bootstrap brokers, host:port (required; or env SINKER_KAFKA_BROKERS)"
                    if brokers_given else
                    "CHANGE ME: your bootstrap brokers (required; or env SINKER_KAFKA_BROKERS)")
    out = [
        f"# sinker config for {database}.{table}, written by `sinker init` (sinker {__version__}) "
        f"on {now}",
        "# from the table's schema. Every key is explained in configs/config.yaml of the sinker "
        "repository.",
        "# Next: edit what says CHANGE ME, then `sinker check -c THIS_FILE`, then "
        "`sinker run -c THIS_FILE`.",
        "",
        "kafka:",
        f"  brokers: {_flow(brokers)}  # {brokers_note}",
        f"  topics: [{_scalar(topic)}]  # topics to read (required); all go into doris.table",
        f"  # group_id: {default_group_id(database, table)}  # unset: sinker.<database>.<table>; "
        "the same for every replica",
        "  start_from: earliest             # earliest | latest: where a group with no commits starts",
        "",
        "doris:",
        f"  fe_hosts: {_flow(fe_hosts)}  # FEs, tried in order",
        f"  http_port: {http_port}  # FE HTTP port (Stream Load)",
        f"  query_port: {query_port}  # FE MySQL-protocol port (DESCRIBE)",
        f"  user: {_scalar(user)}  # needs LOAD and SELECT on the table; or env SINKER_DORIS_USER",
        '  password: ""                     # leave empty here; set env SINKER_DORIS_PASSWORD',
        f"  database: {_scalar(database)}  # target database (required)",
        f"  table: {_scalar(table)}  # target table (required)",
        "  timezone: UTC                    # zoned times are shifted to this zone; set your cluster's",
        "",
        "mapping:",
        "  format: csv                      # csv (sinker converts each field) | json (passed to Doris)",
        "  # Each column takes the top-level JSON field of its name. To fill one from elsewhere,",
        "  # uncomment `columns:` and its line and write a path (customer.id) or @kafka.<topic|",
        "  # partition|offset|timestamp|key>. Beside each: its type, and what a message without it loads.",
        "  # columns:",
    ]
    for r in rows:
        null = "NULL" if r.nullable else "NOT NULL"
        key = ", key" if r.key else ""
        out.append(f"  #   {r.name + ':':<{width + 1}} {_scalar(r.name):<{width}}  "
                   f"# {r.type} {null}{key}; missing: {r.when_missing}")
    if warnings:
        out.append("  # Warnings from `sinker schema describe`:")
        out += [f"  #   {w}" for w in warnings]
    out += [
        "",
        "dead_letter:",
        "  type: file                       # file | kafka: where messages that cannot be loaded go",
        f"  path: {_scalar(f'dead-letters-{database}.{table}.jsonl')}  # JSON lines, fsynced "
        "before offsets are committed",
        "",
        "server:",
        "  listen: 127.0.0.1:9108           # /metrics /health /ready; 0.0.0.0:9108 in a container",
        "",
        "logging:",
        "  level: info                      # debug | info | warning | error | critical",
        "  format: auto                     # auto (console on a terminal, else json) | console | json",
        "",
    ]
    return "\n".join(_align(line) for line in out)


def _align(line: str) -> str:
    """Start the comment of a ``key: value  # comment`` line at one column, as configs/ do."""
    head, sep, comment = line.partition(" # ")
    if not sep or not line.startswith("  ") or line.lstrip().startswith("#"):
        return line
    return f"{head.rstrip():<34} # {comment}"
