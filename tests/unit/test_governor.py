"""The per-table governor: which batch a writer gets and when, per-table backoff, the bound, STOP.

The rules run on a fake clock; the tests that block use threads and wait for the condition that
proves the property (a thread returning), never a sleep."""
from __future__ import annotations

import queue
import threading

import pytest

from sinker_lib.batcher import STOP
from sinker_lib.governor import Governor, TableState, choose, counted, ready_at
from sinker_lib.observability.metrics import Metrics
from tests.fakes import Clock


class B:
    """The little of a Batch the governor reads."""

    def __init__(self, table: str, name: str, rows: int = 1):
        self.full_name, self.name, self.rows = table, name, rows

    def __repr__(self):
        return self.name


def governor(maxsize=2, interval=0.0, clock=None, metrics=None):
    return Governor(maxsize, lambda table: interval, metrics or Metrics(), clock=clock or Clock())


def take(g) -> str:
    item = g.get(block=False)
    return item if item is STOP else item.name


def nothing_ready(g) -> bool:
    try:
        g.get(block=False)
    except queue.Empty:
        return True
    return False


def delays(*values):
    """A delay_of that records the backoff step it is asked for."""
    asked = []

    def delay_of(n):
        asked.append(n)
        return values[n - 1]
    return delay_of, asked


def in_thread(fn):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("value", fn()), daemon=True)
    t.start()
    return t, out


# -- the decision functions -------------------------------------------------------------------------
def test_ready_at_is_after_the_backoff_and_the_interval_since_the_last_start():
    assert ready_at(TableState(), 10) == 0.0                          # never loaded: at once
    assert ready_at(TableState(started=100), 10) == 110
    assert ready_at(TableState(started=100, until=130), 10) == 130    # the backoff is longer
    assert ready_at(TableState(started=100, until=105), 10) == 110
    assert ready_at(TableState(started=100), 0) == 100


def test_choose_takes_the_oldest_ready_head_else_says_when_to_wake():
    heads = [(5, "db.a", 100.0), (2, "db.b", 120.0), (7, "db.c", 90.0)]
    assert choose(heads, now=100) == ("db.a", None)     # b is older but not ready
    assert choose(heads, now=120) == ("db.b", None)     # now the oldest ready one is b
    assert choose(heads, now=80) == (None, 90.0)        # none ready: wake when c is
    assert choose([], now=80) == (None, None)


def test_counted_leaves_out_batches_held_back_by_time():
    assert counted(3, TableState(), 0, now=50) == 3
    assert counted(3, TableState(until=60), 0, now=50) == 0                # backing off
    assert counted(3, TableState(started=45), 10, now=50) == 0             # interval not over
    assert counted(3, TableState(started=45), 10, now=55) == 1             # only the oldest
    assert counted(0, TableState(), 0, now=50) == 0


# -- the queue --------------------------------------------------------------------------------------
def test_a_table_loads_at_most_once_per_interval_and_others_go_meanwhile():
    clock = Clock()
    g = governor(maxsize=10, interval=10, clock=clock)
    for b in (B("db.a", "a1"), B("db.a", "a2"), B("db.b", "b1")):
        g.put(b)
    assert take(g) == "a1"
    assert take(g) == "b1"             # a2 is older, but db.a loaded less than 10 s ago
    assert nothing_ready(g)
    clock.advance(9.9)
    assert nothing_ready(g)
    clock.advance(0.1)
    assert take(g) == "a2"
    assert g.qsize() == 0


def test_a_batch_of_dead_letters_only_is_no_load_start():
    clock = Clock()
    g = governor(maxsize=10, interval=10, clock=clock)
    g.put(B("db.a", "dead_only", rows=0))
    g.put(B("db.a", "a1"))
    assert take(g) == "dead_only"
    assert take(g) == "a1"             # the table has not started a load yet
    g.put(B("db.a", "a2"))
    assert nothing_ready(g)


def test_a_handed_back_batch_keeps_seal_order_and_its_table_backs_off_alone():
    clock = Clock()
    g = governor(maxsize=10, clock=clock)
    a1, a2, b1 = B("db.a", "a1"), B("db.a", "a2"), B("db.b", "b1")
    for b in (a1, a2, b1):
        g.put(b)
    assert g.get(block=False) is a1
    assert g.handed_back(a1) is None                   # fresh from the batcher
    delay_of, asked = delays(5.0)
    assert g.hand_back(a1, 2, "too_many_versions", delay_of) == 5.0
    assert g.handed_back(a1) == (2, clock())
    assert take(g) == "b1"                             # db.b does not wait for db.a
    assert nothing_ready(g)                            # a2 does not jump ahead of a1
    clock.advance(5)
    assert [take(g), take(g)] == ["a1", "a2"]
    assert asked == [1]


