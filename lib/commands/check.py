"""``sinker check``: connect to Kafka and Doris as ``run`` would and report each step.

Each failed step carries the exit code that says what kind of problem it is, so a script can
tell them apart: 3 refused (credentials, certificates), 4 unreachable (nothing answered), 5 a
misfit between the config and the cluster or the data (topic or table missing, mapped columns
the table lacks, sampled messages that do not map past ``max_bad_ratio``, a dead-letter output
``run`` could not write to).
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass
from functools import partial
from urllib.parse import urlsplit

from .. import load_result
from ..config import HostPort, target_configs
from ..errors import ConfigError, SchemaError, SinkerError
from .. import envelope
from ..kafka_client import TopicPartition, missing_topics_message, open_reader, subscribed_topics
from ..schema import SchemaSource, connect, table_model
from ..stream_load import StreamLoader
from .dry_run import dry_run

REFUSED, UNREACHABLE, MISFIT = 3, 4, 5


class Misfit(SinkerError):
    """The config and the cluster (or the data) do not fit: a retry cannot help, a fix can."""
    exit_code = MISFIT


class Unreachable(SinkerError):
    exit_code = UNREACHABLE


class Refused(SinkerError):
    exit_code = REFUSED


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    code: int = 0            # 0 passed; else REFUSED, UNREACHABLE or MISFIT
    skipped: bool = False    # not run because a step it needs failed

    @property
    def status(self) -> str:
        return "SKIP" if self.skipped else "PASS" if self.ok else "FAIL"

    def as_dict(self) -> dict:
        return {**asdict(self), "status": self.status.lower()}


def exit_code(steps: list[Step]) -> int:
    """0 when every step passed, else the lowest code of the failed ones: what to fix first
    (credentials before reachability before fit)."""
    return min((s.code for s in steps if not s.ok and not s.skipped), default=0)


def _code(e: BaseException) -> int:
    if isinstance(e, SchemaError):
        return MISFIT                      # the table is missing or has no columns
    if isinstance(e, SinkerError) and e.exit_code in (REFUSED, UNREACHABLE, MISFIT):
        return e.exit_code
    if isinstance(e, ConfigError):
        return REFUSED                     # e.g. a client key that cannot be decrypted
    return UNREACHABLE                     # sockets, timeouts, anything that did not answer


def _timed(name, fn) -> Step:
    t0 = time.monotonic()
    try:
        detail = fn()
        return Step(name, True, f"{detail} ({(time.monotonic() - t0) * 1000:.0f} ms)")
    except SinkerError as e:
        return Step(name, False, str(e), _code(e))
    except Exception as e:  # noqa: BLE001 - a check reports, it does not crash
        return Step(name, False, f"{type(e).__name__}: {e}", _code(e))


def run_checks(cfg, sample: int = 100, max_bad_ratio: float = 0.01) -> list[Step]:
    steps: list[Step] = []
    state: dict = {}

    def kafka_brokers():
        c = open_reader(cfg.kafka, group=False)
        state["consumer"] = c
        return f"{len(c.topics())} topics visible at {', '.join(cfg.kafka.brokers)}"

    def kafka_topics():
        c = state["consumer"]
        out, tps = [], []
        for t in cfg.kafka.topics:
            parts = c.partitions_for_topic(t)
            if not parts:
                raise Misfit(missing_topics_message([t], c.topics(), cfg.kafka.brokers))
            out.append(f"{t}: {len(parts)} partitions")
            tps.extend((t, p) for p in parts)
        if cfg.kafka.topics_pattern:
            matched = [t for t in subscribed_topics(cfg.kafka, c.topics())
                       if t not in cfg.kafka.topics]
            for t in matched:
                parts = c.partitions_for_topic(t) or ()
                out.append(f"{t}: {len(parts)} partitions")
                tps.extend((t, p) for p in parts)
            # not a failure: run reads the pattern's topics as they are created
            out.append(f"topics_pattern {cfg.kafka.topics_pattern!r} matches "
                       + (f"{len(matched)} topics" if matched else
                          "no topic yet (run reads matching topics once they are created)"))
        state["tps"] = tps
        return "; ".join(out)

    def kafka_group():
        c = open_reader(cfg.kafka, group=True)   # reads the group's commits; never joins or commits
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
                    first = target_configs(cfg)[0].doris
                    resp, location = loader.probe_fe(fe, first.database, first.table)
                except SinkerError as e:
                    errors.append(f"{fe}: {e}")
                    continue
                outcome = load_result.classify(resp.http_status, resp.body, None)
                if outcome.reason == "auth":
                    raise Refused(f"FE {fe} refused user {cfg.doris.user!r}: check doris.user "
                                  "and SINKER_DORIS_PASSWORD")
                if resp.http_status != 307 or not location:
                    err = Misfit if outcome.reason == "table_not_found" else Unreachable
                    raise err(f"FE {fe} answered HTTP {resp.http_status} "
                              f"{resp.body or ''} instead of a redirect")
                state["location"] = location
                return f"FE {fe} accepted the credentials and redirects to a BE"
        finally:
            loader.close()
        raise Unreachable("no FE answered: " + "; ".join(errors))

    def be_reachable():
        loc = urlsplit(state["location"]) if "location" in state else None
        targets = list(cfg.doris.be_addresses) or (
            [HostPort(loc.hostname, loc.port or (443 if loc.scheme == "https" else 80))] if loc else [])
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

    def change_data(tc):
        model = table_model(tc)
        errors, warnings = envelope.fit(tc.mapping, model, writers=tc.writer.workers,
                                        group_commit=tc.doris.group_commit)
        if errors:
            raise Misfit("; ".join(errors))
        state[("model", _name(tc))] = model
        if model is None:
            return "the columns come from mapping.schema: the table's model is not checked"
        text = f"{model.keys_type} KEY table, sequence column {model.sequence_col or 'none'}"
        return f"{text}; warning: {' '.join(warnings)}" if warnings else text

    def table_exists(tc):
        src = SchemaSource(tc, model=lambda _cfg: state.get(("model", _name(tc))))
        state[("schema", _name(tc))] = src
        return f"{_name(tc)}: {len(src.columns)} columns"

    def mapped_columns(tc):
        names = {c.name for c in state[("schema", _name(tc))].columns}
        missing = [s.column for s in tc.mapping.columns if s.column not in names]
        if missing:
            raise Misfit(f"mapping.columns names {', '.join(map(repr, missing))}, which "
                         f"{_name(tc)} does not have (columns: "
                         f"{', '.join(sorted(names))}): add the column or fix mapping.columns")
        if not tc.mapping.columns:
            return "mapping.columns is empty: each column takes the JSON field of its name"
        return f"all {len(tc.mapping.columns)} entries of mapping.columns are columns of the table"

    def sample_messages(tc):
        import io
        if not state["tps"]:
            return "no topic to sample: kafka.topics_pattern matches none yet"
        summary = dry_run(tc, state[("schema", _name(tc))].mapper(), sample, "committed",
                          io.BytesIO(), wait_s=2.0, routes=cfg)
        mine = summary.messages - summary.other_tables
        if not mine:
            return "no messages to sample after the group's committed offsets"
        bad = len(summary.dead)
        text = f"{mine} sampled, {mine - bad} map"
        if not bad:
            return text + " cleanly"
        counts = ", ".join(f"{r}: {n}" for r, n in summary.reasons().most_common())
        first = summary.dead[0]
        text += (f", {bad} would be dead letters ({counts}); e.g. partition {first.partition} "
                 f"offset {first.offset}: {first.reason}")
        if bad / mine > max_bad_ratio:
            raise Misfit(f"{text}. That is {bad / mine:.1%}, above --max-bad-ratio "
                         f"{max_bad_ratio:g}: fix the mapping or the table (sinker schema describe, "
                         "sinker dry-run)")
        return f"{text}; {bad / mine:.1%} is within --max-bad-ratio {max_bad_ratio:g}"

    def dead_letter_output():
        dl = cfg.dead_letter
        if dl.type == "kafka":
            if not state["consumer"].partitions_for_topic(dl.topic):
                raise Misfit(f"dead_letter.topic {dl.topic!r} does not exist: create it (sinker "
                             "does not), or fix dead_letter.topic")
            return f"topic {dl.topic} exists"
        return _writable_file(dl.path)

    why_skipped = {"consumer": "no Kafka broker answered", "tps": "the topics check failed",
                   "location": "the FE check failed", "schema": "the table check failed",
                   "model": "the change-data check failed"}
    tables = target_configs(cfg)
    plan = [("kafka brokers", kafka_brokers, ()),
            ("topics and partitions", kafka_topics, ("consumer",)),
            ("consumer group", kafka_group, ("consumer",)),
            ("Doris FE HTTP + auth", fe_http, ()),
            ("Doris BE reachable", be_reachable, () if cfg.doris.be_hosts else ("location",)),
            ("Doris query port", query_port, ())]
    for tc in tables:
        name = _name(tc)
        of = f" ({name})" if len(tables) > 1 else ""
        cdc = envelope.is_cdc(tc.mapping) or tc.mapping.sequence_from is not None
        plan += [
            *([(f"change data fits the table{of}", partial(change_data, tc), ())] if cdc else []),
            (f"table exists{of}", partial(table_exists, tc), (("model", name),) if cdc else ()),
            (f"mapped columns exist{of}", partial(mapped_columns, tc), (("schema", name),)),
            (f"schema fits messages{of}", partial(sample_messages, tc), (("schema", name), "tps"))]
    plan.append(("dead-letter output", dead_letter_output,
                 ("consumer",) if cfg.dead_letter.type == "kafka" else ()))
    for name, fn, needs in plan:
        missing = [n for n in needs if n not in state]
        if missing:
            why = why_skipped[missing[0] if isinstance(missing[0], str) else missing[0][0]]
            steps.append(Step(name, False, f"skipped: {why}", skipped=True))
            continue
        steps.append(_timed(name, fn))
    if "consumer" in state:
        state["consumer"].close()
    return steps


def _name(cfg) -> str:
    return f"{cfg.doris.database}.{cfg.doris.table}"


def _writable_file(path: str) -> str:
    """Can ``run`` open this dead-letter file for appending (creating it and its directories)?
    Tried for real, not with os.access, which says yes to root on a read-only mount."""
    import tempfile
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise Misfit(f"dead_letter.path {path} is a directory: name a file in it")
    if os.path.exists(full):
        try:
            with open(full, "ab"):
                pass
        except OSError as e:
            raise Misfit(f"dead_letter.path {path} cannot be appended to ({e}): fix its permissions "
                         "or dead_letter.path") from None
        return f"file {path} can be appended to"
    parent = os.path.dirname(full)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    try:
        if not os.path.isdir(parent):
            raise NotADirectoryError(f"{parent} is not a directory")
        fd, probe = tempfile.mkstemp(prefix=".sinker-check-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise Misfit(f"dead_letter.path {path} cannot be created ({e}): fix the directory's "
                     "permissions or dead_letter.path") from None
    return f"file {path} can be created"
