"""Batching decisions: seal thresholds in one place, batches in seal order with their ranges and
labels, one compiled mapper per schema, replay's aligned cuts independent of poll sizes."""
from __future__ import annotations

import queue
from types import SimpleNamespace

import pytest

from sinker_lib import batcher as b
from sinker_lib.config import BatchConfig
from sinker_lib.kafka_client import TopicPartition
from sinker_lib.budget import LINE_OVERHEAD, Budget
from tests.fakes import FakeMapper, FakeSchema, observers, recs

CFG = BatchConfig(max_rows=5, max_bytes=10_000, max_interval_s=10)


class RecordingTracker:
    def __init__(self):
        self.added = []

    def add(self, seq, ranges, recorded=True, owner=None):
        self.added.append((seq, dict(ranges)))


def make(cuts=None, clock=lambda: 0.0):
    schema = FakeSchema()
    new_batch = b.batch_factory("db", "tbl", schema, clock)
    outq = queue.Queue()
    t = b.BatcherThread(queue.Queue(), outq, cuts(new_batch) if cuts else b.OpenBatch(CFG, new_batch),
                        RecordingTracker(), observers(), schema, clock=clock)
    return t, outq, schema


def drain(q):
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def add(t, poll_result):
    t._seal(t.cuts.add(poll_result, t.clock()))


@pytest.mark.parametrize("rows,nbytes,age,expected", [
    (0, 0, 0, None), (5, 0, 0, "rows"), (1, 10_000, 0, "bytes"), (1, 10, 10, "interval"),
    (4, 9_999, 9.9, None),
])
def test_seal_reason(rows, nbytes, age, expected):
    batch = b.Batch("db", "t", FakeMapper(), opened_at=0.0)
    batch.rows, batch.nbytes = rows, nbytes
    if rows:
        batch.sources.append([object()])
    assert b.seal_reason(batch, CFG, now=age) == expected


def test_batches_carry_ranges_labels_and_dead_letters_in_seal_order():
    t, outq, _ = make()
    add(t, {TopicPartition("t", 0): recs("t", 0, [10, 11, 12]),
            TopicPartition("t", 1): recs("t", 1, [5, 6, 7])})
    add(t, {TopicPartition("t", 0): recs("t", 0, [13], value=b"bad")})
    t._seal(t.cuts.seal_all("shutdown"))
    sealed = drain(outq)
    assert [x.seq for x in sealed] == [0, 1]
    assert sealed[0].reason == "rows" and sealed[0].rows == 6
    assert sealed[0].ranges == {("t", 0): (10, 12), ("t", 1): (5, 7)}
    assert sealed[1].ranges == {("t", 0): (13, 13)} and sealed[1].rows == 0
    assert sealed[1].dead == [("dead", 13)] and sealed[1].reason == "shutdown"
    assert sealed[0].label and sealed[0].label != sealed[1].label
    assert t.tracker.added == [(0, sealed[0].ranges), (1, sealed[1].ranges)]


def test_an_old_batch_is_sealed_by_age():
    now = [0.0]
    t, outq, _ = make(clock=lambda: now[0])
    add(t, {TopicPartition("t", 0): recs("t", 0, [1])})
    assert t.cuts.deadline() == 10 and t.cuts.due(9.9) == []
    now[0] = 10.0
    t._seal(t.cuts.due(now[0]))
    assert [x.reason for x in drain(outq)] == ["interval"]


def test_mapper_compiled_once_per_schema_not_per_batch():
    t, outq, schema = make()
    for i in range(10):
        add(t, {TopicPartition("t", 0): recs("t", 0, range(i * 5, i * 5 + 5))})
    assert len(drain(outq)) == 10
    assert schema.built == 1


def test_a_schema_change_seals_and_the_next_batch_maps_with_the_new_mapper():
    t, outq, schema = make()
    add(t, {TopicPartition("t", 0): recs("t", 0, [1, 2])})
    schema.change()
    t.inq.put({})                 # one loop turn sees the new generation
    t.inq.put(b.STOP)
    t._loop()
    sealed = [x for x in drain(outq) if x is not b.STOP]
    assert [x.reason for x in sealed] == ["schema"]
    assert b.batch_factory("db", "t", schema)().mapper is schema.m


