"""Dead letters as values: a message sinker could not load, with its reason, and its JSON record.

Pure (the mapper makes them, the writer adds Doris's rejections); the durable outputs are in
lib/dead_letter_sinks.py. Every record keeps the original bytes once: as text (``value``) when
they are UTF-8, else as base64 (``value_b64``); ``original_value`` reads them back.
"""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import NamedTuple

from . import __version__
from .records import fields


class DeadLetter(NamedTuple):
    """One message that went to the dead-letter output.

    ``reason`` starts with a category and a colon (``invalid_json: ...``, ``conversion: ...``,
    ``doris_rejected: ...``) so metrics can count by category without parsing prose.
    """
    topic: str
    partition: int
    offset: int
    timestamp: int | None      # Kafka timestamp, ms since the epoch
    value: bytes | None        # the original message bytes
    reason: str
    column: str | None = None  # the column whose value failed, when one did
    key: bytes | None = None   # the Kafka key (dead-letters resend restores @kafka.key columns)


def category(reason: str) -> str:
    """The category part of a dead-letter reason (the text before the first colon)."""
    head, sep, _ = reason.partition(":")
    return head.strip() if sep else "other"


def of(record, reason: str, column: str | None = None) -> DeadLetter:
    """The dead letter of one Kafka record (of either client: lib/records.py)."""
    f = fields(record)
    return DeadLetter(f.topic(record), f.partition(record), f.offset(record), f.timestamp(record),
                      f.value(record), reason, column, f.key(record))


def _fields(dl: DeadLetter, table: str) -> dict:
    rec = {
        "topic": dl.topic,
        "partition": dl.partition,
        "offset": dl.offset,
        "timestamp": dl.timestamp,
        "table": table,
        "reason": dl.reason,
        "category": category(dl.reason),
        "column": dl.column,
    }
    _put_bytes(rec, "key", dl.key)
    return rec


def _put_bytes(rec: dict, name: str, raw) -> None:
    """``name`` (text) when the bytes are valid UTF-8, else ``name_b64``; neither for None."""
    if raw is None:
        return
    raw = bytes(raw)
    text = _text(raw)
    if text is not None:
        rec[name] = text
    else:
        rec[f"{name}_b64"] = base64.b64encode(raw).decode("ascii")


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _finish(rec: dict) -> bytes:
    rec["sinker_version"] = __version__
    rec["at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # json escapes \n and \r inside strings, so the record stays on one line
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def to_json(dl: DeadLetter, table: str) -> bytes:
    """One dead letter as one JSON object on one line (no trailing newline).

    The value is stored once, so a record is about as large as the message: ``value`` (text)
    when the bytes are valid UTF-8, else ``value_b64``; neither when the message had no value.
    """
    rec = _fields(dl, table)
    _put_bytes(rec, "value", dl.value)
    return _finish(rec)


def truncated_json(dl: DeadLetter, table: str, max_bytes: int, spilled_to: str) -> bytes:
    """The record of ``to_json`` with its value cut so the line fits in ``max_bytes``: the first
    bytes of the value (whole characters), ``value_truncated: true``, ``value_bytes`` (the full
    length) and ``spilled_to`` (the file holding the full record)."""
    raw = b"" if dl.value is None else bytes(dl.value)
    text = _text(raw)
    key = "value" if text is not None else "value_b64"
    rec = _fields(dl, table)
    rec.update({key: "", "value_truncated": True, "value_bytes": len(raw),
                "spilled_to": spilled_to})
    budget = max_bytes - len(_finish(dict(rec)))
    if budget <= 0:
        return _finish(rec)
    if text is None:
        rec[key] = base64.b64encode(raw[:budget // 4 * 3]).decode("ascii")
        return _finish(rec)
    cut = raw[:budget].decode("utf-8", "ignore")     # drops a character split by the cut
    while cut:
        # escapes (\n, \", \u0001) make the JSON longer than the bytes: cut by the excess
        excess = len(json.dumps(cut, ensure_ascii=False).encode("utf-8")) - 2 - budget
        if excess <= 0:
            break
        cut = cut[:max(0, len(cut) - max(1, excess // 6))]
    rec[key] = cut
    return _finish(rec)


def original_value(rec: dict) -> bytes | None:
    """The message bytes a dead-letter record holds (the inverse of ``to_json``); a truncated
    record holds only the first bytes: the full record is in its ``spilled_to`` file."""
    if "value" in rec:
        return rec["value"].encode("utf-8")
    if "value_b64" in rec:
        return base64.b64decode(rec["value_b64"])
    return None
