"""The per-table governor: sealed batches wait here until their table may load.

It replaces the plain queue between the batcher and the writers. A writer gets the oldest batch
whose table may load now: the table's previous load started at least ``min_load_interval_s``
ago (``interval_of(table)``; many small loads into one table are what trips Doris's ``-235 too
many versions``) and the table is not backing off. A writer whose load Doris refused as
overloaded (a BACKOFF answer of lib/load_result.py: -235, the running-txn limit) hands the batch
back with ``hand_back`` instead of sleeping: that table backs off (exponentially, reset by its
next load that gets through) and the writer takes another table's batch meanwhile. One table's
batches leave in seal order, also after a hand-back.

The bound (``maxsize``) counts only the batches a writer could take now. A batch held back by
time — its table backs off, or waits for its interval behind an earlier batch or load — does not
count: were it to, a few tables in backoff would fill the bound, block the batcher and stall
every other table, with the writers idle. Their memory is bounded by the budget
(``batch.max_bytes_in_flight``, lib/budget.py), which pauses the consumer. A hand-back never
blocks (the writer handing back is the one that would have to make room), and ``get`` wakes at
the earliest time a held batch may load, so time alone always frees a held batch.

STOP (from the batcher at shutdown) is handed to writers only once no batch is held: a batch
still out with a writer either ends there or is handed back to that same writer's next ``get``.
"""
from __future__ import annotations

import bisect
import itertools
import queue
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

from .batcher import STOP


@dataclass
class TableState:
    started: float | None = None   # when a writer last took one of its batches to load
    until: float = 0.0             # backing off until then
    backoffs: int = 0              # backoffs in a row; 0 again after a load that got through


def ready_at(table: TableState, interval: float) -> float:
    """The earliest time this table may start its next load."""
    if table.started is None:
        return table.until
    return max(table.until, table.started + interval)


def choose(heads: Iterable[tuple[int, str, float]], now: float) -> tuple[str | None, float | None]:
    """``heads``: (arrival order, table, ready_at) of each table's oldest held batch. Returns the
    table whose head a writer takes now (the oldest of those ready), or else None and when the
    first one becomes ready (None, None when nothing is held)."""
    best, wake = None, None
    for order, table, at in heads:
        if at <= now:
            if best is None or order < best[0]:
                best = (order, table)
        elif wake is None or at < wake:
            wake = at
    if best is not None:
        return best[1], None
    return None, wake


def counted(held: int, table: TableState, interval: float, now: float) -> int:
    """How many of a table's ``held`` batches count against the bound: those a writer could
    take now. Backing off: none. With an interval only its oldest, once the interval is over."""
    if held == 0 or table.until > now:
        return 0
    if interval <= 0:
        return held
    return 1 if ready_at(table, interval) <= now else 0


class _Ticket:
    """What the governor knows of one batch it was given, for as long as the batch lives."""
    __slots__ = ("order", "attempts", "back_at")

    def __init__(self, order: int):
        self.order = order
        self.attempts = 0                  # load attempts before it was handed back
        self.back_at: float | None = None  # when it was last handed back


class _Held(NamedTuple):
    order: int
    since: float      # when it arrived here (sealed, or handed back)
    batch: object


class Governor:
    """Thread-safe. ``put``/``get``/``qsize`` as queue.Queue (queue.Full / queue.Empty), plus
    ``hand_back``, ``handed_back`` and ``loaded`` for the writers. ``clock`` decides the rules
    (intervals, backoffs); ``timeout`` arguments are real seconds."""

    def __init__(self, maxsize: int, interval_of: Callable[[str], float], metrics,
                 clock: Callable[[], float] = time.monotonic):
        self.maxsize = maxsize
        self.interval_of = interval_of
        self.metrics = metrics
        self.clock = clock
        self._cv = threading.Condition()
        self._held: dict[str, list[_Held]] = {}       # table -> its held batches, oldest first
        self._tables: dict[str, TableState] = {}
        self._tickets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._orders = itertools.count()
        self._count = 0
        self._stopping = False

    # -- the queue the pipeline, the batcher and the metrics know ---------------------------------
    def qsize(self) -> int:
        return self._count

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        """Hold a sealed batch; blocks while the bound of batches ready for a writer is reached."""
        with self._cv:
            if item is STOP:
                self._stopping = True
                self._cv.notify_all()
                return
            if not self._cv.wait_for(lambda: self._backlog() < self.maxsize,
                                     timeout if block else 0):
                raise queue.Full
            ticket = _Ticket(next(self._orders))
            self._tickets[item] = ticket
            self._hold(item, ticket)

    def get(self, block: bool = True, timeout: float | None = None):
        """The oldest batch whose table may load now, waiting for one; STOP once stopping and
        nothing is held."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while True:
                now = self.clock()
                table, wake = choose(((h[0].order, name, ready_at(self._table(name),
                                                                   self.interval_of(name)))
                                      for name, h in self._held.items() if h), now)
                if table is not None:
                    return self._take(table, now)
                if self._stopping and not self._count:
                    return STOP
                waits = [t for t in (None if wake is None else wake - now,
                                     None if end is None else end - time.monotonic())
                         if t is not None]
                if not block or (end is not None and time.monotonic() >= end):
                    raise queue.Empty
                self._cv.wait(min(waits) if waits else None)

    # -- what writers tell it ----------------------------------------------------------------------
    def hand_back(self, batch, attempts: int, reason: str, delay_of: Callable[[int], float]) -> float:
        """Doris refused ``batch`` as overloaded and holds no transaction for it: hold it again,
        in seal order, and back its table off for ``delay_of(backoffs in a row)`` unless it
        already backs off (then this answer is the same overload, met by a load that was under
        way). Never blocks. Returns the seconds left of the table's backoff."""
        name = batch.full_name
        with self._cv:
            now = self.clock()
            t = self._table(name)
            if t.until <= now:
                t.backoffs += 1
                delay = delay_of(t.backoffs)
                t.until = now + delay
                self.metrics.observe_table_backoff(name, reason, delay)
            ticket = self._tickets[batch]
            ticket.attempts, ticket.back_at = attempts, now
            self._hold(batch, ticket)
            return t.until - now

    def handed_back(self, batch) -> tuple[int, float] | None:
        """(attempts so far, when it was handed back) of a batch a writer handed back; None for
        one fresh from the batcher."""
        with self._cv:
            ticket = self._tickets.get(batch)
            if ticket is None or ticket.back_at is None:
                return None
            return ticket.attempts, ticket.back_at

    def loaded(self, table: str) -> None:
        """A load into ``table`` got through: its next backoff starts from the first step."""
        with self._cv:
            self._table(table).backoffs = 0

    # -- under the lock ----------------------------------------------------------------------------
    def _table(self, name: str) -> TableState:
        t = self._tables.get(name)
        if t is None:
            t = self._tables[name] = TableState()
        return t

    def _hold(self, batch, ticket: _Ticket) -> None:
        held = self._held.setdefault(batch.full_name, [])
        bisect.insort(held, _Held(ticket.order, self.clock(), batch), key=lambda h: h.order)
        self._count += 1
        self._cv.notify_all()

    def _take(self, name: str, now: float):
        h = self._held[name].pop(0)
        self._count -= 1
        if h.batch.rows:         # a batch of dead letters only loads nothing: no load start
            self._table(name).started = now
        self.metrics.observe_governor_held(name, now - h.since)
        self._cv.notify_all()    # room under the bound, or the next of this table
        return h.batch

    def _backlog(self) -> int:
        now = self.clock()
        return sum(counted(len(h), self._table(name), self.interval_of(name), now)
                   for name, h in self._held.items())
