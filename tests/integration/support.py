"""Helpers for end-to-end tests: configs for the test stack, running sinker in-process or as a
real process, and reading back what Doris holds (through the emulator's MySQL port, like a user)."""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]


DEFAULT_CLIENT = "kafka-python"
kafka_client = DEFAULT_CLIENT      # kafka.client of stack_config(); tests/integration/conftest.py sets it


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, **sections) -> dict:
    """A config dict for the test stack; sections override/extend the defaults."""
    cfg = {
        "kafka": {"brokers": [kafka_bootstrap], "topics": [topic], "group_id": unique("g"),
                  "client": kafka_client,
                  "start_from": "earliest", "session_timeout_ms": 10000,
                  "heartbeat_interval_ms": 1000},
        "doris": {"fe_hosts": [f"{doris.host}:{doris.fe_http_port}"], "http_port": doris.fe_http_port,
                  "query_port": doris.query_port, "user": doris.user, "password": doris.password,
                  "database": db, "table": table, "connect_timeout_s": 3, "load_timeout_s": 30},
        "batch": {"max_rows": 20000, "max_interval_s": 0.5},
        "writer": {"workers": 2, "max_retries": 8, "backoff_initial_s": 0.05, "backoff_max_s": 0.5,
                   "busy_backoff_s": 0.2},
        "dead_letter": {"type": "file", "path": str(tmp_path / "dead.jsonl")},
        "server": {"listen": "127.0.0.1:0"},
        "logging": {"format": "json", "level": "info"},
        "shutdown_timeout_s": 30,
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(cfg.get(name), dict):
            cfg[name].update(values)
        else:
            cfg[name] = values
    return cfg


def create_table(doris, ddl: str) -> tuple[str, str]:
    """A new database and table from ``ddl`` (with {db} and {table}); their names."""
    db, table = unique("db"), unique("t")
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    doris.query(ddl.format(db=db, table=table))
    return db, table


def write_config(tmp_path, cfg: dict, name: str = "sinker.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


class InProcess:
    """Run a Pipeline in a background thread (no signal handlers): fast to start and stop."""

    def __init__(self, cfg_dict: dict, **kwargs):
        from sinker_lib.config import config_from_dict
        from sinker_lib.pipeline import Pipeline
        self.cfg = config_from_dict(cfg_dict, env={})
        self.pipeline = Pipeline(self.cfg, **kwargs)
        self.result = None
        self.thread = threading.Thread(target=self._run, name="pipeline-under-test", daemon=True)

    def _run(self):
        self.result = self.pipeline.run()

    def __enter__(self):
        self.thread.start()
        return self

    def stop(self, timeout: float = 60):
        self.pipeline.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "pipeline did not stop"
        return self.result

    def __exit__(self, *exc):
        if self.thread.is_alive():
            self.stop()


def start_process(config_path: Path, *args, log_path: Path | None = None, env=None):
    """Start `sinker run` as a real process (for signals and kill -9)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.Popen([sys.executable, str(ROOT / "sinker.py"), "run", "-c", str(config_path),
                             *args], cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT, env=e,
                            start_new_session=True)


def nothing_consumed(offsets: dict) -> bool:
    """No committed offset is past the first message of its (fresh) partition. Exactly-once may
    commit offset 0 with a batch's cut points in the metadata before it loads the batch."""
    return all(v in (None, 0) for v in offsets.values())


def stop_process(proc, sig=signal.SIGTERM, timeout=60) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout)


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def count_rows(doris, db, table) -> int:
    return int(doris.query(f"SELECT COUNT(*) FROM `{db}`.`{table}`")[0][0])


def read_dead_letters(path) -> list[dict]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def wait_committed(bootstrap, group, topic, partitions, n: int, timeout: float = 60,
                   what: str = "every offset committed") -> None:
    """The group's committed offsets of the topic's partitions add up to ``n`` (the topic's
    partitions start at offset 0, so that is every message below them)."""
    wait_for(lambda: sum(v or 0 for v in committed_offsets(bootstrap, group, topic, partitions).values())
             == n, timeout, 0.3, what)


def read_topic(bootstrap, topic, count: int, timeout: float = 30) -> list:
    """The first ``count`` records of a one-partition topic, read from the beginning."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=None, enable_auto_commit=False,
                      max_partition_fetch_bytes=8 * 1024 * 1024)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got: list = []
    try:
        def more():
            for records in c.poll(timeout_ms=500).values():
                got.extend(records)
            return len(got) >= count
        wait_for(more, timeout, 0, f"{count} records on {topic}")
        return got[:count]
    finally:
        c.close(autocommit=False)


def committed_offsets(bootstrap, group, topic, partitions) -> dict[int, int | None]:
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=group, enable_auto_commit=False)
    try:
        return {p: c.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        c.close(autocommit=False)


# -- the status endpoint of a run: /metrics, /ready ---------------------------------------------------------------------------------
def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(port: int, path: str) -> tuple[int, dict]:
    status, body = get(port, path)
    return status, json.loads(body)


class Scrape:
    """One /metrics exposition: sample values by name and labels."""

    def __init__(self, text: str):
        self.text = text
        self.samples: list[tuple[str, dict, float]] = []
        self.families: dict[str, str] = {}
        for fam in text_string_to_metric_families(text):
            self.families[fam.name] = fam.type
            for s in fam.samples:
                self.samples.append((s.name, dict(s.labels), s.value))

    def all(self, name: str, **labels) -> list[tuple[dict, float]]:
        return [(lb, v) for n, lb, v in self.samples
                if n == name and all(lb.get(k) == str(x) for k, x in labels.items())]

    def value(self, name: str, **labels) -> float:
        return sum(v for _, v in self.all(name, **labels))

    def by(self, name: str, label: str, **labels) -> dict[str, float]:
        out: dict[str, float] = collections.defaultdict(float)
        for lb, v in self.all(name, **labels):
            out[lb[label]] += v
        return dict(out)


def scrape(port: int) -> Scrape:
    status, body = get(port, "/metrics")
    assert status == 200
    return Scrape(body.decode())


def status_section() -> tuple[dict, int]:
    """A server section with a fixed free port, for a `sinker run` process the test watches."""
    from tests.fakes import free_port
    port = free_port()
    return {"listen": f"127.0.0.1:{port}"}, port


def scrape_when_up(port: int):
    """The process's metrics, or None while its status server is not listening yet."""
    try:
        return scrape(port)
    except (OSError, AssertionError):
        return None
