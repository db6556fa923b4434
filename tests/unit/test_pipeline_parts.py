"""Unit tests for the decisions inside the threads: sealing, replay chunking, re-read filtering,
ErrorURL parsing, backoff, replay plans and schema descriptions."""
from __future__ import annotations

import queue
from collections import namedtuple

import pytest
from kafka import TopicPartition

from lib import batcher as b
from lib.config import BatchConfig, ColumnSource, MappingConfig, WriterConfig
from lib.consumer import drop_already_read
from lib.replay import compute_plan, parse_offsets, resume_command
from lib.writer import backoff_s, parse_error_row
from lib.errors import ConfigError

Rec = namedtuple("Rec", "topic partition offset timestamp key value")


class FakeMapper:
    """Every record becomes one line; values equal to b'bad' become dead letters."""
    built = 0

    def __init__(self):
        FakeMapper.built += 1

    def headers(self):
        return {"format": "csv"}

    def map_records(self, records, out, dead):
        n = 0
        for r in records:
            if r.value == b"bad":
                dead.append(("dead", r.offset))
                continue
            line = r.value + b"\n"
            out.append(line)
            n += len(line)
        return n

    def line_for(self, r):
        return None if r.value == b"bad" else r.value + b"\n"


class FakeSource:
    def __init__(self):
        self.m = FakeMapper()
        self.change = False

    def mapper(self):
        return self.m

    def changed(self):
        c, self.change = self.change, False
        return c


class FakeTracker:
    def __init__(self):
        self.added = []

    def add(self, seq, ranges):
        self.added.append((seq, dict(ranges)))


class NullMetrics:
    def __getattr__(self, name):
        return lambda *a, **k: None


def recs(topic, partition, offsets, value=b"v"):
    return [Rec(topic, partition, o, 1000 + o, None, value) for o in offsets]


def make_batcher(cfg=None, aligned=None, clock=None):
    inq, outq = queue.Queue(), queue.Queue()
    t = b.BatcherThread(cfg or BatchConfig(max_rows=5, max_bytes=10_000, max_interval_s=10),
                        "db", "tbl", FakeSource(), inq, outq, FakeTracker(), NullMetrics(), None,
                        clock=clock or (lambda: 0.0), aligned_rows=aligned)
    return t, inq, outq


def drain(q):
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


@pytest.mark.parametrize("rows,nbytes,age,expected", [
    (0, 0, 0, None), (5, 0, 0, "rows"), (1, 10_000, 0, "bytes"), (1, 10, 10, "interval"),
    (4, 9_999, 9.9, None),
])
def test_seal_reason(rows, nbytes, age, expected):
    batch = b.Batch("db", "t", FakeMapper(), opened_at=0.0)
    batch.rows, batch.nbytes = rows, nbytes
    if rows:
        batch.sources.append([object()])
    cfg = BatchConfig(max_rows=5, max_bytes=10_000, max_interval_s=10)
    assert b.seal_reason(batch, cfg, now=age) == expected


def test_batches_carry_ranges_labels_and_dead_letters_in_seal_order():
    t, _, outq = make_batcher()
    t._add({TopicPartition("t", 0): recs("t", 0, [10, 11, 12]),
            TopicPartition("t", 1): recs("t", 1, [5, 6, 7])})
    t._add({TopicPartition("t", 0): recs("t", 0, [13], value=b"bad")})
    t._seal("shutdown")
    sealed = drain(outq)
    assert [x.seq for x in sealed] == [0, 1]
    assert sealed[0].reason == "rows" and sealed[0].rows == 6
    assert sealed[0].ranges == {("t", 0): (10, 12), ("t", 1): (5, 7)}
    assert sealed[1].ranges == {("t", 0): (13, 13)} and sealed[1].rows == 0
    assert sealed[1].dead == [("dead", 13)]
    assert sealed[0].label and sealed[0].label != sealed[1].label
    assert t.tracker.added == [(0, sealed[0].ranges), (1, sealed[1].ranges)]


def test_mapper_compiled_once_per_schema_not_per_batch():
    FakeMapper.built = 0
    t, _, outq = make_batcher()
    for i in range(10):
        t._add({TopicPartition("t", 0): recs("t", 0, range(i * 5, i * 5 + 5))})
    assert len(drain(outq)) == 10
    assert FakeMapper.built == 1


