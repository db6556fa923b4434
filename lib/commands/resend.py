"""``sinker dead-letters resend``: load corrected dead letters back into Doris.

The lines of a dead-letter file (``dead_letter.to_json``) go through the same ``Mapper`` and the
same writer as ``run`` (ErrorURL, halving, retries under one label), in chunks of ``CHUNK``
lines. A chunk's label is a pure function of the file's name, its line range and the Kafka
identities (topic, partition, offset) of its lines, so running the same file again loads
nothing twice while Doris remembers the labels, and a different file that reuses the name does
not collide. Rows that fail again are written, after the run, to ``<file>.failed.jsonl``.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import queue
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from .. import labels
from ..batcher import Batch
from ..dead_letter import category
from ..config import with_labels
from ..dead_letter_sinks import FileSink
from ..errors import ConfigError

CHUNK = 5000          # lines per load; fixed, so a re-run forms the same chunks and labels
LABEL_PREFIX = "resend"


class Resent(NamedTuple):
    """A dead letter read back as the record it was (the file keeps no Kafka key unless it has
    ``key``/``key_b64``)."""
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    line: int


@dataclass
class ResendSummary:
    lines: int = 0
    sent: int = 0                 # records handed to the mapper
    loaded: int = 0               # in Doris (rows an earlier run of this file loaded count too)
    failed: list = field(default_factory=list)       # DeadLetters of rows that failed again
    skipped: Counter = field(default_factory=Counter)  # reason -> lines not sent
    failed_path: str | None = None
    chunks: int = 0

    def failed_reasons(self) -> Counter:
        return Counter(category(d.reason) for d in self.failed)


def failed_path_for(path: str) -> str:
    stem = path[:-len(".jsonl")] if path.endswith(".jsonl") else path
    return f"{stem}.failed.jsonl"


def _bytes(rec: dict, text_key: str, b64_key: str, line: int) -> bytes | None:
    """The text field when present (the one a person edits), else the base64 one."""
    text = rec.get(text_key)
    if isinstance(text, (dict, list)):         # a value corrected into JSON instead of a string
        return json.dumps(text, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if isinstance(text, str):
        return text.encode("utf-8")
    b64 = rec.get(b64_key)
    if isinstance(b64, str):
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"line {line}: {b64_key} is not valid base64") from None
    return None


def read_file(path: str, table: str | None, summary: ResendSummary) -> list[Resent]:
    """The records of the file to send; lines not sent are counted in ``summary.skipped``.
    ``table``: only lines recorded for this table (None: every line)."""
    out = []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the dead-letter file {path}: {e}") from None
    with f:
        for n, text in enumerate(f, 1):
            summary.lines += 1
            if not text.strip():
                summary.skipped["blank line"] += 1
                continue
            try:
                rec = json.loads(text)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                if table is not None and rec.get("table") not in (None, table):
                    summary.skipped[f"recorded for table {rec.get('table')}"] += 1
                    continue
                value = _bytes(rec, "value", "value_b64", n)
                key = _bytes(rec, "key", "key_b64", n)
                r = Resent(str(rec["topic"]), int(rec["partition"]), int(rec["offset"]),
                           None if rec.get("timestamp") is None else int(rec["timestamp"]),
                           key, value, n)
            except (ValueError, KeyError, TypeError) as e:
                summary.skipped[f"not a dead-letter record ({type(e).__name__}: {e})"[:120]] += 1
                continue
            if value is None:
                summary.skipped["no value"] += 1
                continue
            out.append(r)
    return out


def chunk_label(path: str, table: str, first_line: int, last_line: int, records) -> str:
    salt = ",".join(f"{r.topic}:{r.partition}:{r.offset}" for r in records)
    return labels.make_label(LABEL_PREFIX, table, {(os.path.basename(path), 0): (first_line, last_line)},
                             salt=salt)


def chunks(records: list[Resent]):
    """(first line, last line, records) per aligned range of CHUNK lines."""
    group: list[Resent] = []
    start = None
    for r in records:
        s = (r.line - 1) // CHUNK * CHUNK + 1
        if start is not None and s != start:
            yield start, start + CHUNK - 1, group
            group = []
        start = s
        group.append(r)
    if group:
        yield start, start + CHUNK - 1, group


class _Collect:
    """The writer's dead-letter sink for a resend: kept until the run ends, then written in one
    file, so a run that stops half-way leaves no partial failures file to resend twice."""

    def __init__(self):
        self.dead: list = []

    def write(self, dead, table):
        self.dead.extend(dead)

    def flush(self):
        pass


def resend(cfg, path: str, mapper, *, only_table: str | None, dry_run: bool = False,
           loader=None) -> ResendSummary:
    """Send the file's records for ``cfg.doris``'s table; see the module docstring."""
    from ..lifecycle import Shutdown
    from ..observability import Observers
    from ..offsets import OffsetTracker
    from ..stream_load import StreamLoader
    from ..writer import WriterThread

    summary = ResendSummary()
    table = f"{cfg.doris.database}.{cfg.doris.table}"
    records = read_file(path, only_table, summary)
    summary.sent = len(records)
    if dry_run:
        for _first, _last, group in chunks(records):
            summary.chunks += 1
            batch = Batch(cfg.doris.database, cfg.doris.table, mapper, time.monotonic())
            batch.add("resend", 0, group, each=True)
            summary.failed += batch.dead
        summary.loaded = 0
        return summary
    sink = _Collect()
    tracker = OffsetTracker()
    own_loader = loader is None
    loader = loader or StreamLoader(with_labels(cfg).doris)   # labels keep a re-run from loading twice
    writer = WriterThread(0, cfg.writer, queue.Queue(), loader, sink, tracker, Observers.create(),
                          Shutdown(), load_timeout_s=cfg.doris.load_timeout_s)
    try:
        for seq, (first, last, group) in enumerate(chunks(records)):
            batch = Batch(cfg.doris.database, cfg.doris.table, mapper, time.monotonic())
            batch.add("resend", 0, group, each=True)
            batch.seq, batch.reason = seq, "resend"
            batch.label = chunk_label(path, table, first, last, group)
            tracker.add(seq, batch.ranges)
            writer.deliver(batch)        # raises when Doris cannot take it: nothing is written
            summary.chunks += 1
    finally:
        if own_loader:
            loader.close()
    summary.failed = sink.dead
    summary.loaded = summary.sent - len(sink.dead)
    if sink.dead:
        summary.failed_path = failed_path_for(path)
        tmp = f"{summary.failed_path}.tmp-{os.getpid()}"
        out = FileSink(tmp, log_per_minute=0)
        try:
            out.write(sink.dead, table)
            out.flush()
        finally:
            out.close()
        os.replace(tmp, summary.failed_path)
    return summary
