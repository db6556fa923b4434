"""Configuration: one YAML file plus environment overrides, loaded once into frozen dataclasses.

Validation happens here with no I/O other than reading the file and checking that the TLS files
it names are readable, so a wrong key or value fails before anything connects, and every problem
is reported at once, one per line.

Precedence, lowest first: dataclass defaults < YAML file < environment < ``overrides`` (CLI flags).

Environment variables (so secrets need not sit in the file):
  SINKER_DORIS_USER             doris.user
  SINKER_DORIS_PASSWORD         doris.password (an empty value means an empty password)
  SINKER_KAFKA_BROKERS          kafka.brokers, comma separated "host:port,host:port"
  SINKER_KAFKA_SASL_USERNAME    kafka.sasl_username
  SINKER_KAFKA_SASL_PASSWORD    kafka.sasl_password
  SINKER_KAFKA_SSL_KEY_PASSWORD kafka.ssl_key_password
  SINKER_STATUS_TOKEN           server.debug_token (bearer token /debug/* then requires)

``load_config`` also reports, as warnings for sinker.py to show, what is allowed but unsafe: a
config file that holds a password and is readable by group or others.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import ipaddress
import os
import re
import stat
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import yaml

from .doris_types import KNOWN_BASES, parse_type
from .errors import ConfigError


class HostPort(NamedTuple):
    """A parsed "host:port" (IPv6 without brackets in ``host``)."""
    host: str
    port: int

    @property
    def netloc(self) -> str:
        """The form a URL or a log line takes: ``host:port`` or ``[v6]:port``."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.netloc


def host_port(entry: str, default_port: int) -> HostPort:
    """'host', 'host:port', '[v6]' or '[v6]:port' (already validated by _check)."""
    entry = entry.strip()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return HostPort(host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit()
                        else default_port)
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return HostPort(host, int(port) if port.isdigit() else default_port)
    return HostPort(entry, default_port)


@dataclass(frozen=True)
class KafkaConfig:
    brokers: tuple[str, ...] = ()           # required (or env SINKER_KAFKA_BROKERS): no guessed default
    client: str = "kafka-python"            # kafka-python | confluent-kafka (librdkafka: ~7x less CPU)
    topics: tuple[str, ...] = ()
    topics_pattern: str | None = None       # also every topic whose whole name this regex matches
    group_id: str | None = None             # unset: "sinker.<database>.<table>", one group per target
    client_id: str = "sinker"
    start_from: str = "earliest"            # earliest | latest: where a new group starts reading
    max_poll_records: int = 2000
    fetch_max_bytes: int = 52_428_800
    max_partition_fetch_bytes: int | None = None   # unset: partition_fetch_bytes (per client)
    session_timeout_ms: int = 30_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    metadata_max_age_ms: int = 5_000          # how soon partitions added, or topics matching topics_pattern, are read
    security_protocol: str = "PLAINTEXT"    # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None       # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None        # env SINKER_KAFKA_SASL_PASSWORD
    ssl_cafile: str | None = None           # CAs that signed the brokers' certificates (default: the system's)
    ssl_certfile: str | None = None         # client certificate (PEM), for brokers that require mTLS
    ssl_keyfile: str | None = None          # its private key (PEM), maybe encrypted
    ssl_key_password: str | None = None     # env SINKER_KAFKA_SSL_KEY_PASSWORD
    ssl_check_hostname: bool = True         # the broker's certificate must name the host we dialled

    @property
    def partition_fetch_bytes(self) -> int:
        """max_partition_fetch_bytes, or the measured best of each client (docs/performance.md):
        kafka-python 4 MB (it read small messages 15-25% slower with 1-2 MB fetches, more of its
        Python per fetch, and held 40-90 MB more with 8 MB ones at the same speed);
        confluent-kafka 1 MB, librdkafka's own default (it fetches ahead on its own threads, and
        8 MB fetches held 40-60 MB more at no gain in speed)."""
        if self.max_partition_fetch_bytes is not None:
            return self.max_partition_fetch_bytes
        return 1_048_576 if self.client == "confluent-kafka" else 4_194_304


@dataclass(frozen=True)
class DorisConfig:
    fe_hosts: tuple[str, ...] = ("127.0.0.1",)   # tried in order; failover on connection errors
    http_port: int = 8030
    query_port: int = 9030
    user: str = "root"
    password: str = ""                          # env SINKER_DORIS_PASSWORD
    database: str = ""
    table: str = ""
    be_hosts: tuple[str, ...] = ()              # "host:port"; loads go straight to BEs when set
    discover_backends: bool = False             # ask the FE for live BEs (/api/backends)
    https: bool = False                         # FE, BE and the query port over TLS, verified
    ca_file: str | None = None                  # CAs that signed the Doris certificates (default: the system's)
    connect_timeout_s: float = 5.0
    load_timeout_s: float = 600.0               # Doris 'timeout' header and HTTP read timeout
    timezone: str = "UTC"
    group_commit: str = "off"                   # off | sync_mode | async_mode (at_least_once only: no label)

    @cached_property
    def fe_addresses(self) -> tuple[HostPort, ...]:
        return tuple(host_port(h, self.http_port) for h in self.fe_hosts)

    @cached_property
    def be_addresses(self) -> tuple[HostPort, ...]:
        return tuple(host_port(h, DEFAULT_BE_PORT) for h in self.be_hosts)


@dataclass(frozen=True)
class ColumnSource:
    """How one Doris column is filled: a JSON field, a path into nested objects, or Kafka metadata."""
    column: str
    path: tuple[str, ...] = ()        # ("user", "id") for user.id; empty when kafka is set
    kafka: str | None = None          # topic | partition | offset | timestamp | key


@dataclass(frozen=True)
class FieldEquals:
    """A message whose field at ``path`` equals ``equals``: ``mapping.delete_when`` (it deletes
    its key) and a route's ``where`` (it goes to that route's table)."""
    path: tuple[str, ...]
    equals: str | int | bool


@dataclass(frozen=True)
class SchemaColumn:
    """A column listed in the config instead of read from Doris."""
    name: str
    type: str                          # Doris type string, e.g. "varchar(32)", "decimal(10,2)"
    nullable: bool = True
    default: str | None = None


@dataclass(frozen=True)
class MappingConfig:
    format: str = "csv"                        # csv | json
    schema: tuple[SchemaColumn, ...] = ()      # empty: read from Doris (DESCRIBE)
    columns: tuple[ColumnSource, ...] = ()     # explicit sources; others map by same-name field
    missing: str = "default"                   # default (column default or NULL) | zero (type's zero value)
    strict_mode: bool = True
    max_filter_ratio: float = 0.0
    schema_refresh_s: float = 60.0             # how often to look for added columns
    bool_as_int: bool = False                  # csv: load true/false into number columns as 1/0
    envelope: str = "none"                     # none | debezium (op/before/after, deletes by key)
    delete_when: FieldEquals | None = None      # {field: op, equals: D}: that message deletes its key
    sequence_from: ColumnSource | None = None  # source.lsn | @kafka.offset | a field: the sequence column's value
    sequence_column: str | None = None         # unset: the table's function_column.sequence_col


@dataclass(frozen=True)
class BatchConfig:
    max_rows: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_interval_s: float = 5.0
    queue_size: int = 16                        # poll results waiting for the batcher
    max_bytes_in_flight: int = 256 * 1024 * 1024   # held by open, waiting and loading batches
    min_load_interval_s: float = 0.0            # per table, between load starts (0: no spacing)


