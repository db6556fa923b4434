"""Replay's pure parts: the plan (clamped, ends fixed), offsets parsing, the resume command,
and the bounds the consumer asks (done by position, not by a record at end - 1)."""
from __future__ import annotations

import pytest

from lib.commands.replay import ReplayBounds, compute_plan, parse_offsets, resume_command
from lib.errors import ConfigError
from lib.kafka_client import TopicPartition
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
    cmd = resume_command("c.yaml", plan, {("t", 0): 60})
    assert "--from-offset 0:60" in cmd and "--to-offset 0:99" in cmd


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
