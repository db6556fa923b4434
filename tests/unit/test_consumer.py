"""The consumer thread's decisions, one loop turn at a time, with a fake client behind the
kafka_client seam: whole poll results handed on, pause while the queue is full, commits only of
what Doris confirmed (last + 1, owned partitions only), batch cuts recorded in the commit metadata
before a batch may load, rebalances handed on in queue order, where new partitions start,
draining, replay bounds."""
from __future__ import annotations

import queue

from sinker_lib import consumer as cm
from sinker_lib.batcher import Finished, Rebalanced
from sinker_lib.commands.replay import ReplayBounds, compute_plan
from sinker_lib.config import KafkaConfig
from sinker_lib.kafka_client import TopicPartition
from sinker_lib.lifecycle import Shutdown
from sinker_lib.offsets import RECORDED, OffsetTracker
from tests.fakes import FakeReader, Rec, observers, recs

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)
LOG = {TP0: recs("t", 0, range(10)), TP1: recs("t", 1, range(6))}
META = "sinker v1"


def make(log=LOG, queue_size=10, bounds=None, batch=3, committed=None, record_cuts=False,
         start_from="earliest", batches_open=None):
    fake = FakeReader(log=log, batch=batch, committed=committed)
    out = queue.Queue(maxsize=queue_size)

    def factory(cfg, group):
        fake.group = group
        return fake
    t = cm.ConsumerThread(KafkaConfig(topics=("t",), start_from=start_from), out, OffsetTracker(),
                          observers(), Shutdown(), bounds=bounds, record_cuts=record_cuts,
                          batches_open=batches_open, reader_factory=factory)
    t.reader = t._connect()
    t.ready.set()
    return t, fake, out


def step(t, n=1):
    for _ in range(n):
        t._last_commit = 0.0          # commit on every turn (the real interval is 1 s)
        t._step()


def offsets(result):
    return {tp: [r.offset for r in rs] for tp, rs in result.items()}


def drain(out):
    """(Rebalanced items, poll results) handed on, in order."""
    items = []
    while not out.empty():
        items.append(out.get_nowait())
    return ([x for x in items if isinstance(x, Rebalanced)],
            [offsets(x) for x in items if not isinstance(x, Rebalanced)])


def test_group_mode_subscribes_and_hands_on_the_rebalance_then_whole_poll_results():
    t, fake, out = make()
    assert fake.subscribed == ["t"] and fake.group
    fake.rebalance([TP0, TP1])
    step(t, 2)            # the joining poll's records are dropped: read again once positioned
    items = [out.get_nowait(), out.get_nowait()]
    assert items[0] == Rebalanced(frozenset(), {("t", 0): (None, []), ("t", 1): (None, [])})
    assert offsets(items[1]) == {TP0: [0, 1, 2], TP1: [0, 1, 2]}
    assert t.obs.accounting.snapshot()["consumed"] == 6


def test_a_full_queue_pauses_every_partition_and_nothing_is_lost():
    t, fake, out = make(queue_size=2)
    fake.rebalance([TP0, TP1])
    step(t, 2)                                # the rebalance and the first result fill the queue
    step(t)                                   # this result is held
    assert t.holding()
    step(t)                                   # still full: every partition paused, nothing read
    assert fake.paused() == {TP0, TP1}
    first = [out.get_nowait(), out.get_nowait()]
    step(t)                                   # room again: the held result goes first
    assert not t.holding()
    step(t)                                   # then the partitions are resumed and read on
    assert fake.paused() == set()
    _, results = drain(out)
    assert offsets(first[1]) == {TP0: [0, 1, 2], TP1: [0, 1, 2]}
    assert results == [{TP0: [3, 4, 5], TP1: [3, 4, 5]}, {TP0: [6, 7, 8]}]


class TakenWhileWaiting(queue.Queue):
    """A full queue from which the batcher takes an item while the consumer waits to put."""

    def put(self, item, block=True, timeout=None):
        if self.full() and block and timeout:
            self.get_nowait()
        super().put(item, block, timeout)


def test_a_queue_the_batcher_empties_in_time_does_not_pause_reading():
    """librdkafka drops what it prefetched for a partition it pauses, so a queue that is full
    for a moment is waited for, not answered with a pause."""
    t, fake, out = make(queue_size=2)
    t.out = out = TakenWhileWaiting(maxsize=2)
    fake.rebalance([TP0, TP1])
    step(t, 4)                                # two results more than the queue holds
    assert not t.holding() and fake.paused() == set() and fake.pauses == []
    _, results = drain(out)
    assert results == [{TP0: [3, 4, 5], TP1: [3, 4, 5]}, {TP0: [6, 7, 8]}]


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
    assert fake.commits == [{TP0: (6, META)}] and t.committed == {("t", 0): 6}