@dataclass(frozen=True)
class WriterConfig:
    workers: int = 2
    max_retries: int = 10                       # then stop without committing, exit non-zero
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    busy_backoff_s: float = 15.0                # -235 / too many running txns


@dataclass(frozen=True)
class DeadLetterConfig:
    type: str = "file"                          # file | kafka
    path: str = "dead-letters.jsonl"
    topic: str | None = None
    log_per_minute: int = 10


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:9108"              # "" disables /metrics, /health, /ready, /debug
    ready_stall_s: float = 120.0
    debug: bool = False                         # serve /debug/threads and /debug/config
    debug_token: str | None = None              # env SINKER_STATUS_TOKEN: /debug/* wants "Bearer <token>"

    @cached_property
    def address(self) -> HostPort | None:
        return host_port(self.listen, 0) if self.listen else None


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"                        # auto (console on a terminal, else json) | console | json
    output: str = "stdout"                      # stdout | file | both
    file: str | None = None
    max_bytes: int = 100 * 1024 * 1024
    backups: int = 5
    sample_per_minute: int = 20                 # identical errors logged per minute before suppression
    progress_s: float = 30.0                    # a progress line (rows/s, loads, lag) this often; 0 = off


@dataclass(frozen=True)
class Route:
    """One entry of ``routes:`` (or the single-table config, which is one route): which messages
    (its topics, then ``where`` or ``table_from``) go to which table, mapped and batched how."""
    topics: tuple[str, ...]
    database: str
    tables: tuple[str, ...]                    # one table; with table_from, the allow-list
    mapping: MappingConfig
    batch: BatchConfig
    delivery: str
    group_commit: str
    topics_pattern: str | None = None
    where: FieldEquals | None = None           # only messages whose field equals the value
    table_from: tuple[str, ...] = ()           # the field path that names the table
    on_table_error: str = "stop"               # stop | dead_letter: a load its table refuses


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    doris: DorisConfig = field(default_factory=DorisConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    writer: WriterConfig = field(default_factory=WriterConfig)
    dead_letter: DeadLetterConfig = field(default_factory=DeadLetterConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    shutdown_timeout_s: float = 30.0
    delivery: str = "exactly_once"              # exactly_once | at_least_once
    routes: tuple[Route, ...] = ()              # derived from the sections above when not given
    unmatched: str = "dead_letter"              # dead_letter (reason no_route) | skip (counted)

    @property
    def exactly_once(self) -> bool:
        """Some table is loaded exactly once: the process records its batches' cuts in Kafka."""
        if self.routes:
            return any(r.delivery == "exactly_once" for r in self.routes)
        return self.delivery == "exactly_once"

    @property
    def tables(self) -> tuple[str, ...]:
        """Every target table, "database.table", in route order."""
        out = []
        for r in self.routes:
            out.extend(f"{r.database}.{t}" for t in r.tables if f"{r.database}.{t}" not in out)
        return tuple(out)


def target_config(cfg: Config, route: Route, table: str) -> Config:
    """The whole config as one table's load sees it: that route's database, table, mapping,
    batch and delivery. Every per-table piece (schema, mapper, check, describe) takes one."""
    return dataclasses.replace(
        cfg, kafka=dataclasses.replace(cfg.kafka, topics=route.topics,
                                       topics_pattern=route.topics_pattern),
        doris=dataclasses.replace(cfg.doris, database=route.database, table=table,
                                  group_commit=route.group_commit),
        mapping=route.mapping, batch=route.batch, delivery=route.delivery, routes=(route,))


def target_configs(cfg: Config) -> list[Config]:
    """One config per target table, in route order (a table_from route: one per allowed table)."""
    return [target_config(cfg, r, t) for r in cfg.routes for t in r.tables]


def one_table(cfg: Config, name: str | None, what: str) -> Config:
    """The config of the table a command works on (``--table DB.TABLE``): one of the routes'
    tables, the only one when ``name`` is None, or — for a config of one table and one route
    without a field rule — any table, loaded with that config's mapping."""
    targets = target_configs(cfg)
    if name is None:
        if len(targets) == 1:
            return targets[0]
        raise ConfigError(f"{what} works on one table, and the config's routes load "
                          f"{len(targets)} ({', '.join(cfg.tables)}): pick one with --table DB.TABLE")
    for t in targets:
        if f"{t.doris.database}.{t.doris.table}" == name:
            return t
    db, _, table = name.partition(".")
    r = cfg.routes[0]
    if len(cfg.routes) == 1 and r.where is None and not r.table_from \
            and _IDENT.match(db) and _IDENT.match(table):
        other = target_config(cfg, dataclasses.replace(r, database=db, tables=(table,)), table)
        if cfg.kafka.group_id == default_group_id(r.database, r.tables[0]):    # derived, not set
            other = dataclasses.replace(other, kafka=dataclasses.replace(
                other.kafka, group_id=default_group_id(db, table)))
        return other
    raise ConfigError(f"--table {name}: expected DB.TABLE, one of the config's tables "
                      f"({', '.join(cfg.tables)})")


# -- loading --------------------------------------------------------------------------------------
SECTIONS: dict[str, type] = {
    "kafka": KafkaConfig, "doris": DorisConfig, "mapping": MappingConfig, "batch": BatchConfig,
    "writer": WriterConfig, "dead_letter": DeadLetterConfig, "server": ServerConfig,
    "logging": LoggingConfig,
}
TOP_LEVEL: dict[str, type] = {"shutdown_timeout_s": float, "delivery": str, "unmatched": str}
ROUTE_KEYS = ("topics", "topics_pattern", "where", "table_from", "database", "table", "tables",
              "mapping", "batch", "delivery", "group_commit", "on_table_error")
ON_TABLE_ERROR = ("stop", "dead_letter")
UNMATCHED = ("dead_letter", "skip")
_ROUTE_NAMES = {"doris.group_commit": "group_commit", "doris.table": "table",
                "doris.database": "database", "kafka.topics": "topics",
                "kafka.topics_pattern": "topics_pattern"}

ENV_VARS: dict[str, tuple[str, str]] = {
    "SINKER_DORIS_USER": ("doris", "user"),
    "SINKER_DORIS_PASSWORD": ("doris", "password"),
    "SINKER_KAFKA_BROKERS": ("kafka", "brokers"),
    "SINKER_KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "SINKER_KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "SINKER_KAFKA_SSL_KEY_PASSWORD": ("kafka", "ssl_key_password"),
    "SINKER_STATUS_TOKEN": ("server", "debug_token"),
}
SECRETS = (("doris", "password"), ("kafka", "sasl_password"), ("kafka", "ssl_key_password"),
           ("server", "debug_token"))

DEFAULT_BE_PORT = 8040                          # the BE webserver's port on a default install
DELIVERIES = ("exactly_once", "at_least_once")
KAFKA_FIELDS = ("topic", "partition", "offset", "timestamp", "key")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
KAFKA_CLIENTS = ("kafka-python", "confluent-kafka")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# values compared case-insensitively, stored in this case
_UPPER = {"kafka.security_protocol", "kafka.sasl_mechanism"}
_LOWER = {"delivery", "unmatched", "kafka.client", "kafka.start_from", "mapping.format", "mapping.missing",
          "dead_letter.type", "logging.level", "logging.format", "logging.output", "mapping.envelope",
          "doris.group_commit"}
ENVELOPES = ("none", "debezium")
GROUP_COMMIT_MODES = ("off", "sync_mode", "async_mode")

_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5})$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_IDENT = re.compile(r"^[^\W\d][\w-]*$")