def test_aligned_batches_cut_at_multiples_of_the_size_also_across_gaps():
    t, outq, _ = make(cuts=lambda nb: b.AlignedBatches(4, nb))
    add(t, {TopicPartition("t", 0): recs("t", 0, [2, 3, 4, 7, 8, 13])})
    t._seal(t.cuts.finish({("t", 0)}))
    assert [(x.ranges[("t", 0)], x.reason) for x in drain(outq)] == [
        ((2, 3), "rows"), ((4, 7), "rows"), ((8, 8), "rows"), ((13, 13), "end")]


def test_a_stop_drops_partial_chunks_unloaded_and_a_schema_change_cuts_nothing():
    """A partial chunk sealed at a stop would load under a label no re-run forms again (the
    re-run reads the whole chunk): a stop drops it (its records are read again) and only the
    consumer's end-of-partition signal seals a last, partial chunk."""
    dropped = []
    t, outq, _ = make(cuts=lambda nb: b.AlignedBatches(10, nb, on_drop=dropped.append))
    add(t, {TopicPartition("t", 0): recs("t", 0, range(0, 14)),
            TopicPartition("t", 1): recs("t", 1, range(0, 3))})
    assert t.cuts.seal_all("schema") == []
    t._seal(t.cuts.seal_all("shutdown"))
    assert [x.ranges for x in drain(outq)] == [{("t", 0): (0, 9)}] and dropped == [7]


def _earlier(found):
    """EarlierLoads-like ranges: {key: {first: [(last, label, finished)]}} from {first: last}."""
    return SimpleNamespace(ranges={k: {a: [(z, f"L{a}-{z}", True)] for a, z in v.items()}
                                   for k, v in found.items()})


def test_a_rerun_forms_the_batches_an_earlier_run_loaded_before_its_end_moved():
    """An earlier run ended inside a chunk (no --to-offset: the end was the topic's end then) or
    was stopped by an older sinker: its partial batches were loaded under labels of their exact
    ranges. The re-run must form those batches again — same ranges, same labels — and cut the
    rest at the chunk ends, whatever its polls; otherwise their rows load a second time."""
    def run(slices, earlier=None, end=None, label_of=lambda key, a, z, rec: f"L{a}-{z}"):
        t, outq, _ = make(cuts=lambda nb: b.AlignedBatches(10, nb, earlier=earlier,
                                                           label_of=label_of))
        for lo, hi in slices:
            add(t, {TopicPartition("t", 0): recs("t", 0, range(lo, min(hi, end or hi)))})
        t._seal(t.cuts.finish({("t", 0)}))
        return [(x.ranges[("t", 0)], x.label) for x in drain(outq)]

    first = run([(0, 40)], end=23)                   # the topic ended at offset 22 then
    assert [r for r, _ in first] == [(0, 9), (10, 19), (20, 22)]
    earlier = _earlier({("t", 0): {0: 9, 10: 19, 20: 22}})
    for slices in ([(0, 40)], [(0, 21), (21, 40)], [(i, i + 1) for i in range(40)]):
        again = run(slices, earlier)
        assert again[:3] == first                      # same batches, same labels
        assert [r for r, _ in again[3:]] == [(23, 29), (30, 39)]
    # an earlier run that started elsewhere: the re-run stops short of its batches' first offsets
    assert [r for r, _ in run([(0, 40)], _earlier({("t", 0): {25: 27}}))] == [
        (0, 9), (10, 19), (20, 24), (25, 27), (28, 29), (30, 39)]
    # a label of the same head whose rebuilt label differs (another table or topic whose
    # cleaned name reads the same): not this replay's batch, the chunk is cut as usual
    assert [r for r, _ in run([(0, 40)], _earlier({("t", 0): {20: 22}}),
                              label_of=lambda *a: "other")] == [(0, 9), (10, 19), (20, 29), (30, 39)]


