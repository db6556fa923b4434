"""Which Kafka offsets may be committed: never past a row Doris does not have yet.

Writers confirm batches in any order (several loads are in flight), but a partition's committed
offset may only move to ``last + 1`` of the longest run of that partition's batches, in seal
order, that are all confirmed. A batch may cover several partitions; it holds each of them back
until it is confirmed. Offsets inside a partition may have gaps (compaction, transaction markers):
only seal order matters, never offset arithmetic.
"""
from __future__ import annotations

import threading
from collections import deque

Key = tuple[str, int]   # (topic, partition)


class OffsetTracker:
    """Thread-safe (one lock): the batcher adds, writers confirm, the consumer commits."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queues: dict[Key, deque] = {}       # key -> deque of (seq, last) in seq order
        self._keys: dict[int, tuple[Key, ...]] = {}  # unconfirmed seq -> partitions it covers
        self._released: dict[Key, int] = {}       # key -> next offset safe to commit
        self._committed: dict[Key, int] = {}      # key -> what the consumer last committed

    def add(self, seq: int, ranges: dict[Key, tuple[int, int]]) -> None:
        """Register a sealed batch; called in seq order."""
        with self._lock:
            self._keys[seq] = tuple(ranges)
            for key, (_first, last) in ranges.items():
                q = self._queues.setdefault(key, deque())
                if q and q[-1][0] > seq:          # out-of-order add: keep the queue sorted
                    items = sorted([*q, (seq, last)])
                    q.clear()
                    q.extend(items)
                else:
                    q.append((seq, last))

    def confirm(self, seq: int) -> None:
        """Doris has this batch's rows (and its dead letters are durable). Unknown seqs are ignored."""
        with self._lock:
            keys = self._keys.pop(seq, None)
            if keys is None:
                return
            for key in keys:
                q = self._queues.get(key)
                while q and q[0][0] not in self._keys:   # head confirmed (or revoked away)
                    _seq, last = q.popleft()
                    self._released[key] = last + 1

    def committable(self) -> dict[Key, int]:
        """Positions that moved past what was marked committed. No side effects: a failed
        commit is simply retried with the next call."""
        with self._lock:
            return {k: v for k, v in self._released.items()
                    if k not in self._committed or v > self._committed[k]}

    def peek_committable(self) -> dict[Key, int]:
        """Every released position, committed or not (progress reporting)."""
        with self._lock:
            return dict(self._released)

    def mark_committed(self, positions: dict[Key, int]) -> None:
        with self._lock:
            for key, off in positions.items():
                self._committed[key] = off

    def pending_count(self) -> int:
        """Batches added but not confirmed yet."""
        with self._lock:
            return len(self._keys)

    def revoke(self, keys) -> None:
        """Partitions moved to another consumer: forget their batches and positions so nothing is
        committed for them. Batches covering other partitions still hold those back."""
        with self._lock:
            for key in keys:
                key = (key[0], key[1])
                self._queues.pop(key, None)
                self._released.pop(key, None)
                self._committed.pop(key, None)
