"""OffsetTracker: a commit never passes a batch Doris has not confirmed."""
import random
import threading

from sinker_lib.offsets import OffsetTracker

P0, P1, P2 = ("events", 0), ("events", 1), ("other", 0)


def test_nothing_before_confirm():
    t = OffsetTracker()
    t.add(0, {P0: (0, 9)})
    assert t.committable() == {} and t.peek_committable() == {}
    assert t.pending_count() == 1


def test_out_of_order_confirms_wait_for_the_prefix():
    t = OffsetTracker()
    t.add(0, {P0: (0, 9)})
    t.add(1, {P0: (10, 19)})
    t.add(2, {P0: (20, 29)})
    t.confirm(2)
    t.confirm(1)
    assert t.committable() == {}
    assert t.pending_count() == 1
    t.confirm(0)
    assert t.committable() == {P0: 30}
    assert t.pending_count() == 0


def test_repeated_committable_until_marked():
    t = OffsetTracker()
    t.add(0, {P0: (0, 9)})
    t.confirm(0)
    assert t.committable() == {P0: 10}
    assert t.committable() == {P0: 10}          # the commit may have failed: offered again
    t.mark_committed({P0: 10})
    assert t.committable() == {}
    assert t.peek_committable() == {P0: 10}     # progress stays visible
    t.add(1, {P0: (10, 14)})
    t.confirm(1)
    assert t.committable() == {P0: 15}


def test_multi_partition_batch_holds_back_each_partition():
    t = OffsetTracker()
    t.add(0, {P0: (0, 9), P1: (0, 4)})
    t.add(1, {P1: (5, 9)})
    t.add(2, {P0: (10, 19), P2: (0, 0)})
    t.confirm(1)
    t.confirm(2)
    assert t.committable() == {P2: 1}
    t.confirm(0)
    assert t.committable() == {P0: 20, P1: 10, P2: 1}


def test_gaps_in_offsets_do_not_matter():
    t = OffsetTracker()
    t.add(0, {P0: (0, 9)})
    t.add(1, {P0: (15, 20)})        # 10..14 were compacted away / transaction markers
    t.confirm(1)
    assert t.committable() == {}
    t.confirm(0)
    assert t.committable() == {P0: 21}


def test_revoke_forgets_partitions_but_not_shared_batches():
    t = OffsetTracker()
    t.add(0, {P0: (0, 9), P1: (0, 9)})
    t.add(1, {P1: (10, 19)})
    t.add(2, {P0: (10, 19)})
    t.confirm(1)
    t.revoke({P1})
    assert t.committable() == {}           # batch 0 still holds P0
    t.confirm(0)
    t.confirm(2)
    assert t.committable() == {P0: 20}     # nothing for the revoked partition
    t.confirm(1)                           # confirming again / after revoke is harmless
    t.confirm(99)                          # unknown seq too
    assert t.committable() == {P0: 20}


def test_revoke_clears_released_and_committed_positions():
    t = OffsetTracker()
    t.add(0, {P1: (0, 9)})
    t.confirm(0)
    t.mark_committed({P1: 10})
    t.revoke([P1])
    assert t.peek_committable() == {} and t.committable() == {}
    # the partition comes back later, re-read from an earlier commit by another member
    t.add(1, {P1: (5, 7)})
    t.confirm(1)
    assert t.committable() == {P1: 8}


def test_revoked_batch_confirmed_after_reassignment_does_not_release_new_batches():
    t = OffsetTracker()
    t.add(0, {P0: (0, 9)})
    t.revoke({P0})
    t.add(1, {P0: (0, 9)})      # re-assigned, re-read
    t.add(2, {P0: (10, 19)})
    t.confirm(0)                # the old batch finishes loading
    t.confirm(2)
    assert t.committable() == {}
    t.confirm(1)
    assert t.committable() == {P0: 20}


def test_random_confirm_orders_never_pass_an_unconfirmed_batch():
    rng = random.Random(20240501)
    keys = [("t", p) for p in range(4)]
    for _ in range(200):
        t = OffsetTracker()
        next_off = {k: 0 for k in keys}
        batches = []
        for seq in range(rng.randint(1, 25)):
            ranges = {}
            for k in rng.sample(keys, rng.randint(1, len(keys))):
                first = next_off[k] + rng.choice([0, 0, 3])          # sometimes a gap
                last = first + rng.randint(0, 5)
                next_off[k] = last + 1
                ranges[k] = (first, last)
            batches.append(ranges)
            t.add(seq, ranges)
        order = list(range(len(batches)))
        rng.shuffle(order)
        confirmed = set()
        committed = {}
        for seq in order:
            t.confirm(seq)
            confirmed.add(seq)
            pos = t.committable()
            if rng.random() < 0.5:
                t.mark_committed(pos)
            committed.update(pos)
            for k in keys:
                # expected: last+1 of the longest confirmed prefix of k's batches
                expect = None
                for s, ranges in enumerate(batches):
                    if k not in ranges:
                        continue
                    if s not in confirmed:
                        break
                    expect = ranges[k][1] + 1
                assert t.peek_committable().get(k) == expect
                if k in committed:
                    unconfirmed = [r[k][0] for s, r in enumerate(batches) if k in r and s not in confirmed]
                    assert not unconfirmed or committed[k] <= min(unconfirmed)
        assert t.pending_count() == 0
        assert t.peek_committable() == {k: next_off[k] for k in keys if any(k in b for b in batches)}


