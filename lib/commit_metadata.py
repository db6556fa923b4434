"""The metadata sinker stores with each committed offset: the cut points of the batches sealed
from that partition but not committed yet, so whoever reads the partition next cuts the same
batches, under the same labels (exactly-once). Pure; ``v1 <first>-<last>,...``.

Kafka keeps up to ``offset.metadata.max.bytes`` (4096 by default) per partition; a few batches
per partition are in flight at a time, about 20 bytes each.

Stored, the text ends with one NUL byte (``STORED_END``), whichever client commits it:
confluent-kafka 2.16 adds one to every metadata string it commits, and reads committed metadata
as a C string, so metadata stored without one (kafka-python's, or an older sinker's) comes back
with whatever bytes follow it in memory. kafka-python's reader adds the NUL itself (the stored
bytes are then the same from both clients); ``decode`` takes the text with or without it.
"""
from __future__ import annotations

PREFIX = "sinker v1"
MAX_BYTES = 4000
STORED_END = "\x00"


def encode(cuts: list[tuple[int, int]]) -> str:
    """``[(first, last), ...]`` in offset order → the metadata string."""
    text = PREFIX + (" " + ",".join(f"{first}-{last}" for first, last in cuts) if cuts else "")
    if len(text) > MAX_BYTES:
        raise ValueError(f"{len(cuts)} batches of one partition wait to be committed: their cut "
                         f"points ({len(text)} bytes) do not fit Kafka's offset metadata")
    return text


def decode(text: str | None) -> list[tuple[int, int]]:
    """The cuts in a metadata string; [] for none and for another writer's metadata (a group
    that sinker did not commit before, or an older sinker). Raises ValueError for sinker
    metadata that does not read back (the caller says so: batches may then form differently)."""
    if not text or not text.startswith(PREFIX):
        return []
    body = text[len(PREFIX):].removesuffix(STORED_END).strip()
    cuts = []
    for item in body.split(",") if body else ():
        first, sep, last = item.partition("-")
        if not sep or not first.isdigit() or not last.isdigit() or int(first) > int(last):
            raise ValueError(f"unreadable cut {item!r} in commit metadata {text[:200]!r}")
        cuts.append((int(first), int(last)))
    cuts = list(dict.fromkeys(cuts))      # the same cut twice is one chunk (a development build
                                          # of routes wrote one per table)
    if any(a[1] >= b[0] for a, b in zip(cuts, cuts[1:])):
        raise ValueError(f"overlapping cuts in commit metadata {text[:200]!r}")
    return cuts