def one_batch_confirmed():
    """A reader holding partition t-0, and offsets 0..2 confirmed by Doris: a commit of 3 due."""
    t, fake, out = make()
    fake.rebalance([TP0])
    step(t)
    t.tracker.add(0, {("t", 0): (0, 2)})
    t.tracker.confirm(0)
    return t, fake, out


def test_a_failed_commit_is_retried_with_the_same_offsets():
    t, fake, out = one_batch_confirmed()
    fake.fail_commits = 1
    step(t)
    assert fake.commits == [] and t.committed == {}
    step(t)
    assert fake.commits == [{TP0: (3, META)}]


def test_a_commit_that_timed_out_but_happened_is_made_again_and_nothing_counts_it_done_before():
    """At-least-once: the broker stored the offset but its answer was lost. The thread must not
    take the commit as done (lag, progress), must commit the same values again, and must go on
    from there; a member that takes the partition meanwhile starts where the group says: 3."""
    t, fake, out = one_batch_confirmed()
    fake.lose_commit_answers = 1
    step(t)
    assert fake.group_offsets[TP0] == (3, META)        # it happened ...
    assert t.committed == {}                           # ... but nothing here counts it done
    step(t)
    assert fake.commits == [{TP0: (3, META)}, {TP0: (3, META)}] and t.committed == {("t", 0): 3}
    t.tracker.add(1, {("t", 0): (3, 5)})
    t.tracker.confirm(1)
    step(t)
    assert fake.commits[-1] == {TP0: (6, META)} and t.committed == {("t", 0): 6}


def test_exactly_once_a_cut_whose_commit_answer_was_lost_waits_and_a_restart_reads_it():
    """Exactly-once: the commit recording a batch's cut happened, its answer was lost. The batch
    must not load on that commit (the thread cannot know it happened): it waits for the next one,
    which records the same cut. A process killed in between leaves the cut in the group's
    commit, and the next reader forms that batch again (same range, same label) before anything
    else -- so the batch loads once whichever way the window closes."""
    t, fake, out = make(record_cuts=True)
    fake.rebalance([TP0])
    step(t)
    t.tracker.add(0, {("t", 0): (0, 2)}, recorded=False)
    fake.lose_commit_answers = 1
    step(t)
    assert fake.group_offsets[TP0] == (0, "sinker v1 0-2")
    assert t.tracker.wait_recorded(0, 0) is None          # the writer still waits
    # kill -9 here: the next reader starts at 0 and must form 0-2 again
    again, fake2, out2 = make(record_cuts=True, committed=dict(fake.group_offsets))
    fake2.rebalance([TP0])
    step(again)
    reb, _ = drain(out2)
    assert reb[0].assigned == {("t", 0): (0, [(0, 2)])}
    # or no kill: the next turn records the same cut again, and only then may the batch load
    step(t)
    assert fake.commits[-1] == {TP0: (0, "sinker v1 0-2")}
    assert t.tracker.wait_recorded(0, 0) == RECORDED


def test_exactly_once_records_the_cuts_before_the_batch_may_load():
    t, fake, out = make(record_cuts=True)
    fake.rebalance([TP0])
    step(t)
    t.tracker.add(0, {("t", 0): (0, 2)}, recorded=False)
    assert t.tracker.wait_recorded(0, 0) is None          # the writer waits
    t._last_commit = cm.time.monotonic()                  # not due: the cut alone triggers it
    t._step()
    assert fake.commits == [{TP0: (0, "sinker v1 0-2")}]  # offset unchanged, the cut recorded
    assert t.tracker.wait_recorded(0, 0) == RECORDED


def test_a_revoked_partition_is_fenced_and_its_waiting_records_dropped():
    t, fake, out = make(queue_size=2)
    fake.rebalance([TP0, TP1])
    step(t, 3)                                 # the second result is held
    t.tracker.add(0, {("t", 1): (0, 2)})
    t.tracker.confirm(0)
    fake.rebalance([TP0])                      # TP1 goes to another member
    step(t)
    assert all(TP1 not in c for c in fake.commits)
    # eager rebalance: both were revoked, so both held slices (3..5) are dropped, not handed on
    assert t.obs.accounting.snapshot()["rewound"] == 6
    drain(out)
    step(t, 3)
    rebalances, results = drain(out)
    assert rebalances[0].revoked == {("t", 0), ("t", 1)}
    assert rebalances[0].assigned == {("t", 0): (None, [])}
    assert results and all(set(r) == {TP0} and r[TP0][0] == 0 for r in results[:1])


