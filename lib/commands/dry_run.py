"""``sinker dry-run``: map up to N messages exactly as ``run`` would and show the body.

It reads with manually assigned partitions (no group membership, so the running group is not
rebalanced) and never commits and never writes to Doris. ``--from committed`` starts where the
group's committed offsets are, which previews what ``run`` would load next.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from ..dead_letter import category
from ..errors import ConfigError
from .. import kafka_client
from ..kafka_client import TopicPartition
from ..records import fields

log = logging.getLogger("sinker.dry_run")


@dataclass
class DryRunSummary:
    messages: int = 0
    other_tables: int = 0        # read, but routed to another table (or no_route: skip)
    rows: int = 0
    bytes: int = 0
    dead: list = field(default_factory=list)
    headers: dict = field(default_factory=dict)

    def reasons(self) -> Counter:
        return Counter(category(d.reason) for d in self.dead)


def open_reader(cfg, start: str, with_group: bool):
    """A consumer assigned to every partition of the topics (with kafka.topics_pattern: of the
    topics it matches now), positioned at `start`."""
    c = kafka_client.open_reader(cfg.kafka, group=with_group)
    tps = []
    for topic in cfg.kafka.topics:
        parts = c.partitions_for_topic(topic)
        if not parts:
            c.close()
            raise ConfigError(f"kafka.topics: topic {topic!r} does not exist on "
                              f"{', '.join(cfg.kafka.brokers)}")
        tps += [TopicPartition(topic, p) for p in sorted(parts)]
    if cfg.kafka.topics_pattern:
        for topic in kafka_client.subscribed_topics(cfg.kafka, c.topics()):
            if topic not in cfg.kafka.topics:
                tps += [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        if not tps:
            c.close()
            raise ConfigError(f"kafka.topics_pattern {cfg.kafka.topics_pattern!r} matches no "
                              f"topic on {', '.join(cfg.kafka.brokers)} yet: nothing to read; "
                              "produce to a matching topic first, or fix the pattern")
    c.assign(tps)
    if start == "earliest":
        c.seek_to_beginning(*tps)
    elif start == "latest":
        c.seek_to_end(*tps)
    elif start == "committed":
        for tp in tps:
            off = c.committed(tp)
            if off is None:
                (c.seek_to_beginning if cfg.kafka.start_from == "earliest" else c.seek_to_end)(tp)
            else:
                c.seek(tp, off)
    else:
        raise ConfigError(f"--from: expected earliest, latest or committed, got {start!r}")
    return c, tps


def dry_run(cfg, mapper, limit: int, start: str, out, wait_s: float = 5.0,
            routes=None) -> DryRunSummary:
    """Map up to `limit` messages; write the exact Stream Load body to the binary stream `out`.
    ``cfg`` is one table's config (lib/config.py's one_table) and ``routes`` the whole config:
    messages its routes send elsewhere (the first route that takes a message wins) are counted,
    not mapped; those a field rule cannot read are dead letters, as in ``run``."""
    from ..routing import Router
    table = f"{cfg.doris.database}.{cfg.doris.table}"
    router = Router(routes if routes is not None else cfg)
    ours = next((t.index for t in router.targets if t.full_name == table), None)
    if ours is None:        # --table naming a table the config does not route to
        router = Router(cfg)
        ours = next(t.index for t in router.targets if t.full_name == table)
    unreadable = router.unrouted_mappers[router.unreadable.index]
    c, tps = open_reader(cfg, start, with_group=(start == "committed"))
    summary = DryRunSummary(headers=mapper.headers())
    try:
        ends = c.end_offsets(tps)
        positions = {tp: c.position(tp) for tp in tps}
        pending = {tp for tp in tps if positions[tp] < ends[tp]} if start != "latest" else set(tps)
        idle_deadline = time.monotonic() + wait_s
        while summary.messages < limit and pending and time.monotonic() < idle_deadline:
            result = c.poll(timeout_ms=200, max_records=min(2000, limit - summary.messages))
            if not result:
                continue
            idle_deadline = time.monotonic() + wait_s
            for tp, records in result.items():
                records = records[: limit - summary.messages]
                if not records:
                    continue
                lines: list[bytes] = []
                for t, recs in router.split(tp.topic, records):
                    if t == ours:
                        summary.bytes += mapper.map_records(recs, lines, summary.dead)
                    elif t == router.unreadable.index:
                        unreadable.map_records(recs, lines, summary.dead)
                    else:
                        summary.other_tables += len(recs)
                summary.rows += len(lines)
                summary.messages += len(records)
                out.writelines(lines)
                if start != "latest" and fields(records[-1]).offset(records[-1]) + 1 >= ends[tp]:
                    pending.discard(tp)
        out.flush()
    finally:
        c.close()
    return summary
