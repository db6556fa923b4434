"""Stream Load labels: a pure function of (prefix, table, offset ranges).

Why deterministic: a retry after a timeout, a restart that re-reads the same offsets, and a replay
all send the same rows under the same label, so Doris answers "Label Already Exists" instead of
loading them twice. Doris keeps a Stream Load label for ``streaming_label_keep_max_second``
(12 hours by default), so this protects re-deliveries within that window, not forever.

A label is at most 128 characters of ``[-_A-Za-z0-9:]``. The readable part (prefix, db, table,
topic, partition, first and last offset) is for people running ``SHOW TRANSACTION``; a hash of the
exact inputs is always appended, because the readable part alone is ambiguous (``_`` joins names
that may contain ``_``, and characters outside the set are replaced).
"""
from __future__ import annotations

import hashlib
import json
import re
import threading

MAX_LEN = 128
_VALID = re.compile(r"[-_A-Za-z0-9:]{1,128}")
_BAD = re.compile(r"[^-_A-Za-z0-9]")   # ':' is valid for Doris but kept out of readable parts
SHORT_HASH = 12    # hex chars when the readable part carries every offset
LONG_HASH = 32     # hex chars when the readable part had to be cut (the hash alone keeps labels apart)


def valid_label(s: str) -> bool:
    return isinstance(s, str) and _VALID.fullmatch(s) is not None


def _clean(s: str) -> str:
    return _BAD.sub("_", s)


def _digest(text: str, n: int) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()[:n]


def _canonical(prefix: str, table: str, ranges: dict, salt: str = "") -> str:
    items = sorted(([str(t), int(p), int(a), int(b)] for (t, p), (a, b) in ranges.items()))
    parts = [str(prefix), str(table), items] + ([salt] if salt else [])
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=True)


def make_label(prefix: str, table_full_name: str, ranges: dict, salt: str = "") -> str:
    """``{prefix}_{db}_{table}_{topic}_p{partition}-{first}-{last}[_...]_{hash}``, cut to 128.

    Same inputs give the same label in every process (no randomness, no Python ``hash()``).
    ``salt`` goes into the hash only: the batcher passes the Kafka timestamps of each range's
    first record, so a topic deleted and re-created (offsets start again at 0) within Doris's
    label window gets new labels instead of being mistaken for rows already loaded.
    """
    canon = _canonical(prefix, table_full_name, ranges, salt)
    parts = [_clean(prefix or "sinker"), _clean(table_full_name)]
    topic = None
    for (t, p), (a, b) in sorted(ranges.items(), key=lambda kv: (str(kv[0][0]), int(kv[0][1]))):
        if t != topic:
            parts.append(_clean(str(t)))
            topic = t
        parts.append(f"p{int(p)}-{int(a)}-{int(b)}")
    readable = "_".join(x for x in parts if x)
    label = f"{readable}_{_digest(canon, SHORT_HASH)}"
    if len(label) <= MAX_LEN:
        return label
    head = readable[:MAX_LEN - LONG_HASH - 1].rstrip("_-")
    return f"{head}_{_digest(canon, LONG_HASH)}"


def range_head(prefix: str, table_full_name: str, topic: str, partition: int) -> str:
    """What every ``make_label`` label of one (prefix, table, topic, partition) range starts with."""
    return f"{_clean(prefix or 'sinker')}_{_clean(table_full_name)}_{_clean(str(topic))}_p{int(partition)}-"


_RANGE_TAIL = re.compile(r"(\d+)-(\d+)_[0-9a-f]{%d}" % SHORT_HASH)


def parse_range(label: str, head: str) -> tuple[int, int] | None:
    """(first, last) of a one-range label that starts with ``head`` (``range_head``), or None: a
    label of rows after a rejection, a label cut to 128 characters, or someone else's label."""
    if not label.startswith(head):
        return None
    m = _RANGE_TAIL.fullmatch(label, len(head))
    return (int(m.group(1)), int(m.group(2))) if m else None


def subset_label(label: str, offsets) -> str:
    """The label for loading a subset of a batch's rows (after Doris rejected some, or a half):
    a pure function of the batch's label and the exact (topic, partition, offset) of every row
    in it, so the same rows get the same label whichever path led to them — a retry round in one
    run and halving in the next cannot load the same rows under two labels."""
    key = json.dumps(sorted(offsets), separators=(",", ":"))
    return derived_label(label, "s" + _digest(key, SHORT_HASH))


def derived_label(label: str, tag: str) -> str:
    """``{label}_{tag}``, deterministic and valid: when it would pass 128 characters, a readable
    head plus a hash of (label, tag). Used for the retry rounds and halves of a rejected batch."""
    suffix = f"_{_clean(tag)}"
    out = f"{label}{suffix}"
    if len(out) <= MAX_LEN and valid_label(out):
        return out
    digest = _digest(f"{label}\x00{tag}", LONG_HASH)
    head = _clean(label)[:MAX_LEN - LONG_HASH - len(suffix) - 1].rstrip("_-")
    return f"{head}_{digest}{suffix}"


class LabelWindow:
    """How long Doris will remember this process's labels, per database, from its load rate.

    Doris forgets a Stream Load label after 12 hours, or sooner once the database holds more than
    ``label_num_threshold`` (2,000) newer finished loads, whichever comes first. Exactly-once
    re-uses a label when a batch is read again after a crash or a rebalance, usually seconds
    later; if 2,000 loads into the database happen in less time than that, Doris no longer knows
    the label and loads the batch again. ``observe`` counts a load; ``window_s`` is the time the
    last 2,000 labels span at the current rate. Counts only this process's loads: other writers
    into the same database shorten the window further. One per process (the pipeline's), shared
    by its writers: thread-safe."""

    KEEP_S = 12 * 3600.0
    THRESHOLD = 2000
    SPAN_S = 300.0            # the rate is measured over the last five minutes
    WARN_S = 600.0            # say so when Doris remembers less than this much of our loads ...
    WARN_EVERY_S = 600.0      # ... at most this often per database

    def __init__(self):
        self._times: dict[str, list[float]] = {}
        self._warned: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(self, db: str, now: float) -> tuple[float, bool]:
        """Count one load: the window now, and whether to warn about it now."""
        with self._lock:
            times = self._times.setdefault(db, [])
            times.append(now)
            cut = now - self.SPAN_S
            if times[0] < cut:
                del times[: next(i for i, t in enumerate(times) if t >= cut)]
            window = self._window_locked(db, now)
            warn = window < self.WARN_S and now - self._warned.get(db, -1e18) > self.WARN_EVERY_S
            if warn:
                self._warned[db] = now
        return window, warn

    def window_s(self, db: str, now: float) -> float:
        with self._lock:
            return self._window_locked(db, now)

    def _window_locked(self, db: str, now: float) -> float:
        times = self._times.get(db) or []
        span = max(1.0, min(self.SPAN_S, now - times[0])) if times else self.SPAN_S
        rate = len(times) / span
        return self.KEEP_S if rate <= 0 else min(self.KEEP_S, self.THRESHOLD / rate)