def test_aligned_batches_are_the_same_whatever_the_poll_sizes():
    """Replay idempotence rests on this: batches cut at multiples of the chunk size."""
    def run(slices):
        t, outq, _ = make(cuts=lambda nb: b.AlignedBatches(4, nb))
        for lo, hi in slices:
            add(t, {TopicPartition("t", 0): recs("t", 0, range(lo, hi))})
        t._seal(t.cuts.finish({("t", 0)}))
        return [(x.ranges, x.label) for x in drain(outq)]

    a = run([(2, 3), (3, 9), (9, 11)])
    c = run([(2, 11)])
    d = run([(2, 5), (5, 6), (6, 7), (7, 11)])
    assert a == c == d
    assert [r for r, _ in a] == [{("t", 0): (2, 3)}, {("t", 0): (4, 7)}, {("t", 0): (8, 10)}]


def test_partition_batches_cut_where_the_previous_reader_recorded_whatever_the_polls():
    """Exactly-once rests on this: the next reader forms the recorded batches again, with the
    same labels, however its polls slice the records; only then does it cut by size or age."""
    def run(slices, shutdown_at=None):
        t, outq, _ = make(cuts=lambda nb: b.PartitionBatches(CFG, nb))
        t.cuts.expect(("t", 0), [(10, 12), (13, 19)])
        for lo, hi in slices:
            add(t, {TopicPartition("t", 0): recs("t", 0, range(lo, hi))})
        t._seal(t.cuts.seal_all("shutdown"))
        return [(x.ranges, x.label, x.reason) for x in drain(outq)]

    a = run([(10, 11), (11, 14), (14, 30)])
    c = run([(10, 30)])
    assert [r[:2] for r in a[:2]] == [r[:2] for r in c[:2]]
    assert [r[0] for r in a[:2]] == [{("t", 0): (10, 12)}, {("t", 0): (13, 19)}]
    assert [r[2] for r in a[:2]] == ["recorded", "recorded"]
    # a recorded batch whose end has not arrived is never sealed by shutdown (nor by age)
    partial = run([(10, 16)])
    assert [r[0] for r in partial] == [{("t", 0): (10, 12)}]


def test_partition_batches_drop_open_batches_of_revoked_partitions():
    t, outq, _ = make(cuts=lambda nb: b.PartitionBatches(CFG, nb))
    add(t, {TopicPartition("t", 0): recs("t", 0, [1, 2]), TopicPartition("t", 1): recs("t", 1, [1])})
    sealed, dropped = t.cuts.on_rebalance({("t", 0)})
    assert sealed == [] and dropped == 2
    t._seal(t.cuts.seal_all("shutdown"))
    assert [x.ranges for x in drain(outq)] == [{("t", 1): (1, 1)}]


def test_aligned_batches_of_large_messages_are_cut_by_bytes_whatever_the_poll_sizes():
    """Large messages: a chunk is also cut where its value bytes reach max_bytes, and those cuts
    too depend only on the records (and where the batch started), never on the polls."""
    sizes = [300, 50, 700, 10, 10, 990, 400, 400, 400, 1, 0, 2000, 5, 5, 5, 5, 600, 600, 0, 3]
    values = {o: b"x" * n for o, n in enumerate(sizes)}

    def poll(lo, hi):
        return {TopicPartition("t", 0): [r._replace(value=values[r.offset])
                                         for r in recs("t", 0, range(lo, hi))]}

    def run(slices):
        t, outq, _ = make(cuts=lambda nb: b.AlignedBatches(8, nb, max_bytes=1000))
        for lo, hi in slices:
            add(t, poll(lo, hi))
        t._seal(t.cuts.finish({("t", 0)}))
        return [(x.ranges[("t", 0)], x.reason, x.label) for x in drain(outq)]

    one = run([(0, 20)])
    assert one == run([(i, i + 1) for i in range(20)]) == run([(0, 3), (3, 11), (11, 17), (17, 20)])
    assert [(r, why) for r, why, _ in one] == [
        ((0, 2), "bytes"), ((3, 5), "bytes"), ((6, 7), "rows"),   # 300+50+700 ≥ 1000; chunk end 7
        ((8, 11), "bytes"), ((12, 15), "rows"),                   # 400+1+0+2000; chunk end 15
        ((16, 17), "bytes"), ((18, 19), "end")]
    # a resume from a batch's first offset cuts the rest the same way
    assert run([(12, 20)]) == one[4:]
    assert run([(3, 20)]) == one[1:]
    # no batch holds (much) more than max_bytes: at most the one message that reached it
    assert all(sum(sizes[o] for o in range(lo, hi + 1)) - sizes[hi] < 1000 for (lo, hi), _, _ in one)



