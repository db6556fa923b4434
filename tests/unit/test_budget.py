"""The memory budget: every batch's bytes come back when the batch is freed, whichever path
frees it; the consumer pauses over the budget but keeps reading a partition whose recorded
batch is not complete yet (pausing it would hold the budget for ever)."""
from __future__ import annotations

import gc
import platform
import time

from sinker_lib.batcher import Batch
from sinker_lib.budget import (DEAD_LETTER_BYTES, POLLED_OVERHEAD, ROW_OVERHEAD, Budget,
                               one_malloc_arena)
from tests.fakes import FakeMapper, recs
from tests.unit.test_consumer import TP0, TP1, make, step


def test_a_batch_gives_its_bytes_back_when_it_is_freed_on_any_path():
    budget = Budget(10_000)
    a = Batch("db", "t", FakeMapper(), 0.0, budget)
    a.add("t", 0, recs("t", 0, range(3)))
    b = Batch("db", "t", FakeMapper(), 0.0, budget)
    b.add("t", 1, recs("t", 1, range(2)))
    # lines b"v\n" and the values b"v" they keep, and the overhead per record
    assert budget.held == (a.nbytes + 3) + (b.nbytes + 2) + 5 * ROW_OVERHEAD == budget.peak
    del a                                   # e.g. confirmed and dropped by its writer
    assert budget.held == b.nbytes + 2 + 2 * ROW_OVERHEAD
    try:
        raise RuntimeError(b)               # an exception path holding it for a while
    except RuntimeError:
        pass
    del b
    gc.collect()
    assert budget.held == 0 and budget.peak > 0


def test_a_dead_letter_counts_with_its_tuple_and_reason():
    budget = Budget(10_000)
    a = Batch("db", "t", FakeMapper(), 0.0, budget)
    a.add("t", 0, recs("t", 0, range(2), value=b"bad"))
    assert a.rows == 0 and len(a.dead) == 2
    assert budget.held == 2 * len(b"bad") + 2 * ROW_OVERHEAD + 2 * DEAD_LETTER_BYTES


class Held:
    def __init__(self):
        self.held, self.pauses = 0, 0

    def over(self):
        return self.held > 100

    def hold_polled(self, result, nbytes, records):
        return result


def test_over_the_budget_the_consumer_pauses_except_a_partition_completing_a_recorded_batch():
    t, fake, out = make(record_cuts=True, committed={TP0: (4, "sinker v1 4-9"), TP1: 0},
                        queue_size=100, batch=2)
    t.budget = budget = Held()
    fake.rebalance([TP0, TP1])
    step(t)
    budget.held = 1000
    step(t)
    assert fake.paused() == {TP1}            # TP0 must reach offset 9, where its batch is sealed
    step(t, 3)
    assert TP0 not in t._must_read           # ... read up to 9 now: it may pause as well
    step(t)
    assert fake.paused() == {TP0, TP1} and budget.pauses == 1
    budget.held = 0                           # loads freed memory
    step(t)
    assert fake.paused() == set()


def test_poll_results_count_from_the_poll_until_the_batcher_frees_them():
    """Queued poll results hold memory the batches will hold next: counted from the poll on,
    reading pauses over the budget although no batch holds anything yet, and resumes once the
    batcher has taken them and let them go."""
    t, fake, out = make(queue_size=100, batch=3)
    t.budget = budget = Budget(3 * (len(b"v") + POLLED_OVERHEAD) * 2 - 1)
    fake.rebalance([TP0])
    step(t, 2)               # the joining poll's records are read again once positioned
    assert out.qsize() == 2 and budget.held == 3 * (len(b"v") + POLLED_OVERHEAD)
    step(t)
    assert budget.over() and budget.held == budget.peak == 2 * 3 * (len(b"v") + POLLED_OVERHEAD)
    step(t)
    assert fake.paused() == {TP0} and budget.pauses == 1
    items = [out.get_nowait() for _ in range(out.qsize())]
    assert [r.offset for x in items if isinstance(x, dict) for r in x[TP0]] == list(range(6))
    del items                                  # the batcher mapped them and let them go
    gc.collect()
    assert budget.held == 0
    step(t)
    assert fake.paused() == set()


def _eventually(condition, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_mapped_poll_result_stops_counting_while_the_batcher_waits_for_a_writer():
    """The batcher's batch holds the records now: the poll result they came in must not count
    as well while the batcher blocks on a full sealed queue (reading would stay paused on
    memory nothing holds)."""
    import queue

    from sinker_lib import batcher as b
    from sinker_lib.config import BatchConfig
    from sinker_lib.kafka_client import TopicPartition
    from tests.fakes import FakeSchema, observers
    from tests.unit.test_batcher import RecordingTracker
    budget, schema = Budget(10**9), FakeSchema()
    inq, outq = queue.Queue(), queue.Queue(maxsize=1)
    outq.put("a batch no writer has taken yet")
    t = b.BatcherThread(inq, outq, b.OpenBatch(BatchConfig(max_rows=3, max_interval_s=100),
                                              b.batch_factory("db", "t", schema, budget=budget)),
                        RecordingTracker(), observers(), schema, budget=budget)
    t.start()
    inq.put(budget.hold_polled({TopicPartition("t", 0): recs("t", 0, range(3), value=b"x" * 1000)},
                               3000, 3))
    batch_only = 3 * (1001 + 1000 + ROW_OVERHEAD)     # its lines, the values, per record
    assert _eventually(lambda: budget.held == batch_only), budget.held
    assert outq.full()                                 # ... while it still waits for a writer
    outq.get()
    assert outq.get(timeout=10).rows == 3
    inq.put(b.STOP)
    assert outq.get(timeout=10) is b.STOP
    t.join(10)
    assert not t.is_alive() and t.error is None


def test_a_poll_result_the_batcher_is_done_with_stops_counting_within_the_consumer_turn():
    """The consumer's turn goes on after it handed a poll result on (commits, end offsets: broker
    round trips); meanwhile the batcher may map it and let it go."""
    t, fake, out = make(queue_size=100, batch=3)
    t.budget = budget = Budget(10**9)
    fake.rebalance([TP0])
    step(t, 2)
    while not out.empty():
        out.get_nowait()
    seen = []
    refresh = t._refresh_end_offsets

    def batcher_maps_it_meanwhile():
        while not out.empty():
            out.get_nowait()
        seen.append(budget.held)
        refresh()
    t._refresh_end_offsets = batcher_maps_it_meanwhile
    step(t)
    assert seen == [0]


def test_poll_results_dropped_at_a_rebalance_stop_counting():
    """A rebalance while poll results wait in the consumer (the queue full): the revoked ones are
    dropped, not handed on, and the budget counts only the poll results still alive."""
    t, fake, out = make(queue_size=2)
    t.budget = budget = Budget(10**9)
    fake.rebalance([TP0, TP1])
    step(t, 3)
    assert any(isinstance(x, dict) for x in t._items)      # one waits in the consumer
    fake.rebalance([TP0])
    step(t)
    assert t.obs.accounting.snapshot()["rewound"] > 0
    gc.collect()
    alive = [x for x in [*out.queue, *t._items] if isinstance(x, dict)]
    assert budget.held == sum(len(r.value) + POLLED_OVERHEAD
                              for x in alive for rs in x.values() for r in rs)


def test_one_malloc_arena_unless_the_environment_chose_a_number(monkeypatch):
    """glibc takes the cap (mallopt returns 1); a MALLOC_ARENA_MAX the user set is left alone."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert one_malloc_arena() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert one_malloc_arena() is (platform.libc_ver()[0] == "glibc")
