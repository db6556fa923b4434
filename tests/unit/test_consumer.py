"""The consumer thread's decisions, one loop turn at a time, with a fake client behind the
kafka_client seam: whole poll results handed on, pause while the queue is full, commits only of
what Doris confirmed (last + 1, owned partitions only), rebalances, draining, replay bounds."""
from __future__ import annotations

import queue

import pytest

from lib import consumer as cm
from lib.commands.replay import ReplayBounds, compute_plan
from lib.config import KafkaConfig
from lib.consumer import drop_already_read
from lib.kafka_client import TopicPartition
from lib.lifecycle import Shutdown
from lib.offsets import OffsetTracker
from tests.fakes import FakeReader, Rec, observers, recs

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)
LOG = {TP0: recs("t", 0, range(10)), TP1: recs("t", 1, range(6))}


def make(log=LOG, queue_size=10, bounds=None, batch=3, committed=None):
    fake = FakeReader(log=log, batch=batch, committed=committed)
    out = queue.Queue(maxsize=queue_size)

    def factory(cfg, group):
        fake.group = group
        return fake
    t = cm.ConsumerThread(KafkaConfig(topics=("t",)), out, OffsetTracker(), observers(), Shutdown(),
                          bounds=bounds, reader_factory=factory)
    t.reader = t._connect()
    t.ready.set()
    return t, fake, out


def step(t, n=1):
    for _ in range(n):
        t._last_commit = 0.0          # commit on every turn (the real interval is 1 s)
        t._step()


def offsets(result):
    return {tp: [r.offset for r in rs] for tp, rs in result.items()}


def test_group_mode_subscribes_and_hands_on_whole_poll_results():
    t, fake, out = make()
    assert fake.subscribed == ["t"] and fake.group
    fake.rebalance([TP0, TP1])
    step(t)
    assert offsets(out.get_nowait()) == {TP0: [0, 1, 2], TP1: [0, 1, 2]}
    assert t.obs.accounting.snapshot()["consumed"] == 6


def test_a_full_queue_pauses_every_partition_and_nothing_is_lost():
    t, fake, out = make(queue_size=1)
    fake.rebalance([TP0, TP1])
    step(t)                                   # fills the queue
    step(t)                                   # this result is held
    assert t.holding()
    held_before = offsets(t._held)
    step(t)                                   # still full: every partition paused, nothing read
    assert fake.paused() == {TP0, TP1} and offsets(t._held) == held_before
    first = out.get_nowait()
    step(t)                                   # room again: the held result goes first
    assert not t.holding()
    second = out.get_nowait()
    step(t)                                   # then the partitions are resumed and read on
    assert fake.paused() == set()
    third = out.get_nowait()
    assert offsets(first) == {TP0: [0, 1, 2], TP1: [0, 1, 2]}
    assert offsets(second) == held_before == {TP0: [3, 4, 5], TP1: [3, 4, 5]}
    assert offsets(third) == {TP0: [6, 7, 8]}


def test_commits_only_the_confirmed_prefix_as_last_plus_one():
    t, fake, out = make()
    fake.rebalance([TP0])
    step(t)
    t.tracker.add(0, {("t", 0): (0, 2)})
    t.tracker.add(1, {("t", 0): (3, 5)})
    t.tracker.confirm(1)                      # out of order: nothing may be committed yet
    step(t)
    assert fake.commits == []
    t.tracker.confirm(0)
    step(t)
    assert fake.commits == [{TP0: 6}] and t.committed == {("t", 0): 6}


def test_a_failed_commit_is_retried_with_the_same_offsets():
    t, fake, out = make()
    fake.rebalance([TP0])
    step(t)
    t.tracker.add(0, {("t", 0): (0, 2)})
    t.tracker.confirm(0)
    fake.fail_commits = 1
    step(t)
    assert fake.commits == [] and t.committed == {}
    step(t)
    assert fake.commits == [{TP0: 3}]


