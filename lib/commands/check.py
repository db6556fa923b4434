"""``sinker check``: connect to Kafka and Doris as ``run`` would and report each step."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from .. import load_result
from ..config import HostPort
from ..errors import SinkerError
from ..kafka_client import KafkaReader, TopicPartition, missing_topics_message
from ..schema import SchemaSource, connect
from ..stream_load import StreamLoader
from .dry_run import dry_run


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
        c = KafkaReader(cfg.kafka, group=False)
        state["consumer"] = c
        return f"{len(c.topics())} topics visible at {', '.join(cfg.kafka.brokers)}"

    def kafka_topics():
        c = state["consumer"]
        out = []
        for t in cfg.kafka.topics:
            parts = c.partitions_for_topic(t)
            if not parts:
                raise SinkerError(missing_topics_message([t], c.topics(), cfg.kafka.brokers))
            out.append(f"{t}: {len(parts)} partitions")
            state.setdefault("tps", []).extend((t, p) for p in parts)
        return "; ".join(out)

    def kafka_group():
        c = KafkaReader(cfg.kafka, group=True)   # reads the group's commits; never joins or commits
        try:
            committed = {tp: c.committed(TopicPartition(*tp)) for tp in state.get("tps", [])}
        finally:
            c.close()
        n = sum(1 for v in committed.values() if v is not None)
        return (f"group {cfg.kafka.group_id}: {n}/{len(committed)} partitions have commits"
                + ("" if n else f" (a new group starts at {cfg.kafka.start_from})"))

    def fe_http():
        errors = []
        loader = StreamLoader(cfg.doris)
        try:
            for fe in cfg.doris.fe_addresses:
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
        targets = list(cfg.doris.be_addresses) or (
            [HostPort(loc.hostname, loc.port or (443 if loc.scheme == "https" else 80))] if loc else [])
        if not targets:
            raise SinkerError("no BE to try: the FE check failed")
        for be in targets:
            with socket.create_connection(be, timeout=cfg.doris.connect_timeout_s):
                pass
        return "reachable: " + ", ".join(be.netloc for be in targets)

    def query_port():
        conn, where = connect(cfg.doris)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@version_comment")
                return f"{where}: {cur.fetchone()[0]}"
        finally:
            conn.close()

    def table_exists():
        src = SchemaSource(cfg)
        state["schema"] = src
        return f"{cfg.doris.database}.{cfg.doris.table}: {len(src.columns)} columns"

    def sample_messages():
        import io
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
        state["consumer"].close()
    return steps