def load_config(path, overrides: dict | None = None, env: Mapping = os.environ,
                warnings: list[str] | None = None) -> Config:
    """Read the YAML file at ``path``, apply env and ``overrides``, validate. Raises ConfigError.
    What is valid but unsafe is appended to ``warnings`` (when given) for the caller to show."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
            mode = os.fstat(f.fileno()).st_mode
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found: pass the path of your YAML config "
                          "(see configs/config.yaml for an annotated example)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError(f"{path}:{where}: YAML syntax error: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: YAML syntax error: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections "
                          f"(kafka:, doris:, ...), got {_kind(data)}")
    try:
        cfg = config_from_dict(data, env=env, overrides=overrides)
    except ConfigError as e:
        err = ConfigError(f"{path}: {e}" if "\n" not in str(e) else f"{path}:\n{e}")
        err.problems = getattr(e, "problems", [str(e)])
        raise err from None
    if warnings is not None:
        warnings.extend(_file_warnings(path, mode, data))
        warnings.extend(_config_warnings(cfg))
    return cfg


def _file_warnings(path, mode: int, data: dict) -> list[str]:
    """A secret written in the file itself (not taken from the environment) is only as private
    as the file: say so when group or others may read it."""
    in_file = [f"{section}.{key}" for section, key in SECRETS
               if isinstance(data.get(section), dict) and data[section].get(key)]
    if not in_file or not mode & (stat.S_IRGRP | stat.S_IROTH):
        return []
    env = {target: name for name, target in ENV_VARS.items()}
    names = ", ".join(env[tuple(k.split("."))] for k in in_file)
    return [f"{path} holds {', '.join(in_file)} and is readable by group or others (mode "
            f"{stat.S_IMODE(mode):04o}): run chmod 600 {path}, or remove the secret from the file "
            f"and set it in the environment ({names})"]


def _config_warnings(cfg: Config) -> list[str]:
    s = cfg.server
    out = []
    if s.debug and s.address is not None and not s.debug_token and not _loopback(s.address.host):
        out.append(f"server.debug is on and server.listen {s.listen} is reachable from other "
                   "hosts: anyone who can reach it reads every thread's stack and the config; "
                   "set SINKER_STATUS_TOKEN to require a token, or listen on 127.0.0.1")
    return out


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def config_from_dict(d: dict, env: Mapping | None = None, overrides: dict | None = None) -> Config:
    """Build a validated Config from plain data (as ``yaml.safe_load`` returns it)."""
    data = copy.deepcopy(d) if d else {}
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(f"the configuration must be a mapping of sections, got {_kind(data)}")
    if env:
        _apply_env(data, env)
    for key, value in (overrides or {}).items():
        _apply_override(data, key, value, problems)
    routes = data.pop("routes", None)
    cfg = _build(data, problems, "routes" if routes is not None else "single")
    if not problems:
        if routes is None:
            cfg = dataclasses.replace(cfg, routes=(_only_route(cfg),))
        else:
            cfg = _with_routes(cfg, _routes(routes, data, problems), problems)
    if problems:
        err = ConfigError("\n".join(problems))
        err.problems = problems
        raise err
    return _derive_group_id(cfg)


def _build(data: dict, problems: list[str], mode: str) -> Config:
    """``mode``: single (one table), routes (the sections under a routes: list, whose routes
    name topics and tables), route (one route's own config: topics may be a pattern instead)."""
    bad: set[str] = set()
    kwargs = {}
    for key, value in data.items():
        if key in SECTIONS:
            section = _build_section(key, SECTIONS[key], value, problems, bad)
            if section is not None:
                kwargs[key] = section
        elif key in TOP_LEVEL:
            ok, v = _coerce(key, value, TOP_LEVEL[key], problems)
            if ok:
                kwargs[key] = v.lower() if key in _LOWER else v
            else:
                bad.add(key)
        else:
            problems.append(_unknown(key, key, [*SECTIONS, *sorted(TOP_LEVEL), "routes"]))
    cfg = Config(**kwargs)
    _check(cfg, bad, problems, mode)
    return cfg


def _only_route(cfg: Config) -> Route:
    return Route(topics=cfg.kafka.topics, database=cfg.doris.database, tables=(cfg.doris.table,),
                 mapping=cfg.mapping, batch=cfg.batch, delivery=cfg.delivery,
                 group_commit=cfg.doris.group_commit, topics_pattern=cfg.kafka.topics_pattern)


def _routes(value, data: dict, problems: list[str]) -> tuple[Route, ...]:
    if not isinstance(value, list) or not value:
        problems.append("routes: expected a list of routes, e.g. [{topics: [orders], table: "
                        f"orders}}, {{topics: [users], table: users}}], got {_kind(value)}")
        return ()
    out = []
    for i, item in enumerate(value):
        route = _route(f"routes[{i}]", item, data, problems)
        if route is not None:
            out.append(route)
    return tuple(out)


def _route(where: str, item, data: dict, problems: list[str]) -> Route | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: expected a mapping (topics, table, ...), got {_kind(item)}")
        return None
    before = len(problems)
    for k in item:
        if k not in ROUTE_KEYS:
            problems.append(_unknown(f"{where}.{k}", k, ROUTE_KEYS))
    ok, topics = _coerce(f"{where}.topics", item.get("topics"), tuple[str, ...], problems)
    pattern = item.get("topics_pattern")
    if pattern is not None and not isinstance(pattern, str):
        problems.append(f"{where}.topics_pattern: expected a regular expression string, got "
                        f"{_kind(pattern)}")
    if ok and not topics and pattern is None:
        problems.append(f"{where}: name its topics (topics: [orders]) or topics_pattern")
    for t in topics or ():
        if not _TOPIC.match(t):
            problems.append(f"{where}.topics: {t!r} is not a Kafka topic name (letters, digits, "
                            "'.', '_', '-')")
    rule = None
    if item.get("where") is not None:
        _ok, rule = _field_equals(f"{where}.where", item["where"], problems, "{field: type, equals: order}")
    table_from = ()
    if item.get("table_from") is not None:
        source = _path_source(f"{where}.table_from", "", item["table_from"], problems)
        table_from = source.path if source is not None else ()
    table, tables = item.get("table"), item.get("tables")
    database = item.get("database") if item.get("database") is not None else \
        (data.get("doris") or {}).get("database", "")
    if isinstance(table, str) and table.count(".") == 1:
        database, table = table.split(".")
    if item.get("table_from") is not None:
        ok, tables = _coerce(f"{where}.tables", tables, tuple[str, ...], problems)
        if ok and not tables:
            problems.append(f"{where}.tables: required with table_from: the tables its field may "
                            "name (a message naming another one has no route)")
        if table is not None:
            problems.append(f"{where}.table: set with table_from, which names the table: remove "
                            "one")
        if rule is not None:
            problems.append(f"{where}.where: set with table_from: use one of them per route")
        for t in tables or ():
            if not _IDENT.match(t):
                problems.append(f"{where}.tables: {t!r} is not a Doris table name")
    else:
        if tables is not None:
            problems.append(f"{where}.tables: only with table_from; name one table with table")
        if not isinstance(table, str) or not table:
            problems.append(f"{where}.table: required: the Doris table to load into (table: "
                            "orders or table: shop.orders)")
        tables = (table,) if isinstance(table, str) else ()
    on_error = item.get("on_table_error", "stop")
    if on_error not in ON_TABLE_ERROR:
        problems.append(f"{where}.on_table_error: expected one of {', '.join(ON_TABLE_ERROR)}, "
                        f"got {on_error!r}")
    if len(problems) > before or not tables:
        return None
    own: list[str] = []
    cfg = _build(_route_data(where, item, data, database, tables[0], topics, pattern, own), own,
                 "route")
    problems.extend(f"{where}.{_ROUTE_NAMES.get(p.split(':')[0], p.split(':')[0])}:"
                    f"{p.split(':', 1)[1]}" for p in own)
    if own:
        return None
    return Route(topics=topics, topics_pattern=pattern, database=cfg.doris.database,
                 tables=tuple(tables), mapping=cfg.mapping, batch=cfg.batch,
                 delivery=cfg.delivery, group_commit=cfg.doris.group_commit, where=rule,
                 table_from=table_from, on_table_error=on_error)


def _route_data(where: str, item: dict, data: dict, database, table: str, topics, pattern,
                problems) -> dict:
    """The config one route's table loads with: the sections, with the route's overrides (its
    topics and pattern too, so kafka's rules on them apply per route)."""
    out = copy.deepcopy(data)
    out["kafka"] = dict(out.get("kafka") or {}, topics=list(topics or ()), topics_pattern=pattern)
    doris = dict(out.get("doris") or {}, database=database, table=table)
    if item.get("group_commit") is not None:
        doris["group_commit"] = item["group_commit"]
    out["doris"] = doris
    for name in ("mapping", "batch"):
        own = item.get(name)
        if own is None:
            continue
        if not isinstance(own, dict):
            problems.append(f"{name}: expected a mapping of keys that override the top-level "
                            f"{name}, got {_kind(own)}")
            continue
        out[name] = {**(out.get(name) or {}), **own}
    if item.get("delivery") is not None:
        out["delivery"] = item["delivery"]
    return out


def _with_routes(cfg: Config, routes: tuple[Route, ...], problems: list[str]) -> Config:
    seen: dict[str, int] = {}
    for i, r in enumerate(routes):
        for t in r.tables:
            name = f"{r.database}.{t}"
            if name in seen:
                problems.append(
                    f"routes[{i}]: table {name} is also a target of routes[{seen[name]}]: give "
                    "each table one route (list all its topics in that route), so no two batches "
                    "of one table ever share a label")
            seen.setdefault(name, i)
    for i, r in enumerate(routes):
        if r.where is None and not r.table_from:
            for j, later in enumerate(routes[i + 1:], i + 1):
                shared = sorted(set(r.topics) & set(later.topics))
                if shared:
                    problems.append(
                        f"routes[{j}]: never takes a message of {', '.join(shared)}: routes[{i}] "
                        f"takes every message of it first (routes are tried in order): move it "
                        f"before, or give routes[{i}] a where")
    if len(seen) > 1 and cfg.kafka.group_id is None:
        problems.append(
            "kafka.group_id: required with routes into more than one table (the group's "
            "committed offsets cover all of them), e.g. group_id: sinker.shop. A config moving "
            "from one table to routes keeps its offsets with that table's default group, "
            f"group_id: {default_group_id(*next(iter(seen)).split('.'))}")
    topics = tuple(dict.fromkeys(t for r in routes for t in r.topics))
    # one subscription: every route's whole-name pattern as one alternation
    bodies = [_pattern_body(r.topics_pattern) for r in routes if r.topics_pattern is not None]
    pattern = None if not bodies else bodies[0] if len(bodies) == 1 else f"({'|'.join(bodies)})"
    return dataclasses.replace(cfg, routes=routes, kafka=dataclasses.replace(
        cfg.kafka, topics=topics, topics_pattern=pattern))


def _pattern_body(pattern: str) -> str:
    body = pattern[1:] if pattern.startswith("^") else pattern
    return body[:-1] if body.endswith("$") else body


def default_group_id(database: str, table: str) -> str:
    """The group of a config without ``kafka.group_id``: one per target table, so two sinkers
    loading different tables from the same topic never share (and split) one group's offsets."""
    return f"sinker.{database}.{table}"


def _derive_group_id(cfg: Config) -> Config:
    if cfg.kafka.group_id is not None or len(cfg.tables) != 1:
        return cfg
    database, table = cfg.tables[0].split(".")
    kafka = dataclasses.replace(cfg.kafka, group_id=default_group_id(database, table))
    return dataclasses.replace(cfg, kafka=kafka)


def with_labels(cfg: Config) -> Config:
    """The config with doris.group_commit off: replay and dead-letter resend promise that a
    re-run loads nothing twice, which only labelled loads keep (group commit ignores labels)."""
    if cfg.doris.group_commit == "off" and all(r.group_commit == "off" for r in cfg.routes):
        return cfg
    return dataclasses.replace(
        cfg, doris=dataclasses.replace(cfg.doris, group_commit="off"),
        routes=tuple(dataclasses.replace(r, group_commit="off") for r in cfg.routes))


def redacted(cfg: Config) -> dict:
    """The whole config as plain data (lists, dicts, scalars), secrets replaced by "***" when set,
    and values left unset to a per-client default shown as the value in effect."""
    out = _plain(dataclasses.asdict(cfg))
    out["kafka"]["max_partition_fetch_bytes"] = cfg.kafka.partition_fetch_bytes
    for section, key in SECRETS:
        if out[section].get(key):
            out[section][key] = "***"
    return out


# -- helpers --------------------------------------------------------------------------------------
def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _apply_env(data: dict, env: Mapping) -> None:
    for name, (section, key) in ENV_VARS.items():
        if name not in env:
            continue
        value = env[name]
        if key == "brokers":
            value = [x.strip() for x in value.split(",") if x.strip()]
            if not value:
                continue
        elif not value and not key.endswith("password"):
            continue
        sec = data.get(section)
        if not isinstance(sec, dict):
            sec = {} if sec is None else sec
            if not isinstance(sec, dict):
                continue                      # reported as a type problem of the section
            data[section] = sec
        sec[key] = value


def _apply_override(data: dict, dotted: str, value, problems: list[str]) -> None:
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            problems.append(f"{'.'.join(parts[:i + 1])}: cannot apply override {dotted}: "
                            f"it is {_kind(nxt)}, not a section")
            return
        node = nxt
    node[parts[-1]] = value


def _kind(v) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, (list, tuple)):
        return "a list"
    return repr(v)