def test_a_partition_that_moved_away_is_never_committed():
    t, fake, out = make()
    fake.rebalance([TP0, TP1])
    step(t)
    t.tracker.add(0, {("t", 1): (0, 2)})
    fake.rebalance([TP0])                     # TP1 goes to another member
    step(t)
    t.tracker.confirm(0)                      # a late confirmation of the moved partition
    step(t)
    assert all(TP1 not in c for c in fake.commits)


def test_records_already_handed_on_are_not_handed_on_again_after_a_rewind():
    t, fake, out = make()
    fake.rebalance([TP0])
    step(t)
    assert offsets(out.get_nowait()) == {TP0: [0, 1, 2]}
    fake.rebalance([TP0])                     # same partition back, rewound to the commit (none: 0)
    step(t, 2)                                # the re-read 0..2 is dropped, 3..5 handed on
    handed = []
    while not out.empty():
        handed += offsets(out.get_nowait())[TP0]
    assert handed == [3, 4, 5]


def test_draining_hands_on_nothing_more():
    t, fake, out = make()
    fake.rebalance([TP0])
    t.shutdown.drain()
    step(t, 3)
    assert out.empty() and fake.paused() == {TP0}
    assert t.obs.accounting.snapshot()["consumed"] == 0


def test_rejoin_is_requested_after_owning_nothing_for_a_while_then_backs_off(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(cm.time, "monotonic", lambda: now[0])
    t, fake, _ = make()
    t._watch_unassigned(False)                      # starts the clock
    now[0] += cm.UNASSIGNED_REJOIN_S - 1
    t._watch_unassigned(False)
    assert fake.rejoins == 0
    now[0] += 2
    t._watch_unassigned(False)
    assert fake.rejoins == 1
    now[0] += cm.UNASSIGNED_REJOIN_S + 1           # the interval doubled: not yet
    t._watch_unassigned(False)
    assert fake.rejoins == 1
    now[0] += cm.UNASSIGNED_REJOIN_S
    t._watch_unassigned(False)
    assert fake.rejoins == 2
    t._watch_unassigned(True)                       # partitions arrived: reset
    assert t._rejoin_after == cm.UNASSIGNED_REJOIN_S and t._unassigned_since is None


def replay_bounds(start, end, log):
    tps = sorted(log)
    plan = compute_plan("t", [tp.partition for tp in tps], {tp: 0 for tp in tps},
                        {tp: (log[tp][-1].offset + 1 if log[tp] else 0) for tp in tps},
                        from_offset=start, to_offset=end, chunk_rows=4)
    return ReplayBounds(plan)


def test_replay_reads_assigned_ranges_without_the_group_and_stops_at_the_end():
    bounds = replay_bounds({0: 2, 1: 0}, {0: 6, 1: 2}, LOG)
    t, fake, out = make(bounds=bounds, batch=10)
    assert not fake.group and fake.subscribed is None
    step(t)
    assert offsets(out.get_nowait()) == {TP0: [2, 3, 4, 5, 6], TP1: [0, 1, 2]}
    assert t.read_everything() and fake.paused() >= {TP0, TP1}
    t.tracker.add(0, {("t", 0): (2, 6)})
    t.tracker.confirm(0)
    step(t)
    assert fake.commits == [] and t.committed == {("t", 0): 7}   # progress only


def test_replay_is_done_when_the_position_passes_a_gap_before_the_end():
    """A transaction marker or a compacted record at end - 1 never shows up as a record."""
    gap = {TP0: [Rec("t", 0, o, 0, None, b"v") for o in (0, 1, 2, 4)] + [Rec("t", 0, 6, 0, None, b"v")]}
    bounds = replay_bounds({0: 0}, {0: 5}, gap)      # end offset 6 (exclusive); 5 is missing
    t, fake, out = make(log=gap, bounds=bounds, batch=10)
    fake.positions[TP0] = 0
    step(t)
    assert offsets(out.get_nowait()) == {TP0: [0, 1, 2, 4]}
    assert t.read_everything()


@pytest.mark.parametrize("next_offset,expect", [(None, 100), (100, 100), (105, 105), (200, None)])
def test_drop_already_read(next_offset, expect):
    rs = recs("t", 0, range(100, 110))
    got = drop_already_read(rs, next_offset)
    assert (got[0].offset if got else None) == expect
