"""Which Kafka offsets may be committed — never past a row Doris does not have — and which batch
cut points must be recorded in Kafka before a batch may be loaded.

Writers confirm batches in any order (several loads are in flight), but a partition's committed
offset may only move to ``last + 1`` of the longest run of that partition's batches, in seal
order, that are all confirmed — and never past the first offset of a batch of another table that
is not confirmed or not even sealed yet (``hold``): with routes, one partition feeds several
tables' batches, whose ranges overlap. A batch may cover several partitions (at-least-once); it
holds each of them back until it is confirmed. Offsets inside a partition may have gaps
(compaction, transaction markers): only seal order and first offsets matter, never offset
arithmetic.

Exactly-once adds one rule: a batch is loaded only after its cut points (first, last offset) are
in the partition's commit metadata, so whoever reads the partition next — this process after a
crash, or another member after a rebalance — cuts the same batches and Doris sees the same
labels. ``commit_plan`` says what to commit (offset and the pending cuts); ``mark_committed``
records it and wakes the writers waiting in ``wait_recorded``.

A rebalance is applied in two steps: the consumer ``fence``s revoked partitions at once (nothing is
committed for them any more), and the batcher calls ``rebalance`` when the revocation reaches it in
queue order, so every batch sealed from the old assignment is already registered and is forgotten
with it, and none from the new assignment can be mistaken for an old one.
"""
from __future__ import annotations

import threading
from collections import deque

Key = tuple[str, int]   # (topic, partition)

RECORDED, REVOKED = "recorded", "revoked"