def _unknown(dotted: str, key, valid) -> str:
    close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.6)
    if close:
        return f"{dotted}: unknown key (did you mean {close[0]}?)"
    return f"{dotted}: unknown key (valid keys: {', '.join(valid)})"


def _build_section(name: str, cls: type, value, problems: list[str], bad: set[str]):
    if value is None:
        return cls()
    if not isinstance(value, dict):
        problems.append(f"{name}: expected a mapping of keys, got {_kind(value)}")
        bad.add(name)
        return None
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, v in value.items():
        dotted = f"{name}.{key}"
        if key not in hints:
            problems.append(_unknown(dotted, key, names))
            continue
        if dotted == "mapping.columns":
            ok, v = _column_sources(v, problems)
        elif dotted == "mapping.schema":
            ok, v = _schema_columns(v, problems)
        elif dotted == "mapping.delete_when":
            ok, v = _delete_when(v, problems)
        elif dotted == "mapping.sequence_from":
            ok, v = _sequence_source(v, problems)
        else:
            ok, v = _coerce(dotted, v, hints[key], problems)
            if ok and isinstance(v, str):
                v = v.upper() if dotted in _UPPER else v.lower() if dotted in _LOWER else v
                if dotted == "logging.level" and v == "warn":
                    v = "warning"
        if ok:
            kwargs[key] = v
        else:
            bad.add(dotted)
    return cls(**kwargs)


