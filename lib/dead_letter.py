"""Dead letters as values: a message sinker could not load, with its reason, and its JSON record.

Pure (the mapper makes them, the writer adds Doris's rejections); the durable outputs are in
lib/dead_letter_sinks.py. Every record keeps the original bytes (``value_b64``).
"""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import NamedTuple

from . import __version__


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


def category(reason: str) -> str:
    """The category part of a dead-letter reason (the text before the first colon)."""
    head, sep, _ = reason.partition(":")
    return head.strip() if sep else "other"


def to_json(dl: DeadLetter, table: str) -> bytes:
    """One dead letter as one JSON object on one line (no trailing newline).

    ``value_b64`` is always there when the message had a value, so the exact bytes can be
    replayed even when they are not valid UTF-8; ``value`` is the readable text when they are.
    """
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
    if dl.value is not None:
        raw = bytes(dl.value)
        rec["value_b64"] = base64.b64encode(raw).decode("ascii")
        try:
            rec["value"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    rec["sinker_version"] = __version__
    rec["at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # json escapes \n and \r inside strings, so the record stays on one line
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
