"""Configuration: one YAML file plus environment overrides, loaded once into frozen dataclasses.

Validation happens here with no I/O, so a wrong key fails before anything connects.
(Skeleton: field names are the contract; loading/validation is filled in by config work.)
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KafkaConfig:
    brokers: tuple[str, ...] = ("127.0.0.1:9092",)
    topics: tuple[str, ...] = ()
    group_id: str = "sinker"
    client_id: str = "sinker"
    start_from: str = "earliest"            # earliest | latest, for a group with no commits
    max_poll_records: int = 2000
    fetch_max_bytes: int = 52_428_800
    max_partition_fetch_bytes: int = 8_388_608
    session_timeout_ms: int = 30_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    security_protocol: str = "PLAINTEXT"    # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None       # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None        # env SINKER_KAFKA_SASL_PASSWORD
    ssl_cafile: str | None = None


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
    https: bool = False
    ca_file: str | None = None
    connect_timeout_s: float = 5.0
    load_timeout_s: float = 600.0               # Doris 'timeout' header and HTTP read timeout
    timezone: str = "UTC"


@dataclass(frozen=True)
class ColumnSource:
    """How one Doris column is filled: a JSON field, a path into nested objects, or Kafka metadata."""
    column: str
    path: tuple[str, ...] = ()        # ("user", "id") for user.id; empty when kafka is set
    kafka: str | None = None          # topic | partition | offset | timestamp | key


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


@dataclass(frozen=True)
class BatchConfig:
    max_rows: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_interval_s: float = 5.0
    queue_size: int = 16                        # poll results waiting for the batcher


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


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"                        # auto (console on a terminal, else json) | console | json
    output: str = "stdout"                      # stdout | file | both
    file: str | None = None
    max_bytes: int = 100 * 1024 * 1024
    backups: int = 5
    sample_per_minute: int = 20                 # identical errors logged per minute before suppression


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