class OffsetTracker:
    """Thread-safe (one lock): the batcher adds, writers confirm, the consumer commits."""

    def __init__(self):
        self._lock = threading.Lock()
        self._recorded_cv = threading.Condition(self._lock)
        self._queues: dict[Key, deque] = {}          # key -> deque of (seq, first, last) in seq order
        self._keys: dict[int, tuple[Key, ...]] = {}  # unconfirmed seq -> live partitions it covers
        self._unrecorded: set[int] = set()           # seqs whose cuts are not in Kafka yet
        self._released: dict[Key, int] = {}          # key -> next offset safe to commit
        self._committed: dict[Key, int] = {}         # key -> what the group holds (never go below)
        self._fenced: set[Key] = set()               # revoked, rebalance not applied yet
        self._inherited: dict[Key, deque] = {}       # cuts the previous reader recorded, not yet
                                                     # sealed here: kept in every commit's metadata
        self._held: dict[Key, dict] = {}             # key -> {open batch: its first offset there}
        self._done: dict[Key, int] = {}              # key -> last + 1 of its confirmed run

    def hold(self, owner, key: Key, first: int) -> None:
        """An open batch took its first record of ``key`` at ``first``: nothing from there on may
        be committed until it is sealed (``add`` with ``owner``) and confirmed."""
        with self._lock:
            self._held.setdefault(key, {})[owner] = first

    # -- the batcher ---------------------------------------------------------------------------
    def add(self, seq: int, ranges: dict[Key, tuple[int, int]], recorded: bool = True,
            owner=None) -> None:
        """Register a sealed batch; called in seq order. ``recorded=False``: it may be loaded only
        once its cuts were committed to Kafka (exactly-once). ``owner``: what it ``hold``-s."""
        with self._lock:
            self._keys[seq] = tuple(ranges)
            if not recorded:
                self._unrecorded.add(seq)
            for key, (first, last) in ranges.items():
                if owner is not None:
                    held = self._held.get(key)
                    if held is not None:
                        held.pop(owner, None)
                        if not held:
                            del self._held[key]
                inherited = self._inherited.get(key)
                while inherited and inherited[0][1] <= last:     # sealed here now: covered
                    inherited.popleft()
                q = self._queues.setdefault(key, deque())
                if q and q[-1][0] > seq:          # out-of-order add: keep the queue sorted
                    items = sorted([*q, (seq, first, last)])
                    q.clear()
                    q.extend(items)
                else:
                    q.append((seq, first, last))

    def rebalance(self, revoked, assigned: dict[Key, int | None], inherited=None) -> None:
        """Forget the revoked partitions (their batches release nothing any more; a batch left
        with no live partition is dropped and its writer told so), and start the assigned ones
        from the group's committed offset (nothing below it is ever committed). ``inherited``:
        the cuts the previous reader recorded for them, which every commit keeps until this
        process has sealed batches there (a commit must never forget a cut someone may have
        loaded)."""
        with self._lock:
            for key in revoked:
                key = (key[0], key[1])
                for seq, _first, _last in self._queues.pop(key, ()):
                    keys = self._keys.get(seq)
                    if keys is None:
                        continue
                    rest = tuple(k for k in keys if k != key)
                    if rest:
                        self._keys[seq] = rest
                    else:
                        del self._keys[seq]
                        self._unrecorded.discard(seq)
                self._released.pop(key, None)
                self._committed.pop(key, None)
                self._inherited.pop(key, None)
                self._held.pop(key, None)
                self._done.pop(key, None)
                self._fenced.discard(key)
            for key, offset in assigned.items():
                key = (key[0], key[1])
                self._fenced.discard(key)
                if offset is not None:
                    self._committed[key] = offset
                cuts = (inherited or {}).get(key)
                if cuts:
                    self._inherited[key] = deque(cuts)
            self._recorded_cv.notify_all()

    # -- the writers ---------------------------------------------------------------------------
    def wait_recorded(self, seq: int, timeout: float) -> str | None:
        """RECORDED when the batch may be loaded, REVOKED when its partition moved away (do not
        load it), None when ``timeout`` passed first. A batch not recorded when its partitions
        were fenced never will be (nothing is committed for them): REVOKED at once, not when
        the rebalance reaches the batcher, which may wait behind this very writer's queue."""
        with self._lock:
            if seq in self._unrecorded:
                self._recorded_cv.wait_for(
                    lambda: seq not in self._unrecorded or self._fenced_away(seq), timeout)
            if seq not in self._keys or (seq in self._unrecorded and self._fenced_away(seq)):
                return REVOKED
            return None if seq in self._unrecorded else RECORDED

    def _fenced_away(self, seq: int) -> bool:
        keys = self._keys.get(seq)
        return keys is not None and all(k in self._fenced for k in keys)

    def confirm(self, seq: int) -> None:
        """Doris has this batch's rows (and its dead letters are durable). Unknown seqs are ignored."""
        with self._lock:
            keys = self._keys.pop(seq, None)
            if keys is None:
                return
            for key in keys:
                q = self._queues.get(key)
                done = start = None
                while q and q[0][0] not in self._keys:   # head confirmed (or revoked away)
                    _seq, first, last = q.popleft()
                    # tables' ranges overlap: a later batch may end below an earlier one
                    done = last + 1 if done is None else max(done, last + 1)
                    start = first if start is None else start
                if done is None:
                    continue
                done = self._done[key] = max(done, self._done.get(key, done))
                # another table's batch may still hold rows below it (its ranges overlap)
                below = [first for _s, first, _l in q] + list(self._held.get(key, {}).values())
                released = min([done, *below])
                if released > start and released > self._released.get(key, -1):
                    self._released[key] = released

    # -- the consumer --------------------------------------------------------------------------
    def fence(self, keys) -> None:
        """Revoked just now: commit nothing for these partitions until ``rebalance`` ran."""
        with self._lock:
            self._fenced.update((k[0], k[1]) for k in keys)
            self._recorded_cv.notify_all()      # their unrecorded batches: REVOKED now

    def commit_plan(self, owned=None) -> tuple[dict[Key, tuple[int, list]], set[int]]:
        """What to commit now: ``{key: (offset, pending cuts [(first, last), ...])}`` for owned,
        unfenced partitions whose offset moved or that have batches waiting to be recorded, and
        the seqs that the commit records. No side effects: a failed commit is simply retried."""
        with self._lock:
            plan: dict[Key, tuple[int, list]] = {}
            waiting = {}
            for key, q in self._queues.items():
                if key in self._fenced or (owned is not None and key not in owned):
                    continue
                unrecorded = [seq for seq, _f, _l in q if seq in self._unrecorded]
                released, committed = self._released.get(key), self._committed.get(key)
                moved = released is not None and (committed is None or released > committed)
                if not moved and not unrecorded:
                    continue
                known = [x for x in (released, committed) if x is not None]
                offset = max(known) if known else q[0][1]
                # the batches of one chunk's tables share its cut: record it once
                plan[key] = (offset, list(dict.fromkeys(
                    [(first, last) for _s, first, last in q] + list(self._inherited.get(key, ())))))
                for seq in unrecorded:
                    waiting[seq] = waiting.get(seq, 0) + 1
            for key, released in self._released.items():
                if key in plan or key in self._fenced or (owned is not None and key not in owned):
                    continue
                committed = self._committed.get(key)
                if committed is None or released > committed:
                    plan[key] = (released, list(self._inherited.get(key, ())))
            # a batch is recorded when every partition it covers is in this commit
            seqs = {seq for seq, n in waiting.items() if n == len(self._keys.get(seq, ()))}
            return plan, seqs

    def committable(self) -> dict[Key, int]:
        """Released positions that moved past what was marked committed."""
        with self._lock:
            return {k: v for k, v in self._released.items() if k not in self._fenced
                    and (k not in self._committed or v > self._committed[k])}

    def peek_committable(self) -> dict[Key, int]:
        """Every released position, committed or not (progress reporting)."""
        with self._lock:
            return dict(self._released)

    def mark_committed(self, positions: dict[Key, int], recorded=()) -> None:
        """The commit of ``positions`` succeeded; the batches ``recorded`` may now be loaded."""
        with self._lock:
            for key, off in positions.items():
                if key in self._fenced:
                    continue
                prev = self._committed.get(key)
                self._committed[key] = off if prev is None else max(prev, off)
            if recorded:
                self._unrecorded.difference_update(recorded)
                self._recorded_cv.notify_all()

    def advance_idle(self, key: Key, handed_on: int | None, position: int) -> bool:
        """A partition whose every record handed on is confirmed may commit its read position
        when that is further: the offsets between are records the client never returned
        (markers and aborted records of Kafka transactions, compacted gaps). Without this the
        committed offset would stop short of a trailing transaction marker, and lag never reach 0."""
        with self._lock:
            if key in self._fenced or self._queues.get(key) or self._inherited.get(key) \
                    or self._held.get(key):
                return False
            known = [x for x in (self._released.get(key), self._committed.get(key)) if x is not None]
            if not known:
                return False
            base = max(known)
            if (handed_on is not None and handed_on != base) or position <= base:
                return False
            self._released[key] = position
            return True

    def covers(self, seq: int, key: Key) -> bool:
        with self._lock:
            return key in self._keys.get(seq, ())

    def live(self, seq: int) -> bool:
        """The batch is registered and none of its partitions is revoked or fenced."""
        with self._lock:
            keys = self._keys.get(seq)
            return keys is not None and not any(k in self._fenced for k in keys)

    def has_unrecorded(self) -> bool:
        """Sealed batches wait for their cuts to be committed (the consumer commits at once)."""
        return bool(self._unrecorded)

    def unrecorded_count(self) -> int:
        """Sealed batches waiting for their cuts to be committed before they may load."""
        with self._lock:
            return len(self._unrecorded)

    def pending_count(self) -> int:
        """Batches added but not confirmed yet."""
        with self._lock:
            return len(self._keys)

    def revoke(self, keys) -> None:
        """Partitions moved to another consumer (``rebalance`` with nothing assigned)."""
        self.rebalance(keys, {})
