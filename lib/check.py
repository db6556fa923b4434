"""``sinker check``: connect to Kafka and Doris as ``run`` would and report each step."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import load_result
from .consumer import open_consumer
from .errors import SinkerError
from .stream_load import StreamLoader


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


def _timed(name, fn) -> Step:
    t0 = time.monotonic()
    try:
        detail = fn()
        return Step(name, True, f"{detail} ({(time.monotonic() - t0) * 1000:.0f} ms)")
    except SinkerError as e:
        return Step(name, False, str(e))
    except Exception as e:  # noqa: BLE001 - a check reports, it does not crash
        return Step(name, False, f"{type(e).__name__}: {e}")


def run_checks(cfg, sample: int = 100) -> list[Step]:
    steps: list[Step] = []
    state: dict = {}

    def kafka_brokers():
        c = open_consumer(cfg.kafka, with_group=False)
        state["consumer"] = c
        return f"{len(c.topics())} topics visible at {', '.join(cfg.kafka.brokers)}"

    def kafka_topics():
        c = state["consumer"]
        out = []
        for t in cfg.kafka.topics:
            parts = c.partitions_for_topic(t)
            if not parts:
                raise SinkerError(f"topic {t!r} does not exist")
            out.append(f"{t}: {len(parts)} partitions")
            state.setdefault("tps", []).extend((t, p) for p in parts)
        return "; ".join(out)

    def kafka_group():
        from kafka import TopicPartition
        c = open_consumer(cfg.kafka)     # reads the group's commits; never joins or commits
        try:
            committed = {tp: c.committed(TopicPartition(*tp)) for tp in state.get("tps", [])}
        finally:
            c.close(autocommit=False)
        n = sum(1 for v in committed.values() if v is not None)
        return (f"group {cfg.kafka.group_id}: {n}/{len(committed)} partitions have commits"
                + ("" if n else f" (a new group starts at {cfg.kafka.start_from})"))

    def fe_http():
        errors = []
        loader = StreamLoader(cfg.doris)
        try:
            for fe in cfg.doris.fe_hosts:
                try:
                    resp, location = loader.probe_fe(fe, cfg.doris.database, cfg.doris.table)
                except SinkerError as e:
                    errors.append(f"{fe}: {e}")
                    continue
                outcome = load_result.classify(resp.http_status, resp.body, None)
                if outcome.reason == "auth":
                    raise SinkerError(f"FE {fe} refused user {cfg.doris.user!r}: check doris.user "
                                      "and SINKER_DORIS_PASSWORD")
                if resp.http_status != 307 or not location:
                    raise SinkerError(f"FE {fe} answered HTTP {resp.http_status} "
                                      f"{resp.body or ''} instead of a redirect")
                state["location"] = location
                return f"FE {fe} accepted the credentials and redirects to a BE"
        finally:
            loader.close()
        raise SinkerError("no FE answered: " + "; ".join(errors))

    def be_reachable():
        loc = urlsplit(state["location"]) if "location" in state else None
        targets = [(h.partition(":")[0], int(h.partition(":")[2] or 8040))
                   for h in cfg.doris.be_hosts] or ([(loc.hostname, loc.port or 80)] if loc else [])
        if not targets:
            raise SinkerError("no BE to try: the FE check failed")
        for host, port in targets:
            with socket.create_connection((host, port), timeout=cfg.doris.connect_timeout_s):
                pass
        return "reachable: " + ", ".join(f"{h}:{p}" for h, p in targets)

    def query_port():
        import pymysql
        host, _, port = cfg.doris.fe_hosts[0].partition(":")
        conn = pymysql.connect(host=host, port=cfg.doris.query_port, user=cfg.doris.user,
                               password=cfg.doris.password, connect_timeout=cfg.doris.connect_timeout_s)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@version_comment")
                return str(cur.fetchone()[0])
        finally:
            conn.close()

    def table_exists():
        from .pipeline import SchemaSource
        src = SchemaSource(cfg)
        state["schema"] = src
        return f"{cfg.doris.database}.{cfg.doris.table}: {len(src.columns)} columns"

    def sample_messages():
        import io
        from .dry_run import dry_run
        if "schema" not in state:
            raise SinkerError("skipped: the table check failed")
        summary = dry_run(cfg, state["schema"].mapper(), sample, "committed", io.BytesIO(),
                          wait_s=2.0)
        if summary.dead:
            first = summary.dead[0]
            raise SinkerError(f"{len(summary.dead)}/{summary.messages} sampled messages do not map: "
                              f"{first.reason} (partition {first.partition} offset {first.offset})")
        return f"{summary.messages} sampled messages map cleanly"

    for name, fn in [("kafka brokers", kafka_brokers), ("topics and partitions", kafka_topics),
                     ("consumer group", kafka_group), ("Doris FE HTTP + auth", fe_http),
                     ("Doris BE reachable", be_reachable), ("Doris query port", query_port),
                     ("table exists", table_exists), ("schema fits messages", sample_messages)]:
        if name in ("topics and partitions", "consumer group") and "consumer" not in state:
            steps.append(Step(name, False, "skipped: no broker answered"))
            continue
        steps.append(_timed(name, fn))
    if "consumer" in state:
        state["consumer"].close(autocommit=False)
    return steps