def test_an_assigned_partition_starts_at_the_commit_with_its_recorded_cuts():
    t, fake, out = make(record_cuts=True, committed={TP0: (4, "sinker v1 4-6,7-9")})
    fake.rebalance([TP0])
    step(t, 2)
    reb, results = drain(out)
    assert reb[0].assigned == {("t", 0): (4, [(4, 6), (7, 9)])}
    assert results == [{TP0: [4, 5, 6]}]


def test_a_broker_outage_during_a_rebalance_holds_the_new_partitions_until_kafka_answers(monkeypatch):
    """The committed offsets of newly assigned partitions cannot be read (the brokers went away
    during the rebalance): the thread must not die, must not read those partitions from wherever
    the client happens to be, and must start them at the commit once Kafka answers."""
    monkeypatch.setattr(cm, "POSITION_RETRY_S", 0.0)
    t, fake, out = make(record_cuts=True, committed={TP0: (4, "sinker v1 4-6"), TP1: 2})
    fake.positions = {TP0: 0, TP1: 0}        # where the client would read without our seek
    fake.fail_committed = 3
    fake.rebalance([TP0, TP1])
    step(t)                                  # the rebalance: both reads fail
    assert t._unpositioned == {TP0, TP1} and {TP0, TP1} <= fake.paused()
    step(t)                                  # the retry fails too
    reb, results = drain(out)
    assert results == [] and [r.assigned for r in reb] == [{}]
    step(t, 3)                               # Kafka answers: positioned, then read from there
    reb, results = drain(out)
    assert reb[0].revoked == frozenset() and reb[0].assigned == {("t", 0): (4, [(4, 6)]),
                                                                  ("t", 1): (2, [])}
    assert results[0] == {TP0: [4, 5, 6], TP1: [2, 3, 4]}
    assert not t._unpositioned and t.error is None


def test_start_from_latest_applies_to_a_new_group_only():
    t, fake, out = make(start_from="latest")
    fake.rebalance([TP0, TP1])
    step(t)
    reb, results = drain(out)
    assert reb[0].assigned == {("t", 0): (10, []), ("t", 1): (6, [])}
    assert fake.commits[0] == {TP0: (10, META), TP1: (6, META)}   # the start point is durable
    assert results == []
    # a group with commits: a partition without one (added later) starts at the earliest offset
    t, fake, out = make(start_from="latest", committed={TP0: 5})
    fake.rebalance([TP0, TP1])
    step(t, 2)
    reb, results = drain(out)
    assert reb[0].assigned == {("t", 0): (5, []), ("t", 1): (None, [])}
    assert results == [{TP0: [5, 6, 7], TP1: [0, 1, 2]}]


def test_draining_hands_on_nothing_more():
    t, fake, out = make()
    fake.rebalance([TP0])
    t.shutdown.drain()
    step(t, 3)
    _, results = drain(out)
    assert results == [] and fake.paused() == {TP0}
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


def test_a_revoke_that_no_assignment_follows_is_waited_out_with_long_polls_then_rejoined(
        monkeypatch):
    """kafka-python 3.0 was seen to leave a join unfinished when it ran under 50 ms polls
    (exactly-once with batches open): the revoke arrives, the assignment never does, and
    assignment() goes on listing the revoked partitions. While a revoke waits for its assignment,
    polls wait long enough for a join (even with batches open), and after UNASSIGNED_REJOIN_S
    the coordinator is asked for a new join; reading resumes where the group committed."""
    now = [1000.0]
    monkeypatch.setattr(cm.time, "monotonic", lambda: now[0])
    t, fake, out = make(record_cuts=True, batches_open=lambda: True)
    fake.rebalance([TP0, TP1])
    step(t, 2)
    drain(out)
    assert fake.poll_timeouts[-1] == cm.SHORT_POLL_TIMEOUT_MS     # batches open: short polls
    fake.lose_join()
    step(t)
    reb, results = drain(out)
    assert [r.revoked for r in reb] == [frozenset({("t", 0), ("t", 1)})] and results == []
    assert fake.assignment() == {TP0, TP1}           # still listed, as kafka-python does
    now[0] += cm.UNASSIGNED_REJOIN_S - 1
    step(t)
    assert fake.poll_timeouts[-1] == cm.JOIN_POLL_TIMEOUT_MS and fake.rejoins == 0
    now[0] += 2
    step(t)
    assert fake.rejoins == 1
    fake.rebalance([TP0, TP1])                       # the new join completes
    step(t, 2)
    reb, results = drain(out)
    assert [r.assigned for r in reb] == [{("t", 0): (None, []), ("t", 1): (None, [])}]
    assert results == [{TP0: [0, 1, 2], TP1: [0, 1, 2]}]         # from the start: no commit yet
    assert t._unassigned_since is None and not t._awaiting_assignment
    assert fake.poll_timeouts[-1] == cm.SHORT_POLL_TIMEOUT_MS


