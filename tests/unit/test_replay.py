"""Replay's pure parts: the plan (clamped, ends fixed), offsets parsing, the resume command,
and the bounds the consumer asks (done by position, not by a record at end - 1)."""
from __future__ import annotations

import pytest

from sinker_lib.commands.replay import ReplayBounds, compute_plan, parse_offsets, resume_command
from sinker_lib.errors import ConfigError
from sinker_lib.kafka_client import TopicPartition
from tests.fakes import recs

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)


def test_replay_plan_clamps_and_fixes_ends():
    beginning, ends = {TP0: 10, TP1: 0}, {TP0: 100, TP1: 50}
    plan = compute_plan("t", [0, 1], beginning, ends, from_offset=0, to_offset=None, chunk_rows=10)
    assert plan.start == {TP0: 10, TP1: 0} and plan.end == {TP0: 100, TP1: 50}
    assert plan.total == 140
    plan = compute_plan("t", [0, 1], beginning, ends, from_offset={0: 20, 1: 5},
                        to_offset={0: 29, 1: 500}, chunk_rows=10)
    assert plan.start == {TP0: 20, TP1: 5} and plan.end == {TP0: 30, TP1: 50}
    plan = compute_plan("t", [0], beginning, ends, from_times={TP0: 42}, to_times={TP0: None},
                        chunk_rows=10)
    assert (plan.start[TP0], plan.end[TP0]) == (42, 100)
    with pytest.raises(ConfigError, match="no start for partition 1"):
        compute_plan("t", [0, 1], beginning, ends, from_offset={0: 1}, chunk_rows=10)
    cmd = resume_command("c.yaml", plan, {("t", 0): 60}, "db.tbl")
    assert "--from-offset 0:60" in cmd and "--to-offset 0:99" in cmd and "--table db.tbl" in cmd


def test_parse_offsets():
    assert parse_offsets("12", "x") == 12
    assert parse_offsets("0:5,2:7", "x") == {0: 5, 2: 7}
    assert parse_offsets(None, "x") is None
    with pytest.raises(ConfigError, match="--from-offset"):
        parse_offsets("a:b", "--from-offset")


def test_bounds_trim_and_finish_by_position():
    plan = compute_plan("t", [0, 1], {TP0: 0, TP1: 0}, {TP0: 10, TP1: 0}, from_offset=0,
                        chunk_rows=4)
    bounds = ReplayBounds(plan)
    assert bounds.is_done(TP1) and not bounds.is_done(TP0)    # an empty range is done at once
    assert [r.offset for r in bounds.trim(TP0, recs("t", 0, range(7, 12)))] == [7, 8, 9]
    assert not bounds.reached(TP0, 9) and not bounds.finished()
    assert bounds.reached(TP0, 10) and bounds.finished()


def test_a_reversed_offset_range_is_an_error():
    beginning, ends = {TP0: 0, TP1: 0}, {TP0: 100, TP1: 100}
    with pytest.raises(ConfigError, match="partition 0: --from-offset 50 is after --to-offset 49"):
        compute_plan("t", [0], beginning, ends, from_offset=50, to_offset=49, chunk_rows=10)
    with pytest.raises(ConfigError, match="partition 1"):
        compute_plan("t", [0, 1], beginning, ends, from_offset={0: 1, 1: 9}, to_offset={0: 5, 1: 8},
                     chunk_rows=10)
    one = compute_plan("t", [0], beginning, ends, from_offset=50, to_offset=50, chunk_rows=10)
    assert one.total == 1


def test_plan_as_dict_and_overlap_with_the_group():
    from sinker_lib.commands.replay import overlaps_group, plan_as_dict
    plan = compute_plan("t", [0, 1], {TP0: 0, TP1: 0}, {TP0: 100, TP1: 50}, from_offset=20,
                        chunk_rows=10)
    assert plan_as_dict(plan) == {"topic": "t", "chunk_rows": 10, "messages": 110, "partitions": [
        {"partition": 0, "from_offset": 20, "to_offset": 99, "messages": 80},
        {"partition": 1, "from_offset": 20, "to_offset": 49, "messages": 30}]}
    assert overlaps_group(plan, {TP0: None, TP1: 20}) == {}     # starts at the commit: no overlap
    assert overlaps_group(plan, {TP0: 30, TP1: 500}) == {0: (20, 29, 30), 1: (20, 49, 500)}


def test_earlier_loads_are_read_from_this_replays_labels_only():
    """The labels of earlier runs name their exact ranges; labels of rows after a rejection, of
    other tables, topics or partitions, and `_` read as a LIKE wildcard must not be taken as
    this replay's batches. Only VISIBLE/COMMITTED ones hold rows."""
    from types import SimpleNamespace

    from sinker_lib import labels
    from sinker_lib.commands.replay import earlier_loads

    def lbl(table, topic, p, a, b):
        return labels.make_label("replay", table, {(topic, p): (a, b)})

    ours = [lbl("db.t_x", "ev_1", 0, 0, 99), lbl("db.t_x", "ev_1", 0, 100, 149)]
    rows = [("1", ours[0], "fe", "VISIBLE"), ("2", ours[1], "fe", "ABORTED"),
            ("3", labels.subset_label(ours[1], [("ev_1", 0, 101)]), "fe", "VISIBLE"),
            ("4", lbl("db.tXx", "ev_1", 0, 0, 9), "fe", "VISIBLE"),      # what `_` would match
            ("5", lbl("db.t_x", "ev_1", 1, 0, 9), "fe", "VISIBLE")]
    asked = []

    class Cursor:
        description = [("TransactionId",), ("Label",), ("Coordinator",), ("TransactionStatus",)]

        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def execute(self, sql, args):
            asked.append((sql, args))

        def fetchall(self):
            return rows      # the fake ignores the pattern: earlier_loads must check each label

    class Conn:
        def cursor(self):
            return Cursor()

        def close(self):
            pass

    cfg = SimpleNamespace(doris=SimpleNamespace(database="db", table="t_x"))
    plan = compute_plan("ev_1", [0], {TopicPartition("ev_1", 0): 0}, {TopicPartition("ev_1", 0): 200},
                        from_offset=0, chunk_rows=100)
    got = earlier_loads(cfg, plan, connect=lambda _d: (Conn(), "fe:9030"))
    assert got.ranges == {("ev_1", 0): {0: [(99, ours[0], True)], 100: [(149, ours[1], False)]}}
    assert got.finished == {ours[0]}
    assert asked == [("SHOW TRANSACTION FROM `db` WHERE LABEL LIKE %s", ("replay_db_t_x_ev_1_p0-%",))]


def test_labels_that_would_pass_128_characters_are_known_not_to_carry_offsets():
    from types import SimpleNamespace

    from sinker_lib.commands.replay import labels_carry_offsets

    def plan(topic):
        tp = TopicPartition(topic, 0)
        return compute_plan(topic, [0], {tp: 0}, {tp: 10**9}, from_offset=0, chunk_rows=100)
    cfg = SimpleNamespace(doris=SimpleNamespace(database="analytics", table="events"))
    assert labels_carry_offsets(cfg, plan("clicks"))
    assert not labels_carry_offsets(cfg, plan("c" * 75))
