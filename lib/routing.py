"""Routing: which table each message goes to — by its topic, and where a route says so, by a
field of the message (``where``, ``table_from``). Pure: the batcher hands it each partition's
slice of a poll result and gets the slice back split by target.

Routes are tried in order and the first that matches takes the message. A topic whose first
route has no field rule goes to that route's table whole, without looking at a message. A message
no route takes goes to the ``unmatched`` target: a dead letter with reason ``no_route``, or
skipped and counted (``unmatched: skip``). A message a field rule cannot read (not a JSON object)
is always a dead letter: skipping it would lose it without a trace — except a tombstone (a null
value) on a topic a Debezium route reads, which is skipped and counted, as that route would.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from . import dead_letter
from .config import BatchConfig, Config, target_config
from .mapping import Bad, loads
from .records import fields


class Target(NamedTuple):
    """Where a batch goes: one table (``cfg`` is the config its load sees), or one of the two
    outcomes of messages no route takes (``cfg`` None, no table)."""
    index: int
    db: str
    table: str
    cfg: Config | None
    batch: BatchConfig
    on_table_error: str = "stop"
    exactly_once: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.db}.{self.table}" if self.table else ""


NO_ROUTE = "no_route: no route takes this message (see routes: in the config)"


class Unrouted:
    """The mapper of the unmatched and unreadable targets: no rows, only dead letters (or, for
    ``unmatched: skip``, nothing: the batch counts them as skipped)."""

    def __init__(self, mode: str):
        self.mode = mode                # no_route | skip | unreadable

    def headers(self) -> dict[str, str]:
        return {}

    def map_records(self, records, out: list, dead: list) -> int:
        """The records' value bytes: what the batch holds (its memory budget, its max_bytes)."""
        value = fields(records[0]).value
        if self.mode != "skip":
            for rec in records:
                reason = NO_ROUTE if self.mode == "no_route" else _unreadable(value(rec))
                dead.append(dead_letter.of(rec, reason))
        return sum(len(v) for v in map(value, records) if v is not None)

    def map_slice(self, records, out: list, dead: list) -> tuple[int, bool]:
        return self.map_records(records, out, dead), False


def _unreadable(value) -> str:
    if not value:
        return "empty: message has no value"
    try:
        obj = loads(value)
    except Bad as b:
        return b.reason
    except (ValueError, TypeError, OverflowError) as e:
        return f"invalid_json: {str(e)[:200]}"
    return f"invalid_json: a route's field rule needs a JSON object, got {type(obj).__name__}"


class Router:
    """``split(topic, records)`` → ``[(target index, records), ...]``, each list in offset order."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.targets: list[Target] = []
        self._by_route: list[list[int]] = []
        i = 0
        for r in cfg.routes:
            idx = []
            for t in r.tables:
                tc = target_config(cfg, r, t)
                self.targets.append(Target(i, r.database, t, tc, r.batch, r.on_table_error,
                                           r.delivery == "exactly_once"))
                idx.append(i)
                i += 1
            self._by_route.append(idx)
        self.unmatched, self.unreadable, self.tombstone = (
            Target(i + k, "", "", None, cfg.batch, exactly_once=cfg.exactly_once) for k in range(3))
        self.unrouted_mappers = {i: Unrouted("skip" if cfg.unmatched == "skip" else "no_route"),
                                 i + 1: Unrouted("unreadable"), i + 2: Unrouted("skip")}
        self.targets += [self.unmatched, self.unreadable, self.tombstone]
        self._plans: dict[str, object] = {}
        # one table takes every message it reads (the single-table config): no holds needed
        self.single = len(cfg.routes) == 1 and len(cfg.routes[0].tables) == 1 \
            and cfg.routes[0].where is None and not cfg.routes[0].table_from

    def split(self, topic: str, records: list) -> list[tuple[int, list]]:
        plan = self._plans.get(topic)
        if plan is None:
            plan = self._plans[topic] = self._plan(topic)
        if type(plan) is int:
            return [(plan, records)]
        out: dict[int, list] = {}
        value = fields(records[0]).value
        steps, on_null = plan
        for rec in records:
            v = value(rec)
            t = on_null if v is None else self._pick(steps, v)
            got = out.get(t)
            if got is None:
                out[t] = [rec]
            else:
                got.append(rec)
        return list(out.items())

    def _plan(self, topic: str):
        """The routes that read ``topic``, as (rule, path, what) steps and where a null value
        goes; an int: all to one target."""
        steps = []
        on_null = self.unreadable.index
        for r, idx in zip(self.cfg.routes, self._by_route):
            if topic not in r.topics and not (r.topics_pattern is not None
                                              and re.fullmatch(r.topics_pattern, topic)):
                continue
            if r.mapping.envelope == "debezium":
                on_null = self.tombstone.index
            if r.where is not None:
                steps.append(("where", r.where.path, (r.where.equals, idx[0])))
            elif r.table_from:
                steps.append(("from", r.table_from, dict(zip(r.tables, idx))))
            else:
                if not steps:
                    return idx[0]
                steps.append(("all", (), idx[0]))
                break
        return (steps, on_null) if steps else self.unmatched.index

    def _pick(self, plan, value) -> int:
        try:
            obj = loads(value)           # as the mapper reads it: `-` is no 0 for a field rule
        except (Bad, ValueError, TypeError, OverflowError):
            return self.unreadable.index
        if type(obj) is not dict:
            return self.unreadable.index
        for kind, path, what in plan:
            if kind == "all":
                return what
            v = obj
            for p in path:
                v = v.get(p) if type(v) is dict else None
            if kind == "where":
                equals, t = what
                if v == equals and type(v) is type(equals):
                    return t
            elif type(v) is str and v in what:
                return what[v]
        return self.unmatched.index