@pytest.mark.parametrize("held,bound,chosen", [
    ({"a": 10, "b": 20}, 31, []),                   # open batches hold less than the bound
    ({"a": 10, "b": 20, "c": 5}, 30, ["b"]),        # the largest until the rest is under it
    ({"a": 10, "b": 20, "c": 5}, 10, ["b", "a"]),
    ({"a": 10}, 10, ["a"]),
])
def test_memory_seals_take_the_largest_open_batches_until_the_rest_is_under_the_bound(
        held, bound, chosen):
    assert b.memory_seals(held, bound) == chosen


def with_budget(cuts, limit):
    """A batcher whose batches count into a real Budget of ``limit`` bytes."""
    budget = Budget(limit)
    schema = FakeSchema()
    new_batch = b.batch_factory("db", "tbl", schema, lambda: 0.0, budget=budget)
    t = b.BatcherThread(queue.Queue(), queue.Queue(), cuts(new_batch), RecordingTracker(),
                        observers(), schema, clock=lambda: 0.0, budget=budget)
    return t, budget


def test_an_open_batch_holding_half_the_budget_is_sealed_for_memory_over_it():
    t, budget = with_budget(lambda nb: b.OpenBatch(CFG, nb), limit=10**9)
    add(t, {TopicPartition("t", 0): recs("t", 0, [1, 2])})
    budget.limit = budget.held            # the open batch holds all of it: not over yet
    t._relieve_memory()
    assert drain(t.outq) == []
    budget.limit = budget.held - 1        # over, and the open batch holds more than half
    t._relieve_memory()
    assert [(x.reason, x.rows) for x in drain(t.outq)] == [("memory", 2)] and not t.cuts.open


def test_a_small_open_batch_is_not_sealed_while_sealed_loads_hold_the_budget():
    t, budget = with_budget(lambda nb: b.OpenBatch(CFG, nb), limit=10**9)
    add(t, {TopicPartition("t", 0): recs("t", 0, [1, 2, 3, 4, 5])})     # sealed by rows: loading
    add(t, {TopicPartition("t", 0): recs("t", 0, [6])})
    small = t.cuts.open[0].held[0]
    budget.limit = 3 * small              # over (the sealed batch), the open one under half of it
    assert budget.over()
    t._relieve_memory()
    assert [x.reason for x in drain(t.outq)] == ["rows"] and t.cuts.open


def test_a_chunk_waiting_for_its_recorded_end_is_never_sealed_for_memory():
    t, budget = with_budget(lambda nb: b.PartitionBatches(CFG, nb), limit=10**9)
    t.cuts.expect(("t", 0), [(1, 3)])
    add(t, {TopicPartition("t", 0): recs("t", 0, [1, 2]), TopicPartition("t", 1): recs("t", 1, [7, 8]),
            TopicPartition("t", 2): recs("t", 2, [9])})
    budget.limit = 1
    t._relieve_memory()
    got = drain(t.outq)
    assert [(x.reason, x.ranges) for x in got] == [("memory", {("t", 1): (7, 8)}),
                                                   ("memory", {("t", 2): (9, 9)})]
    assert all(x.needs_record for x in got)     # loaded only once their cuts are in Kafka
    assert list(t.cuts.open) == [TopicPartition("t", 0)]