def _coerce(dotted: str, v, hint, problems: list[str]):
    """(ok, value) for ``v`` read as ``hint``; appends a problem when it does not fit."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if v is None:
            return True, None
        return _coerce(dotted, v, args[0], problems)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(v, str):
            v = [x.strip() for x in v.split(",") if x.strip()]
        if v is None:
            v = []
        if not isinstance(v, (list, tuple)):
            problems.append(f"{dotted}: expected a list, got {_kind(v)}")
            return False, None
        out = []
        for i, x in enumerate(v):
            ok, x = _coerce(f"{dotted}[{i}]", x, item, problems)
            if not ok:
                return False, None
            out.append(x)
        return True, tuple(out)
    if hint is bool:
        if isinstance(v, bool):
            return True, v
        problems.append(f"{dotted}: expected true or false, got {_kind(v)}")
        return False, None
    if hint is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return True, v
        problems.append(f"{dotted}: expected an integer, got {_kind(v)}")
        return False, None
    if hint is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return True, float(v)
        problems.append(f"{dotted}: expected a number, got {_kind(v)}")
        return False, None
    if hint is str:
        if isinstance(v, str):
            return True, v
        hint_text = " (quote it in YAML)" if isinstance(v, (int, float, bool)) else ""
        problems.append(f"{dotted}: expected a string, got {_kind(v)}{hint_text}")
        return False, None
    raise TypeError(f"config field {dotted} has an unsupported type {hint!r}")


def _parse_source(where: str, column: str, source, problems: list[str]):
    """ColumnSource for "user.name", "field" or "@kafka.partition" (or a {path|kafka} mapping)."""
    if isinstance(source, dict):
        item = dict(source, column=column)
        return _source_item(where, item, problems)
    if not isinstance(source, str) or not source.strip():
        problems.append(f"{where}: expected a field path like user.name or @kafka.partition, "
                        f"got {_kind(source)}")
        return None
    source = source.strip()
    if source.startswith("@"):
        if not source.startswith("@kafka."):
            problems.append(f"{where}: {source!r}: only @kafka.<{'|'.join(KAFKA_FIELDS)}> "
                            "starts with @")
            return None
        return _kafka_source(where, column, source[len("@kafka."):], problems)
    return _path_source(where, column, source, problems)


def _kafka_source(where: str, column: str, name, problems: list[str]):
    name = str(name).strip().lower()
    if name.startswith("@kafka."):
        name = name[len("@kafka."):]
    if name not in KAFKA_FIELDS:
        close = difflib.get_close_matches(name, KAFKA_FIELDS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"use one of {', '.join(KAFKA_FIELDS)}"
        problems.append(f"{where}: unknown Kafka field {name!r} ({hint})")
        return None
    return ColumnSource(column, (), name)


def _path_source(where: str, column: str, path, problems: list[str]):
    if isinstance(path, str):
        parts = path.split(".")
    elif isinstance(path, (list, tuple)) and all(isinstance(p, str) for p in path):
        parts = list(path)
    else:
        problems.append(f"{where}: expected a path like user.name (or a list of keys), got {_kind(path)}")
        return None
    if not parts or any(not p for p in parts):
        problems.append(f"{where}: path {path!r} has an empty key: write it like user.name")
        return None
    return ColumnSource(column, tuple(parts), None)


def _source_item(where: str, item: dict, problems: list[str]):
    known = ("column", "path", "kafka")
    ok = True
    for k in item:
        if k not in known:
            problems.append(_unknown(f"{where}.{k}", k, known))
            ok = False
    column = item.get("column")
    if not isinstance(column, str) or not column:
        problems.append(f"{where}.column: required: the Doris column this fills")
        return None
    if ("path" in item) == ("kafka" in item):
        problems.append(f"{where}: give exactly one of path (a JSON field like user.name) or kafka "
                        f"({'|'.join(KAFKA_FIELDS)})")
        return None
    if not ok:
        return None
    if "kafka" in item:
        return _kafka_source(f"{where}.kafka", column, item["kafka"], problems)
    return _path_source(f"{where}.path", column, item["path"], problems)


def _column_sources(v, problems: list[str]):
    if v is None:
        return True, ()
    before = len(problems)
    out = []
    if isinstance(v, dict):
        for column, source in v.items():
            out.append(_parse_source(f"mapping.columns.{column}", str(column), source, problems))
    elif isinstance(v, list):
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                problems.append(f"mapping.columns[{i}]: expected {{column: c, path: a.b}} or "
                                f"{{column: c, kafka: partition}}, got {_kind(item)}")
                continue
            out.append(_source_item(f"mapping.columns[{i}]", item, problems))
    else:
        problems.append(f"mapping.columns: expected a mapping {{column: source}} or a list, got {_kind(v)}")
        return False, None
    if len(problems) > before:
        return False, None
    seen = set()
    for s in out:
        if s.column in seen:
            problems.append(f"mapping.columns: column {s.column!r} is listed twice")
            return False, None
        seen.add(s.column)
    return True, tuple(out)


def _sequence_source(v, problems: list[str]):
    """A field path or @kafka.offset; its column is the table's sequence column, known later."""
    if v is None:
        return True, None
    source = _parse_source("mapping.sequence_from", "", v, problems)
    return source is not None, source


def _delete_when(v, problems: list[str]):
    return _field_equals("mapping.delete_when", v, problems, "{field: op, equals: D}")


def _field_equals(where: str, v, problems: list[str], example: str):
    if v is None:
        return True, None
    if not isinstance(v, dict) or set(v) != {"field", "equals"}:
        problems.append(f"{where}: expected {example} (a field and its value), got "
                        f"{_kind(v) if not isinstance(v, dict) else sorted(v)}")
        return False, None
    equals = v["equals"]
    if not isinstance(equals, (str, int, bool)):
        problems.append(f"{where}.equals: expected a string, number or boolean, got {_kind(equals)}")
        return False, None
    source = _path_source(f"{where}.field", "", v["field"], problems)
    if source is None:
        return False, None
    return True, FieldEquals(source.path, equals)


def _schema_columns(v, problems: list[str]):
    if v is None:
        return True, ()
    if not isinstance(v, list):
        problems.append("mapping.schema: expected a list of {name, type, nullable, default}, "
                        f"got {_kind(v)}")
        return False, None
    before = len(problems)
    known = ("name", "type", "nullable", "default")
    out = []
    seen: set = set()
    for i, item in enumerate(v):
        where = f"mapping.schema[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected {{name, type, nullable, default}}, got {_kind(item)}")
            continue
        for k in item:
            if k not in known:
                problems.append(_unknown(f"{where}.{k}", k, known))
        name, typ = item.get("name"), item.get("type")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.name: required: the Doris column name")
        if not isinstance(typ, str) or not typ.strip():
            problems.append(f"{where}.type: required: a Doris type such as bigint or varchar(64)")
        elif (why := _type_problem(where, typ)) is not None:
            problems.append(why)
        if isinstance(name, str) and name in seen:
            problems.append(f"{where}.name: column {name!r} is listed twice")
        seen.add(name if isinstance(name, str) else None)
        nullable = item.get("nullable", True)
        if not isinstance(nullable, bool):
            problems.append(f"{where}.nullable: expected true or false, got {_kind(nullable)}")
        default = item.get("default")
        if isinstance(default, bool) or not (default is None or isinstance(default, (str, int, float))):
            problems.append(f"{where}.default: expected a string or number, got {_kind(default)} "
                            "(quote it in YAML)")
        elif default is not None:
            default = str(default)
        if len(problems) == before:
            out.append(SchemaColumn(name, typ.strip(), nullable, default))
    if len(problems) > before:
        return False, None
    return True, tuple(out)