def test_threads_confirming_concurrently():
    t = OffsetTracker()
    n = 2000
    for seq in range(n):
        t.add(seq, {P0: (seq * 10, seq * 10 + 9)})
    seqs = list(range(n))
    random.Random(7).shuffle(seqs)
    chunks = [seqs[i::4] for i in range(4)]
    threads = [threading.Thread(target=lambda c=c: [t.confirm(s) for s in c]) for c in chunks]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.committable() == {P0: n * 10}
    assert t.pending_count() == 0


def test_model_rebalances_never_commit_past_a_row_doris_lacks():
    """A model of the consumer, batcher and writers around the tracker: random interleavings of
    poll, seal, confirm (in any order), commit and rebalance (revoke, give back, move away)
    never commit an offset below which a row is missing from Doris, and never move an offset
    backwards. Rebalances reach the tracker in queue order, as the batcher applies them."""
    keys = [("t", 0), ("t", 1)]
    for run in range(300):
        rng = random.Random(run)
        t = OffsetTracker()
        end = {k: rng.randint(20, 60) for k in keys}           # each partition's log
        group: dict = {}                                        # the group's commits
        owned = set(keys)
        position = {k: 0 for k in keys}
        queue = []                                              # polled slices and markers
        in_flight = {}                                          # seq -> ranges (sealed, not confirmed)
        doris = set()                                           # (key, offset) loaded
        seq = 0
        t.rebalance((), {k: None for k in keys})
        for _ in range(400):
            op = rng.random()
            if op < 0.3 and owned:                              # poll a slice
                k = rng.choice(sorted(owned))
                if position[k] < end[k]:
                    n = rng.randint(1, 5)
                    first, last = position[k], min(end[k], position[k] + n) - 1
                    position[k] = last + 1
                    queue.append(("records", k, first, last))
            elif op < 0.55 and queue:                           # the batcher takes the head
                item = queue.pop(0)
                if item[0] == "records":
                    _, k, first, last = item
                    t.add(seq, {k: (first, last)})
                    in_flight[seq] = {k: (first, last)}
                    seq += 1
                else:
                    _, revoked, assigned = item
                    t.rebalance(revoked, assigned)
            elif op < 0.75 and in_flight:                       # a writer confirms any batch
                s = rng.choice(sorted(in_flight))
                for k, (first, last) in in_flight.pop(s).items():
                    doris.update((k, o) for o in range(first, last + 1))
                t.confirm(s)
            elif op < 0.9:                                      # the consumer commits
                plan, _ = t.commit_plan(owned)
                for k, (off, _cuts) in plan.items():
                    assert all((k, o) in doris for o in range(off)), (run, k, off)
                    assert off >= group.get(k, 0), (run, k, off, group)
                    group[k] = off
                t.mark_committed({k: off for k, (off, _c) in plan.items()})
            else:                                               # a rebalance
                revoked = set(owned)
                owned = {k for k in keys if rng.random() < 0.7}
                t.fence(revoked)
                queue = [x for x in queue if x[0] != "records" or x[1] not in revoked]
                for k in owned:
                    position[k] = group.get(k, 0)               # Kafka rewinds to the commit
                queue.append(("rebalance", revoked, {k: group.get(k) for k in owned}))


def test_cuts_inherited_from_the_previous_reader_stay_in_every_commit():
    """The previous reader recorded (and maybe loaded) 100-199 and 200-299: until this process
    has sealed batches there, every commit must still carry them, or the next reader would cut
    200.. afresh and load it under a new label."""
    t = OffsetTracker()
    t.rebalance((), {P0: 100}, inherited={P0: [(100, 199), (200, 299)]})
    t.add(0, {P0: (100, 199)}, recorded=True)          # sealed at the first inherited cut
    plan, _ = t.commit_plan({P0})
    assert plan == {}                                   # nothing moved, nothing to record
    t.confirm(0)
    plan, _ = t.commit_plan({P0})
    assert plan == {P0: (200, [(200, 299)])}
    t.mark_committed({P0: 200})
    assert not t.advance_idle(P0, 200, 300)             # an inherited cut is still ahead
    t.add(1, {P0: (200, 299)}, recorded=True)
    t.confirm(1)
    assert t.commit_plan({P0})[0] == {P0: (300, [])}