def test_an_assignment_revoked_before_it_was_taken_is_void():
    """kafka-python's poll can complete a join and start the next one (on_partitions_assigned,
    then on_partitions_revoked) before the consumer thread takes the events: eager protocol, so
    the revoke voids that assignment and the consumer waits for the next."""
    from sinker_lib.kafka_client import _Rebalances
    r = _Rebalances()
    r.on_partitions_revoked({TP0})
    r.on_partitions_assigned({TP0, TP1})
    r.on_partitions_revoked({TP0, TP1})
    assert r.take() == ({TP0, TP1}, None)
    r.on_partitions_assigned({TP1})
    assert r.take() == (set(), {TP1})


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
    # after the partitions' last records, in queue order: they reached their end
    assert out.get_nowait() == Finished(frozenset({("t", 0), ("t", 1)}))
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


def test_replay_draining_never_calls_a_partition_done_past_records_it_dropped():
    """Records polled after the stop was decided are dropped: the position passed them, so
    the partition must not count as done (the replay would report a range it did not load)."""
    bounds = replay_bounds({0: 0}, {0: 5}, {TP0: LOG[TP0]})
    t, fake, out = make(log={TP0: LOG[TP0]}, bounds=bounds, batch=10)
    t.shutdown.request_stop()
    t.shutdown.drain()
    step(t)
    assert out.empty() and not bounds.is_done(TP0) and not t.read_everything()


def test_an_idle_partition_commits_its_position_past_records_never_returned():
    """Transaction markers and aborted records are never returned: once everything handed on is
    confirmed, the committed offset moves to the read position (lag can reach 0)."""
    gap = {TP0: [Rec("t", 0, o, 0, None, b"v") for o in (0, 1, 2)]}
    t, fake, out = make(log=gap, batch=10)
    fake.rebalance([TP0])
    step(t, 2)
    fake.positions[TP0] = 5                       # 3 and 4: a marker and an aborted record
    step(t)
    assert all(TP0 not in c or c[TP0][0] <= 3 for c in fake.commits)   # 0..2 not confirmed yet
    t.tracker.add(0, {("t", 0): (0, 2)})
    t.tracker.confirm(0)
    step(t, 2)
    assert fake.commits[-1][TP0][0] == 5


def test_draining_never_commits_past_what_it_dropped():
    t, fake, out = make()
    fake.rebalance([TP0])
    step(t, 2)                                    # 0..2 handed on
    t.tracker.add(0, {("t", 0): (0, 2)})
    t.tracker.confirm(0)
    t.shutdown.drain()
    fake.resume(TP0)
    fake.poll(0)                                  # a poll while draining: 3..5 read and dropped
    t._commit(force=True)
    assert fake.commits[-1][TP0][0] == 3


def test_added_partitions_make_the_member_ask_for_a_rebalance(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(cm.time, "monotonic", lambda: now[0])
    t, fake, out = make(log={TP0: recs("t", 0, range(3))})
    fake.rebalance([TP0])
    step(t)
    now[0] += cm.PARTITION_WATCH_S + 1
    step(t)
    assert fake.rejoins == 0                      # nothing changed
    fake.log[TP1] = recs("t", 1, range(3))        # a partition was added to the topic
    now[0] += cm.PARTITION_WATCH_S + 1
    step(t)
    assert fake.rejoins == 1
    now[0] += cm.PARTITION_WATCH_S + 1
    step(t)
    assert fake.rejoins == 1                      # asked once, until the group reassigns