def test_aligned_batches_are_the_same_whatever_the_poll_sizes():
    """Replay idempotence rests on this: batches cut at multiples of the chunk size."""
    def run(slices):
        t, _, outq = make_batcher(aligned=4)
        for lo, hi in slices:
            t._add({TopicPartition("t", 0): recs("t", 0, range(lo, hi))})
        t._seal("shutdown")
        return [(x.ranges, x.label) for x in drain(outq)]

    a = run([(2, 3), (3, 9), (9, 11)])
    c = run([(2, 11)])
    d = run([(2, 5), (5, 6), (6, 7), (7, 11)])
    assert a == c == d
    assert [r for r, _ in a] == [{("t", 0): (2, 3)}, {("t", 0): (4, 7)}, {("t", 0): (8, 10)}]


def test_drop_already_read_after_a_rewind():
    rs = recs("t", 0, range(100, 110))
    assert drop_already_read(rs, None) is rs
    assert drop_already_read(rs, 100) is rs
    assert [r.offset for r in drop_already_read(rs, 105)] == list(range(105, 110))
    assert drop_already_read(rs, 200) == []


@pytest.mark.parametrize("line,reason,src", [
    ("Reason: column_name[name], the length of input is too long than schema. src line [1\x01abc]; ",
     "column_name[name], the length of input is too long than schema", "1\x01abc"),
    ("Reason: no partition for this tuple. src line [{\"id\": 1}]; ",
     "no partition for this tuple", '{"id": 1}'),
    ("Reason: actual column number is less than schema column number.",
     "actual column number is less than schema column number", None),
])
def test_parse_error_row(line, reason, src):
    assert parse_error_row(line) == (reason, src)


def test_backoff_grows_is_capped_and_busy_starts_higher():
    cfg = WriterConfig(backoff_initial_s=1, backoff_max_s=8, busy_backoff_s=5)
    top = [backoff_s(a, cfg, rng=lambda: 1.0) for a in range(1, 7)]
    assert top == [1, 2, 4, 8, 8, 8]
    assert backoff_s(1, cfg, rng=lambda: 0.0) == 0.5
    assert backoff_s(1, cfg, busy=True, rng=lambda: 1.0) == 5


def test_replay_plan_clamps_and_fixes_ends():
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    beginning, ends = {tp0: 10, tp1: 0}, {tp0: 100, tp1: 50}
    plan = compute_plan("t", [0, 1], beginning, ends, from_offset=0, to_offset=None, chunk_rows=10)
    assert plan.start == {tp0: 10, tp1: 0} and plan.end == {tp0: 100, tp1: 50}
    assert plan.total == 140
    plan = compute_plan("t", [0, 1], beginning, ends, from_offset={0: 20, 1: 5},
                        to_offset={0: 29, 1: 500}, chunk_rows=10)
    assert plan.start == {tp0: 20, tp1: 5} and plan.end == {tp0: 30, tp1: 50}
    plan = compute_plan("t", [0], beginning, ends, from_times={tp0: 42}, to_times={tp0: None},
                        chunk_rows=10)
    assert (plan.start[tp0], plan.end[tp0]) == (42, 100)
    with pytest.raises(ConfigError, match="no start for partition 1"):
        compute_plan("t", [0, 1], beginning, ends, from_offset={0: 1}, chunk_rows=10)
    cmd = resume_command("c.yaml", plan, {("t", 0): 60})
    assert "--from-offset 0:60" in cmd and "--to-offset 0:99" in cmd


def test_parse_offsets():
    assert parse_offsets("12", "x") == 12
    assert parse_offsets("0:5,2:7", "x") == {0: 5, 2: 7}
    assert parse_offsets(None, "x") is None
    with pytest.raises(ConfigError, match="--from-offset"):
        parse_offsets("a:b", "--from-offset")


def test_describe_reports_sources_and_warnings():
    from lib.describe import describe
    from lib.schema import Column, parse_type
    cols = [Column("id", parse_type("bigint"), False, None, True),
            Column("name", parse_type("varchar(8)"), True, None),
            Column("part", parse_type("int"), False, None),
            Column("h", parse_type("hll"), True, None)]
    mapping = MappingConfig(columns=(ColumnSource("name", path=("user", "name")),
                                     ColumnSource("part", kafka="partition"),
                                     ColumnSource("ghost", path=("g",))))
    rows, warnings = describe(cols, mapping)
    assert [r.source for r in rows] == ["field id", "path user.name", "kafka partition", "field h"]
    assert rows[0].when_missing == "dead letter" and rows[1].when_missing == "NULL"
    assert any("column id is NOT NULL" in w for w in warnings)
    assert not any("column part is NOT NULL" in w for w in warnings)
    assert any("hll" in w.lower() for w in warnings)
    assert any("'ghost'" in w for w in warnings)