# -- value checks ---------------------------------------------------------------------------------
def _check(cfg: Config, bad: set[str], problems: list[str], mode: str = "single") -> None:
    def want(dotted: str, ok: bool, message: str) -> None:
        if dotted not in bad and dotted.split(".")[0] not in bad and not ok:
            problems.append(f"{dotted}: {message}")

    def one_of(dotted: str, value, allowed) -> None:
        want(dotted, value in allowed, f"expected one of {', '.join(allowed)}, got {value!r}")

    def positive(section: str, obj, *names) -> None:
        for n in names:     # None: unset, a default applies
            v = getattr(obj, n)
            want(f"{section}.{n}", v is None or v > 0, f"must be > 0, got {v!r}")

    k = cfg.kafka
    if mode == "single":
        want("kafka.topics", bool(k.topics) or k.topics_pattern is not None,
             "required: list the topics to read, e.g. topics: [events], or match them with "
             "topics_pattern: 'events\\..*'")
    elif mode == "routes":
        want("kafka.topics", not k.topics, "set with routes: list each route's topics in the route")
        want("kafka.topics_pattern", k.topics_pattern is None,
             "set with routes: give each route its own topics_pattern")
    for t in k.topics:
        want("kafka.topics", bool(_TOPIC.match(t)),
             f"{t!r} is not a Kafka topic name (letters, digits, '.', '_', '-')")
    if k.topics_pattern is not None:
        why = _topics_pattern_problem(k.topics_pattern)
        want("kafka.topics_pattern", why is None, str(why))
        for t in k.topics:
            # librdkafka hides every "__" name from a pattern subscription (topic.blacklist)
            want("kafka.topics", not t.startswith("__"),
                 f"{t!r} starts with '__' (Kafka's internal topics), which no subscription with "
                 "kafka.topics_pattern reads: remove topics_pattern to read it, or rename the topic")
    want("kafka.brokers", bool(k.brokers),
         "required: list the bootstrap brokers, e.g. brokers: [kafka-1:9092, kafka-2:9092], "
         "or set env SINKER_KAFKA_BROKERS=kafka-1:9092,kafka-2:9092")
    for b in k.brokers:
        want("kafka.brokers", _valid_hostport(b), f"{b!r} is not host:port, e.g. kafka-1:9092")
    want("kafka.group_id", k.group_id is None or bool(k.group_id.strip()),
         "must not be empty (leave it out to use sinker.<database>.<table>)")
    want("kafka.client_id", bool(k.client_id.strip()), "must not be empty")
    one_of("kafka.start_from", k.start_from, ("earliest", "latest"))
    one_of("kafka.client", k.client, KAFKA_CLIENTS)
    if k.client == "confluent-kafka":
        _check_librdkafka_limits(k, want)
    positive("kafka", k, "max_poll_records", "fetch_max_bytes", "max_partition_fetch_bytes",
             "session_timeout_ms", "heartbeat_interval_ms", "max_poll_interval_ms", "request_timeout_ms",
             "metadata_max_age_ms")
    one_of("kafka.security_protocol", k.security_protocol, SECURITY_PROTOCOLS)
    if k.sasl_mechanism is not None:
        one_of("kafka.sasl_mechanism", k.sasl_mechanism, SASL_MECHANISMS)
    if k.security_protocol.startswith("SASL_"):
        want("kafka.sasl_mechanism", k.sasl_mechanism is not None,
             f"required with security_protocol {k.security_protocol}: one of {', '.join(SASL_MECHANISMS)}")
        want("kafka.sasl_username", bool(k.sasl_username),
             f"required with security_protocol {k.security_protocol} (or env SINKER_KAFKA_SASL_USERNAME)")
        want("kafka.sasl_password", bool(k.sasl_password),
             f"required with security_protocol {k.security_protocol} (or env SINKER_KAFKA_SASL_PASSWORD)")
    elif k.sasl_mechanism is not None:
        want("kafka.sasl_mechanism", False,
             f"set, but security_protocol is {k.security_protocol}: use SASL_PLAINTEXT or SASL_SSL")
    _check_kafka_tls(k, want)

    d = cfg.doris
    want("doris.fe_hosts", bool(d.fe_hosts), "required: list the FE hosts, e.g. [doris-fe-1]")
    for h in d.fe_hosts:
        want("doris.fe_hosts", bool(_HOST.match(h)) or _valid_hostport(h),
             f"{h!r} is not \"host\" or \"host:port\"")
    for h in d.be_hosts:
        want("doris.be_hosts", _valid_hostport(h), f"{h!r} is not host:port, e.g. doris-be-1:8040")
    for n in ("http_port", "query_port"):
        want(f"doris.{n}", 1 <= getattr(d, n) <= 65535, f"must be a port 1..65535, got {getattr(d, n)}")
    want("doris.user", bool(d.user), "must not be empty (or env SINKER_DORIS_USER)")
    for n in ("database", "table"):
        value = getattr(d, n)
        if mode != "routes":
            want(f"doris.{n}", bool(value), f"required: the Doris {n} to load into")
        elif n == "table":
            want("doris.table", not value, "set with routes: name each route's table in the route")
        if value:
            want(f"doris.{n}", bool(_IDENT.match(value)),
                 f"{value!r} is not a Doris identifier (a letter, then letters, digits, '_' or '-'); "
                 "write db and table in separate keys")
    positive("doris", d, "connect_timeout_s", "load_timeout_s")
    if d.ca_file:
        # set without https, the user believes the link is verified when it is plain http
        want("doris.ca_file", d.https, "set, but doris.https is false: set https: true (the CA "
             "is only used for TLS)")
        want("doris.ca_file", os.path.isfile(d.ca_file) and os.access(d.ca_file, os.R_OK),
             f"{d.ca_file!r} is not a readable file")
    want("doris.timezone", bool(d.timezone.strip()), "must not be empty, e.g. UTC")
    one_of("doris.group_commit", d.group_commit, GROUP_COMMIT_MODES)

    m = cfg.mapping
    one_of("mapping.format", m.format, ("csv", "json"))
    one_of("mapping.missing", m.missing, ("default", "zero"))
    want("mapping.max_filter_ratio", 0 <= m.max_filter_ratio <= 1,
         f"must be between 0 and 1, got {m.max_filter_ratio}")
    positive("mapping", m, "schema_refresh_s")
    _check_schema(m, bad, problems)
    one_of("mapping.envelope", m.envelope, ENVELOPES)
    want("mapping.delete_when", m.delete_when is None or m.envelope != "debezium",
         "set with envelope: debezium, whose op field already says what a delete is: remove one")
    if m.sequence_from is not None and m.sequence_from.kafka is not None:
        want("mapping.sequence_from", m.sequence_from.kafka == "offset",
             f"@kafka.{m.sequence_from.kafka} does not order a key's changes: use @kafka.offset, "
             "source.lsn or a field that grows with every change")
    if m.sequence_column is not None:
        want("mapping.sequence_column", m.sequence_from is not None,
             "set without mapping.sequence_from: say where its value comes from")

    positive("batch", cfg.batch, "max_rows", "max_bytes", "max_interval_s", "queue_size",
             "max_bytes_in_flight")
    want("batch.max_bytes_in_flight", cfg.batch.max_bytes_in_flight >= 2 * cfg.batch.max_bytes,
         f"must be at least twice batch.max_bytes ({2 * cfg.batch.max_bytes}): a batch holds its "
         f"body and its source records; got {cfg.batch.max_bytes_in_flight}. Raise it or lower "
         "batch.max_bytes")

    want("batch.min_load_interval_s", cfg.batch.min_load_interval_s >= 0,
         f"must be >= 0 (0 loads a table as often as batches are sealed), got "
         f"{cfg.batch.min_load_interval_s}")

    w = cfg.writer
    want("writer.workers", 1 <= w.workers <= 64, f"must be 1..64, got {w.workers}")
    want("writer.max_retries", w.max_retries >= 0, f"must be >= 0, got {w.max_retries}")
    positive("writer", w, "backoff_initial_s", "backoff_max_s")
    want("writer.backoff_max_s", w.backoff_max_s >= w.backoff_initial_s,
         f"must be >= writer.backoff_initial_s ({w.backoff_initial_s}), got {w.backoff_max_s}")
    want("writer.busy_backoff_s", w.busy_backoff_s >= 0, f"must be >= 0, got {w.busy_backoff_s}")

    dl = cfg.dead_letter
    one_of("dead_letter.type", dl.type, ("file", "kafka"))
    if dl.type == "file":
        want("dead_letter.path", bool(dl.path), "required with type file: the JSON-lines file to append to")
    if dl.type == "kafka":
        want("dead_letter.topic", bool(dl.topic), "required with type kafka: the topic for dead letters")
        if dl.topic:
            want("dead_letter.topic", bool(_TOPIC.match(dl.topic)), f"{dl.topic!r} is not a Kafka topic name")
            # a pattern such as orders\..* easily takes in orders.dead: sinker would read back
            # (and dead-letter again) what it dead-letters
            read = dl.topic in k.topics or (
                "kafka.topics_pattern" not in bad and k.topics_pattern is not None
                and _topics_pattern_problem(k.topics_pattern) is None
                and re.fullmatch(k.topics_pattern, dl.topic) is not None)
            want("dead_letter.topic", not read, f"{dl.topic!r} is one of the topics sinker reads "
                 "(kafka.topics or kafka.topics_pattern): it would read its own dead letters back; "
                 "name another topic, or narrow the pattern")
    want("dead_letter.log_per_minute", dl.log_per_minute >= 0, f"must be >= 0, got {dl.log_per_minute}")

    s = cfg.server
    want("server.listen", s.listen == "" or _valid_hostport(s.listen, allow_zero=True),
         f"expected \"host:port\" (e.g. 0.0.0.0:9108) or \"\" to disable, got {s.listen!r}")
    positive("server", s, "ready_stall_s")
    if s.debug_token:
        want("server.debug_token", s.debug_token == s.debug_token.strip(),
             "has spaces around it; a client would never send them (env SINKER_STATUS_TOKEN)")

    lg = cfg.logging
    one_of("logging.level", lg.level, LOG_LEVELS)
    one_of("logging.format", lg.format, ("auto", "console", "json"))
    one_of("logging.output", lg.output, ("stdout", "file", "both"))
    if lg.output in ("file", "both"):
        want("logging.file", bool(lg.file), f"required with output {lg.output}: the log file path")
    positive("logging", lg, "max_bytes")
    want("logging.backups", lg.backups >= 0, f"must be >= 0, got {lg.backups}")
    want("logging.sample_per_minute", lg.sample_per_minute >= 0, f"must be >= 0, got {lg.sample_per_minute}")
    want("logging.progress_s", lg.progress_s >= 0, f"must be >= 0 (0 turns the progress line off), "
         f"got {lg.progress_s}")

    want("shutdown_timeout_s", cfg.shutdown_timeout_s > 0, f"must be > 0, got {cfg.shutdown_timeout_s}")
    one_of("delivery", cfg.delivery, DELIVERIES)
    one_of("unmatched", cfg.unmatched, UNMATCHED)
    if d.group_commit in GROUP_COMMIT_MODES[1:]:
        want("doris.group_commit", "delivery" in bad or cfg.delivery == "at_least_once",
             f"{d.group_commit} needs delivery: at_least_once: a group-committed load carries no "
             "label, so Doris cannot tell a retried or re-read batch from a new one and may load it "
             "twice; set delivery: at_least_once to accept that, or group_commit: off")