# ------------------------------------------------------------------ what a batch keeps of its records
def _kafka_python_records(offsets, key=None):
    from kafka.consumer.fetcher import ConsumerRecord
    return [ConsumerRecord("t", 2, 0, o, 1_700_000_000_000 + o, 0, key, b"v%d" % o, [], None,
                           -1, 2, -1) for o in offsets]


def _confluent_records(offsets, key=None):
    from confluent_kafka import Message
    return [Message(topic="t", partition=2, offset=o, key=key, value=b"v%d" % o,
                    timestamp=(1, 1_700_000_000_000 + o)) for o in offsets]


def _fake_records(offsets, key=None):
    out = [r._replace(partition=2, key=key, value=b"v%d" % r.offset)
           for r in recs("t", 2, offsets)]
    out[0] = out[0]._replace(timestamp=None)      # a record without a timestamp
    return out


class _ValueMapper(FakeMapper):
    """FakeMapper for any record type; ``verbatim``: it says each line is its value and a
    newline, as the json passthrough does."""

    def __init__(self, verbatim=False):
        self.verbatim = verbatim

    def map_records(self, records, out, dead):
        from sinker_lib.records import fields
        lines = [v + b"\n" for v in map(fields(records[0]).value, records)]
        out += lines
        return sum(map(len, lines))

    def map_slice(self, records, out, dead):
        return self.map_records(records, out, dead), self.verbatim


@pytest.mark.parametrize("verbatim", [False, True])
@pytest.mark.parametrize("make_records", [_kafka_python_records, _confluent_records, _fake_records])
@pytest.mark.parametrize("offsets,key", [(range(10, 15), None), ([3, 5, 6, 9], b"k")])
def test_a_batch_keeps_every_field_the_rejected_row_path_reads(make_records, offsets, key, verbatim):
    """Re-mapping a rejected line and its dead letter read topic, partition, offset, timestamp,
    key and value: the kept records give back exactly those of the client's records, with and
    without gaps in the offsets (compaction, transaction markers) and keys, and also when the
    values are read back from the lines (verbatim)."""
    from sinker_lib.records import fields

    def read(rec):
        return tuple(getter(rec) for getter in fields(rec))
    records = make_records(offsets, key)
    batch = b.Batch("db", "t", _ValueMapper(verbatim), 0.0)
    batch.add("t", 2, records[:2])
    batch.add("t", 2, records[2:])
    kept = [k for s in batch.sources for k in s.records()]
    assert list(map(read, kept)) == list(map(read, records)) and batch.records == len(records)


def test_a_batch_keeps_no_client_record_once_mapped():
    """The client's records (kafka-python: a 13-field tuple, a headers list and two ints each)
    are freed once mapped; the batch keeps the values themselves, not copies."""
    import gc
    from kafka.consumer.fetcher import ConsumerRecord
    records = _kafka_python_records(range(100))
    value = records[7].value
    batch = b.Batch("db", "t", _ValueMapper(), 0.0)
    batch.add("t", 2, records)
    del records
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is ConsumerRecord]
    assert batch.sources[0].values[7] is value and batch.rows == 100


def test_a_verbatim_slice_keeps_its_values_only_in_the_batch_lines():
    """json passthrough: each line is its value and a newline, so the slice holds no value of
    its own; once the records are gone, no value object is alive beside the lines, and the
    budget counts the lines once."""
    import gc
    import sys
    budget = Budget(1 << 30)
    records = _kafka_python_records(range(100))
    value = records[77].value
    batch = b.Batch("db", "t", _ValueMapper(verbatim=True), 0.0, budget)
    batch.add("t", 2, records[:40])
    batch.add("t", 2, records[40:])
    del records
    gc.collect()
    assert sys.getrefcount(value) == 2        # this test's name and the call's argument
    assert [s.values for s in batch.sources] == [[b"v%d" % o for o in range(40)],
                                                 [b"v%d" % o for o in range(40, 100)]]
    assert budget.held == batch.nbytes + 100 * LINE_OVERHEAD
