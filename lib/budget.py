"""The memory budget: bytes held by batches that are open, sealed and waiting, or loading, and by
the poll results waiting for the batcher.

Every batch counts what it holds as it grows (``Batch.add``) and gives it back when its writer is
done with it (``release``), or else when it is freed — dropped at a rebalance or a shutdown,
whatever the path — through a ``weakref.finalize``, so no exit path can leak budget and stall
the consumer. The consumer
thread pauses its partitions while the total is over the limit (except partitions it must read
to complete a batch recorded by the previous reader) and resumes them when loads free memory.

What a batch holds is counted as it is added, not measured: the bytes of its mapped lines and of
the message values it keeps for the rejected-row path and the dead-letter output
(lib/records.py's Slice), and a fixed overhead per record: two bytes objects' headers, their list
slots and a timestamp, 90 bytes in all (measured with tracemalloc: 391 bytes per small message
held, for 301 bytes of lines and values); and per dead letter its tuple and reason (~300 bytes).
A slice whose lines are its values and a newline (the json passthrough) keeps no values: only the
lines and LINE_OVERHEAD per record (measured with tracemalloc: 203 bytes per small message
held, for 154 bytes of lines).

Poll results waiting for the batcher count too, from the moment the consumer has them until
they are freed (``hold_polled``): their values and POLLED_OVERHEAD per record. Without them,
reading paused at the limit while up to ``batch.queue_size`` poll results were still to be
mapped into batches (88 MB of large messages over the limit, measured)."""
from __future__ import annotations

import ctypes
import os
import threading
import weakref

ROW_OVERHEAD = 90
LINE_OVERHEAD = 49
DEAD_LETTER_BYTES = 300
# a client's record beside its value (tracemalloc): kafka-python's 13-field tuple, headers list,
# ints and bytes header 324 B; confluent-kafka's Message and its topic string 245 B
POLLED_OVERHEAD = 330


class Polled(dict):
    """A poll result ({partition: records}) on its way to the batcher, counted while alive."""
    __slots__ = ("__weakref__",)

M_ARENA_MAX = -8               # glibc's mallopt parameter (malloc.h)


def one_malloc_arena() -> bool:
    """Serve every thread from one glibc malloc arena, unless MALLOC_ARENA_MAX says otherwise.
    With glibc's default, an arena per thread up to 8 per core, memory one thread frees (a loaded
    batch, a mapped poll result) is not reused by the others: 500k large json messages peaked
    469-480 -> 366-367 MB on confluent-kafka and 455-467 -> 357-399 MB on kafka-python, at the
    same speed (small json on confluent-kafka: -3% on average, within the noise). Called before
    the pipeline's threads start; False where the C library has no mallopt."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        return ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1) == 1
    except (OSError, AttributeError):
        return False


class Budget:
    """Thread-safe: batcher threads add, finalizers (on any thread) release."""

    def __init__(self, limit: int):
        self.limit = limit
        self._held = 0
        self.peak = 0          # the most held at once (``/status``, tests)
        self.pauses = 0        # times reading paused for this budget
        self._lock = threading.Lock()

    def track(self, holder) -> list:
        """A cell holding ``holder``'s count (a batch, a poll result), released when it is freed."""
        cell = [0]
        weakref.finalize(holder, self._release, cell)
        return cell

    def add(self, cell: list, nbytes: int, records: int, dead: int,
            per_record: int = ROW_OVERHEAD) -> None:
        """``nbytes``: of the lines and values these records added to the batch; ``dead``: how
        many of them became dead letters; ``per_record``: LINE_OVERHEAD when no value is kept."""
        n = nbytes + per_record * records + DEAD_LETTER_BYTES * dead
        cell[0] += n
        with self._lock:
            self._held += n
            if self._held > self.peak:
                self.peak = self._held

    def hold_polled(self, result: dict, nbytes: int, records: int) -> Polled:
        """``result`` as a Polled counted until it is freed (mapped, or dropped at a
        rebalance); ``nbytes``: its values' bytes."""
        polled = Polled(result)
        self.add(self.track(polled), nbytes, records, 0, POLLED_OVERHEAD)
        return polled

    def release(self, batch) -> None:
        """The batch is done with (loaded, dead-lettered or dropped): its memory is about to go,
        whoever still holds a reference to it for a moment."""
        if batch.held is not None:
            self._release(batch.held)

    def _release(self, cell: list) -> None:
        with self._lock:
            self._held -= cell[0]
            cell[0] = 0

    @property
    def held(self) -> int:
        return self._held

    def over(self) -> bool:
        return self._held > self.limit