def _check_kafka_tls(k: KafkaConfig, want) -> None:
    """TLS settings only mean something with SSL/SASL_SSL (set otherwise, the user believes the
    link is encrypted when it is not); the files must be readable now, not at the first connect."""
    names = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")
    if k.security_protocol not in ("SSL", "SASL_SSL"):
        for n in names:
            want(f"kafka.{n}", not getattr(k, n),
                 f"set, but security_protocol is {k.security_protocol}: use SSL or SASL_SSL")
        return
    for n in names[:3]:
        path = getattr(k, n)
        if path:
            want(f"kafka.{n}", os.path.isfile(path) and os.access(path, os.R_OK),
                 f"{path!r} is not a readable file")
    want("kafka.ssl_keyfile", bool(k.ssl_keyfile) or not k.ssl_certfile,
         "required with kafka.ssl_certfile: the client certificate's private key (PEM)")
    want("kafka.ssl_certfile", bool(k.ssl_certfile) or not k.ssl_keyfile,
         "required with kafka.ssl_keyfile: the client certificate (PEM) that goes with the key")
    want("kafka.ssl_key_password", bool(k.ssl_keyfile) or not k.ssl_key_password,
         "set, but kafka.ssl_keyfile is not: it decrypts the client certificate's key")


# librdkafka's ranges for the settings sinker maps onto it (kafka-python takes any positive value)
_LIBRDKAFKA_MAX = {"session_timeout_ms": 3_600_000, "heartbeat_interval_ms": 3_600_000,
                   "max_poll_interval_ms": 86_400_000, "request_timeout_ms": 300_000,
                   "metadata_max_age_ms": 3_600_000, "max_partition_fetch_bytes": 1_000_000_000,
                   "fetch_max_bytes": 2_147_483_135, "max_poll_records": 1_000_000}


def _check_librdkafka_limits(k: KafkaConfig, want) -> None:
    """What librdkafka refuses and kafka-python accepts: said here, naming the other client."""
    for n, top in _LIBRDKAFKA_MAX.items():
        v = getattr(k, n)   # None: unset, sinker's default for librdkafka applies
        want(f"kafka.{n}", v is None or v <= top, f"must be <= {top} with kafka.client "
             f"confluent-kafka (librdkafka's limit), got {v}; lower it or use "
             "kafka.client kafka-python")
    want("kafka.request_timeout_ms", k.request_timeout_ms >= 10,
         "must be >= 10 with kafka.client confluent-kafka (librdkafka's socket.timeout.ms)")
    want("kafka.max_poll_interval_ms", k.max_poll_interval_ms >= k.session_timeout_ms,
         f"must be >= kafka.session_timeout_ms ({k.session_timeout_ms}) with kafka.client "
         "confluent-kafka (librdkafka refuses less); raise it or use kafka.client kafka-python")