def test_backoff_grows_per_table_and_a_load_that_gets_through_resets_it():
    clock = Clock()
    g = governor(maxsize=10, clock=clock)
    a = B("db.a", "a")
    g.put(a)
    delay_of, asked = delays(1.0, 2.0, 4.0)
    for step in (1.0, 2.0):
        g.hand_back(g.get(block=False), 1, "txn_limit", delay_of)
        clock.advance(step)
    assert asked == [1, 2]
    g.loaded("db.b")                                   # another table's success changes nothing
    g.hand_back(g.get(block=False), 1, "txn_limit", delay_of)
    assert asked == [1, 2, 3]
    clock.advance(4)
    g.loaded("db.a")
    g.hand_back(g.get(block=False), 1, "txn_limit", delay_of)
    assert asked == [1, 2, 3, 1]


def test_an_answer_met_while_the_table_backs_off_does_not_back_it_off_again():
    """Two loads of one table under way when Doris says -235: one overload, one backoff step."""
    clock = Clock()
    g = governor(maxsize=10, clock=clock)
    a1, a2 = B("db.a", "a1"), B("db.a", "a2")
    g.put(a1)
    g.put(a2)
    x, y = g.get(block=False), g.get(block=False)
    delay_of, asked = delays(3.0, 6.0)
    g.hand_back(y, 1, "too_many_versions", delay_of)
    assert g.hand_back(x, 1, "too_many_versions", delay_of) == 3.0
    assert asked == [1]
    clock.advance(3)
    assert [take(g), take(g)] == ["a1", "a2"]          # back in seal order


def test_put_blocks_at_the_bound_of_ready_batches_until_a_writer_takes_one():
    g = governor(maxsize=2)
    g.put(B("db.a", "a1"))
    g.put(B("db.b", "b1"))
    with pytest.raises(queue.Full):
        g.put(B("db.c", "c1"), block=False)
    t, _ = in_thread(lambda: g.put(B("db.c", "c1")))
    assert take(g) == "a1"
    t.join(10)
    assert not t.is_alive(), "put stayed blocked after a writer took a batch"
    assert g.qsize() == 2


def test_batches_of_tables_in_backoff_do_not_fill_the_bound():
    """Every held batch belongs to a table in backoff: the batcher still hands on other tables'
    batches (else it would wait out the backoff with the writers idle), and those load first."""
    clock = Clock()
    g = governor(maxsize=2, clock=clock)
    a1, a2 = B("db.a", "a1"), B("db.a", "a2")
    g.put(a1)
    g.put(a2)
    delay_of, _ = delays(30.0)
    out = [g.get(block=False), g.get(block=False)]     # both loading when Doris says -235
    for b in out:
        g.hand_back(b, 1, "too_many_versions", delay_of)
    g.put(B("db.b", "b1"), block=False)
    g.put(B("db.b", "b2"), block=False)
    with pytest.raises(queue.Full):                  # the ready ones still push back
        g.put(B("db.b", "b3"), block=False)
    assert g.qsize() == 4
    assert [take(g), take(g)] == ["b1", "b2"]
    clock.advance(30)                                # db.a may load again: it counts again
    with pytest.raises(queue.Full):
        g.put(B("db.c", "c1"), block=False)
    assert take(g) == "a1"
    g.put(B("db.c", "c1"), block=False)
    assert [take(g), take(g)] == ["a2", "c1"]


def test_a_waiting_writer_wakes_when_the_backoff_ends_without_any_put():
    g = Governor(1, lambda table: 0.0, Metrics())     # the real clock
    a = B("db.a", "a")
    g.put(a)
    g.hand_back(g.get(block=False), 1, "too_many_versions", lambda n: 0.05)
    t, out = in_thread(lambda: g.get(timeout=30))
    t.join(30)
    assert out.get("value") is a


def test_stop_comes_after_every_held_batch_also_one_handed_back_later():
    clock = Clock()
    g = governor(maxsize=2, clock=clock)
    a = B("db.a", "a")
    g.put(a)
    g.put(B("db.b", "b"))
    g.put(STOP)                                      # never blocks, even at the bound
    assert take(g) == "a"
    assert take(g) == "b"
    assert take(g) is STOP                           # nothing held (a is out with a writer)
    g.hand_back(a, 1, "txn_limit", lambda n: 2.0)    # ... and comes back
    assert nothing_ready(g)
    clock.advance(2)
    assert take(g) == "a"
    assert take(g) is STOP
    g.put(STOP)                                      # every writer passes it on
    assert take(g) is STOP


def test_held_and_backoff_seconds_are_counted_per_table():
    clock, m = Clock(), Metrics()
    g = governor(maxsize=10, interval=4, clock=clock, metrics=m)
    g.put(B("db.a", "a1"))
    g.put(B("db.a", "a2"))
    take(g)
    clock.advance(4)
    take(g)
    g.hand_back(put_and_take(g, B("db.b", "b1")), 1, "too_many_versions", lambda n: 7.0)
    clock.advance(7)
    take(g)
    val = m.registry.get_sample_value
    assert val("sinker_governor_held_seconds_total", {"table": "db.a"}) == 4
    assert val("sinker_governor_held_seconds_total", {"table": "db.b"}) == 7
    assert val("sinker_table_backoff_seconds_total",
               {"table": "db.b", "reason": "too_many_versions"}) == 7


def put_and_take(g, batch):
    """``batch`` put and taken at once (held for 0 s)."""
    g.put(batch)
    return g.get(block=False)