def test_a_batch_unrecorded_when_its_partition_is_fenced_is_revoked_at_once():
    """Its cuts can no longer be committed: a writer waiting for them must drop it now, not when
    the rebalance reaches the batcher (which may be blocked on that writer's full queue)."""
    from sinker_lib.offsets import RECORDED, REVOKED
    t = OffsetTracker()
    t.add(0, {P0: (0, 9)}, recorded=False)
    t.add(1, {P1: (0, 9)}, recorded=False)
    assert t.wait_recorded(0, 0) is None
    waited = []
    waiter = threading.Thread(target=lambda: waited.append(t.wait_recorded(0, 30)))
    waiter.start()
    t.fence([P0])
    waiter.join(30)
    assert waited == [REVOKED]
    assert t.wait_recorded(1, 0) is None                  # another partition's batch still waits
    t.mark_committed({P1: 0}, recorded={1})
    assert t.wait_recorded(1, 0) == RECORDED


# -- many tables: one partition's records in several tables' batches --------------------------
def test_tables_of_one_chunk_release_only_when_all_are_confirmed():
    """Exactly-once seals one batch per table of a partition's chunk, each with the chunk's
    range: the first one confirmed must not release the chunk while another table's waits."""
    t = OffsetTracker()
    t.add(0, {P0: (0, 9)})      # table a
    t.add(1, {P0: (0, 9)})      # table b, same chunk
    t.add(2, {P0: (10, 19)})    # table a, next chunk
    t.confirm(0)
    assert t.committable() == {}
    t.confirm(2)
    assert t.committable() == {}
    t.confirm(1)
    assert t.committable() == {P0: 20}


def test_an_open_batch_of_another_table_holds_the_partition():
    """At-least-once: table b's open batch took offset 3 while table a's batch over 0..9 was
    sealed and confirmed; committing 10 would lose offset 3 at a crash."""
    t = OffsetTracker()
    open_b = object()
    t.hold(open_b, P0, 3)
    t.add(0, {P0: (0, 9)})                  # table a
    t.confirm(0)
    assert t.committable() == {P0: 3}        # what is below b's first record is safe
    t.add(1, {P0: (3, 12)}, owner=open_b)    # b sealed: its range replaces the hold
    assert t.committable() == {P0: 3}
    t.confirm(1)
    assert t.committable() == {P0: 13}


def test_a_later_batch_of_another_table_with_lower_offsets_holds_back():
    """Seal order is not offset order across tables: b's batch sealed after a's starts lower."""
    t = OffsetTracker()
    t.add(0, {P0: (5, 20)})     # table a
    t.add(1, {P0: (2, 18)})     # table b
    t.confirm(0)
    assert t.committable() == {}
    t.confirm(1)
    assert t.committable() == {P0: 21}


def test_holds_of_revoked_partitions_are_forgotten():
    t = OffsetTracker()
    t.hold(object(), P0, 4)
    t.revoke([P0])
    t.rebalance([], {P0: 4})
    t.add(0, {P0: (4, 9)})
    t.confirm(0)
    assert t.committable() == {P0: 10}


def test_idle_advance_waits_for_held_partitions():
    t = OffsetTracker()
    t.rebalance([], {P0: 0})
    t.hold(object(), P0, 0)
    assert not t.advance_idle(P0, None, 5)


def test_a_chunks_cut_is_recorded_once_for_all_its_tables():
    """Commit metadata must read back (decode refuses overlapping cuts): the batches of one
    chunk's tables share one cut, which goes into the metadata once."""
    from sinker_lib import commit_metadata
    t = OffsetTracker()
    t.rebalance([], {P0: 0}, {P0: [(20, 29)]})
    t.add(0, {P0: (0, 9)}, recorded=False)      # table a
    t.add(1, {P0: (0, 9)}, recorded=False)      # table b, same chunk
    t.add(2, {P0: (10, 19)}, recorded=False)    # table a, next chunk
    plan, seqs = t.commit_plan()
    offset, cuts = plan[P0]
    assert cuts == [(0, 9), (10, 19), (20, 29)] and seqs == {0, 1, 2}
    assert commit_metadata.decode(commit_metadata.encode(cuts)) == cuts


def test_the_released_offset_is_the_highest_end_of_the_confirmed_run():
    """Seen on the real broker: four tables' batches of one partition, the last one sealed
    ending below the others; confirming them all must release past the highest end."""
    t = OffsetTracker()
    t.add(2, {P0: (0, 80)})
    t.add(3, {P0: (1, 81)})
    t.add(18, {P0: (2, 82)})
    t.add(19, {P0: (4, 79)})
    for seq in (18, 19, 2, 3):
        t.confirm(seq)
    assert t.committable() == {P0: 83}


def test_metadata_with_one_cut_per_table_reads_back_as_one_cut():
    from sinker_lib import commit_metadata
    assert commit_metadata.decode("sinker v1 0-9,0-9,10-19") == [(0, 9), (10, 19)]