# kafka.topics_pattern: the regex subset that Python's re (kafka-python, re.match) and librdkafka
# (POSIX ERE through libc's regcomp, or its own engine on Windows) read alike. A topic name is
# letters, digits, '.', '_' and '-', so nothing more is needed to match one.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_REPEAT = re.compile(r"\{(\d*)(,?)(\d*)\}")
_ESCAPE_HINTS = {"d": "[0-9]", "w": "[A-Za-z0-9_]", "-": "-", "_": "_"}


class _NotShared(ValueError):
    """The pattern uses what one of the two Kafka clients reads differently, or not at all."""


def _topics_pattern_problem(text: str) -> str | None:
    """Why ``text`` is not a topics_pattern, or None. The pattern must match a topic's whole name
    (as Kafka's Java client does); a leading '^' and a trailing '$' are allowed and change
    nothing."""
    if not isinstance(text, str) or not text:
        return "must be a regex matching whole topic names, e.g. 'orders\\..*'"
    try:
        _PatternSubset(text).check()
        re.compile(text)
    except _NotShared as e:
        return (f"{text!r}: {e} (kafka.topics_pattern takes only the regex both Kafka clients "
                "read alike: letters, digits, '_', '-', '\\.', '.', [...] classes, (...|...) "
                "groups, *, +, ?, {n,m})")
    except re.error as e:
        return f"{text!r} does not compile: {e}"
    return None


class _PatternSubset:
    """A recursive-descent reading of the subset; positions in messages count from 0 in the
    pattern as written."""

    def __init__(self, text: str):
        self.shift = 1 if text.startswith("^") else 0
        body = text[self.shift:]
        self.s = body[:-1] if body.endswith("$") else body

    def fail(self, i: int, message: str):
        raise _NotShared(message.replace("@", f"at position {i + self.shift}"))

    def check(self) -> None:
        end = self.alternatives(0)
        if end < len(self.s):            # only a ')' stops the top level early
            self.fail(end, "')' @ closes no '('")

    def alternatives(self, i: int) -> int:
        """``a|b|...`` from ``i`` up to a ')' or the end; the index after it."""
        while True:
            start = i
            i = self.branch(i)
            if i == start:
                self.fail(i, "empty alternative @ ('|' at an end, '||' or '()'): remove it, or "
                          "make the part beside it optional with ?")
            if i < len(self.s) and self.s[i] == "|":
                i += 1
                continue
            return i

    def branch(self, i: int) -> int:
        s = self.s
        while i < len(s) and s[i] not in "|)":
            i = self.atom(i)
            if i < len(s) and s[i] in "*+?{":
                i = self.repeat(i)
                if i < len(s) and s[i] in "*+?{":
                    self.fail(i, f"{s[i]!r} after a quantifier @: lazy (*?, +?) and stacked "
                              "quantifiers mean different things to the two clients; write one "
                              "quantifier")
        return i

    def atom(self, i: int) -> int:
        s, c = self.s, self.s[i]
        if c in _NAME_CHARS:
            return i + 1
        if c == "\\":
            nxt = s[i + 1:i + 2]
            if nxt == ".":
                return i + 2
            if nxt in _ESCAPE_HINTS:
                self.fail(i, f"'\\{nxt}' @: write {_ESCAPE_HINTS[nxt]} instead")
            self.fail(i, f"'\\{nxt}' @: only '\\.' (a literal dot) is read alike; use [...] "
                      "classes, e.g. [0-9] or [A-Za-z]")
        if c == "(":
            if s[i + 1:i + 2] == "?":
                self.fail(i, "'(?' @: non-capturing groups, lookarounds and flags are "
                          "Python-only; write a plain group (...)")
            j = self.alternatives(i + 1)
            if j >= len(s):
                self.fail(i, "'(' @ is never closed")
            return j + 1
        if c == "[":
            return self.char_class(i)
        if c in "*+?{":
            self.fail(i, f"{c!r} @ repeats nothing: put it after a character, a class or a group")
        if c in "^$":
            self.fail(i, f"{c!r} @: '^' and '$' may only start and end the pattern (it matches "
                      "whole names anyway)")
        self.fail(i, f"{c!r} @ is never in a topic name (letters, digits, '.', '_', '-')")

    def repeat(self, i: int) -> int:
        if self.s[i] != "{":
            return i + 1
        m = _REPEAT.match(self.s, i)
        if not m:
            self.fail(i, "'{' @ starts no repeat count: write {n}, {n,} or {n,m}")
        low, _comma, high = m.groups()
        if not low:
            self.fail(i, f"'{{,{high}}}' @ is Python-only: write {{0,{high}}}")
        if high and int(high) < int(low):
            self.fail(i, f"repeat count {m.group()} @ is reversed: the smaller number comes first")
        if int(high or low) > 255:
            self.fail(i, f"repeat count {m.group()} @ is above 255, the largest every POSIX "
                      "regex engine takes (a topic name has at most 249 characters)")
        return m.end()

    def char_class(self, i: int) -> int:
        """``[...]`` of name characters, and ranges within digits or within one letter case."""
        s = self.s
        j = first = i + 1 + (s[i + 1:i + 2] == "^")
        while j < len(s) and (s[j] != "]" or j == first):
            c = s[j]
            if c == "[":
                self.fail(j, "'[' inside [...] @: POSIX classes such as [[:digit:]] are "
                          "librdkafka-only; write [0-9], [a-z] or [A-Za-z]")
            if c == "\\":
                self.fail(j, "backslash inside [...] @: librdkafka reads it as a backslash, "
                          "Python as an escape; write the characters plainly, e.g. [._-]")
            if c not in _NAME_CHARS:
                self.fail(j, f"{c!r} inside [...] @ is never in a topic name")
            j += 1
        if j >= len(s):
            self.fail(i, "'[' @ is never closed")
        items, k = s[first:j], 0
        while k < len(items):
            if k + 2 < len(items) and items[k + 1] == "-":
                low, high = items[k], items[k + 2]
                if low > high or not any(low in r and high in r for r in _RANGES):
                    self.fail(first + k, f"range {low}-{high} in [...] @: write ranges low to "
                              "high within digits or within one letter case (0-9, a-z, A-Z); "
                              "a literal '-' goes first or last")
                k += 3
            elif items[k] == "-" and 0 < k < len(items) - 1:
                self.fail(first + k, "'-' inside [...] @ is neither a range nor first or last: "
                          "put a literal '-' first or last")
            else:
                k += 1
        return j + 1


_RANGES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _check_schema(m: MappingConfig, bad: set[str], problems: list[str]) -> None:
    if "mapping.schema" in bad or "mapping" in bad or "mapping.columns" in bad or not m.schema:
        return
    names = [c.name for c in m.schema]
    for s in m.columns:
        if s.column not in names:
            problems.append(f"mapping.columns: {s.column!r} is not a column of mapping.schema "
                            f"(columns: {', '.join(names)})")


def _type_problem(where: str, text: str) -> str | None:
    base = parse_type(text).base
    if base in KNOWN_BASES:
        return None
    close = difflib.get_close_matches(base.lower(), sorted(b.lower() for b in KNOWN_BASES), n=1)
    hint = f"did you mean {close[0]}?" if close else "use a Doris type such as bigint or varchar(64)"
    return f"{where}.type: unknown Doris type {text!r} ({hint})"


def _valid_hostport(text: str, allow_zero: bool = False) -> bool:
    m = _HOSTPORT.match(text or "")
    if not m:
        return False
    port = int(m.group(2))
    return (0 if allow_zero else 1) <= port <= 65535
