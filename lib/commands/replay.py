"""``sinker replay``: a bounded backfill that is safe to re-run from cron.

It fixes the end offsets when it starts, reads only the partitions it is given (no consumer
group: the running group's offsets are never touched), and loads through the same pipeline as
``run``. Its batches are cut per partition at offsets that are multiples of ``chunk_rows``, and
each label names (table, topic, partition, first, last): re-running the same replay forms the same
batches with the same labels, so Doris answers "Label Already Exists" instead of loading twice —
for as long as Doris remembers Stream Load labels (``streaming_label_keep_max_second``, 12 hours
by default). A file lock keeps two runs of the same replay from overlapping.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass

from .. import labels
from ..config import with_labels
from ..errors import AlreadyRunning, ConfigError, Interrupted, TopicNotFound
from ..kafka_client import TopicPartition, missing_topics_message, open_reader
from ..records import fields

log = logging.getLogger("sinker.replay")


@dataclass(frozen=True)
class ReplayPlan:
    topic: str
    partitions: tuple
    start: dict            # TopicPartition -> first offset to load
    end: dict              # TopicPartition -> stop before this offset (fixed at start)
    chunk_rows: int

    @property
    def total(self) -> int:
        return sum(max(0, self.end[tp] - self.start[tp]) for tp in self.partitions)


LABEL_PREFIX = "replay"
_IN_DORIS = ("VISIBLE", "COMMITTED")


@dataclass(frozen=True)
class EarlierLoads:
    """What earlier runs of this replay left in Doris, read from its labels when a run starts.

    ``ranges``: (topic, partition) -> {first: [(last, label, finished), ...]} of every earlier
    batch, so this run can form the same batches again: the last chunk of a run whose end has
    moved since loaded under the label of its exact range. ``finished``: the labels whose rows
    are in Doris (VISIBLE or COMMITTED); a batch under one of them is neither loaded nor
    dead-lettered again."""
    ranges: dict
    finished: frozenset

    @classmethod
    def none(cls) -> "EarlierLoads":
        return cls({}, frozenset())


def earlier_loads(cfg, plan: ReplayPlan, connect=None) -> EarlierLoads:
    """The labels of this replay's earlier runs, per partition, from ``SHOW TRANSACTION ... LIKE``
    (Doris >= 2.1; newer builds allow it to admin users only). Doris keeps labels for 12 hours
    or its last 2,000 loads per database, so this sees what earlier runs in that window did —
    the same window "Label Already Exists" relies on. The pattern is not escaped: Doris reads
    it as a regular expression with % for any run, MySQL's LIKE reads _ as any character; both
    find at least this head's labels, and ``parse_range`` keeps exactly those."""
    if connect is None:
        from ..schema import connect
    table = f"{cfg.doris.database}.{cfg.doris.table}"
    ranges, finished = {}, set()
    conn, _where = connect(cfg.doris)
    try:
        with conn.cursor() as cur:
            for tp in plan.partitions:
                head = labels.range_head(LABEL_PREFIX, table, tp.topic, tp.partition)
                cur.execute(f"SHOW TRANSACTION FROM `{cfg.doris.database}` WHERE LABEL LIKE %s",
                            (head + "%",))
                names = [d[0].lower() for d in cur.description]
                li, si = names.index("label"), names.index("transactionstatus")
                for row in cur.fetchall():
                    label = row[li]
                    found = labels.parse_range(label, head)
                    if found is None:
                        continue
                    done = str(row[si]).upper() in _IN_DORIS
                    if done:
                        finished.add(label)
                    ranges.setdefault((tp.topic, tp.partition), {}).setdefault(found[0], []) \
                        .append((found[1], label, done))
    finally:
        conn.close()
    for by_first in ranges.values():      # a finished batch first: that is the one to form again
        for found in by_first.values():
            found.sort(key=lambda x: (not x[2], x[0]))
    return EarlierLoads(ranges, frozenset(finished))


def labels_carry_offsets(cfg, plan: ReplayPlan) -> bool:
    """Labels past 128 characters lose their readable offsets (make_label cuts them): earlier
    runs' batches cannot be read back from such labels. Tried on the widest label this plan makes."""
    table = f"{cfg.doris.database}.{cfg.doris.table}"
    widest = max((max(plan.end[tp], 1) for tp in plan.partitions), default=1)
    for tp in plan.partitions:
        label = labels.make_label(LABEL_PREFIX, table, {(tp.topic, tp.partition): (widest, widest)})
        if labels.parse_range(label, labels.range_head(LABEL_PREFIX, table, tp.topic, tp.partition)) is None:
            return False
    return True


class ReplayBounds:
    """Where each partition of a replay starts and ends, and which are done: what the consumer
    thread asks before handing records on. Done means the read position reached the end fixed at
    start — not "saw the record at end - 1", which a transaction marker or a compacted gap
    before the end would never show. Used from the consumer thread only; ``earlier`` is for the
    batcher and the writers (EarlierLoads)."""

    def __init__(self, plan: ReplayPlan, earlier: EarlierLoads | None = None):
        self.earlier = earlier or EarlierLoads.none()
        self.partitions = plan.partitions
        self.start = plan.start
        self.end = plan.end
        self.chunk_rows = plan.chunk_rows
        self._done = {tp for tp in plan.partitions if plan.start[tp] >= plan.end[tp]}
        self._all_done = len(self._done) == len(self.partitions)

    def trim(self, tp, records: list) -> list:
        """The records below the partition's end."""
        end = self.end[tp]
        if not records:
            return records
        offset = fields(records[0]).offset
        if offset(records[-1]) < end:
            return records
        return [r for r in records if offset(r) < end]

    def reached(self, tp, position: int) -> bool:
        """Record the partition's read position; True when it is done now."""
        if position >= self.end[tp]:
            self._done.add(tp)
            self._all_done = len(self._done) == len(self.partitions)
            return True
        return False

    def is_done(self, tp) -> bool:
        return tp in self._done

    def finished(self) -> bool:
        return self._all_done


def parse_offsets(spec: str | None, what: str):
    """``N`` (every partition) or ``P:N,P:N`` (per partition) → int | dict[int, int] | None."""
    if spec is None or spec == "":
        return None
    try:
        if ":" not in spec:
            return int(spec)
        out = {}
        for part in spec.split(","):
            p, _, n = part.partition(":")
            out[int(p)] = int(n)
        return out
    except ValueError:
        raise ConfigError(f"{what}: expected an offset N or per-partition P:N,P:N, got {spec!r}")


def _per_partition(value, partition: int):
    if isinstance(value, dict):
        return value.get(partition)
    return value


def compute_plan(topic, partitions, beginning, ends, *, from_offset=None, from_times=None,
                 to_offset=None, to_times=None, chunk_rows: int) -> ReplayPlan:
    """Pure: offsets in, plan out. ``to_offset`` is inclusive (the last offset to load);
    ``from_times``/``to_times`` are the offsets Kafka returned for the timestamps (None = past end)."""
    start, end = {}, {}
    for p in partitions:
        tp = TopicPartition(topic, p)
        lo, hi = beginning[tp], ends[tp]
        s = _per_partition(from_offset, p)
        if s is None and from_times is not None:
            s = from_times.get(tp)
            s = hi if s is None else s
        if s is None:
            raise ConfigError(f"replay: no start for partition {p}: give --from-offset or "
                              "--from-timestamp (or P:N for every partition listed)")
        e = _per_partition(to_offset, p)
        if e is not None and _per_partition(from_offset, p) is not None and s > e:
            raise ConfigError(f"replay: partition {p}: --from-offset {s} is after --to-offset {e} "
                              "(the range is reversed): the first offset comes first")
        if e is not None:
            e = e + 1
        elif to_times is not None:
            e = to_times.get(tp)
            e = hi if e is None else e
        else:
            e = hi
        start[tp] = min(max(s, lo), hi)
        end[tp] = min(max(e, start[tp]), hi)
    return ReplayPlan(topic, tuple(TopicPartition(topic, p) for p in partitions), start, end,
                      chunk_rows)


def plan_replay(cfg, *, topic=None, partitions=None, from_offset=None, from_timestamp_ms=None,
                to_offset=None, to_timestamp_ms=None) -> ReplayPlan:
    """Ask Kafka for the partitions and offsets, then fix the plan (end offsets never move)."""
    route = cfg.routes[0]
    if route.where is not None or route.table_from:
        raise ConfigError(f"replay loads whole topics into one table, and the route of "
                          f"{cfg.doris.database}.{cfg.doris.table} picks its messages by a field "
                          "(where / table_from): replay a route without a field rule, or reset "
                          "the group's offsets and let `sinker run` read the range again")
    if not topic and not cfg.kafka.topics:
        raise ConfigError(f"replay reads one topic, and kafka.topics is empty (kafka.topics_pattern "
                          f"{cfg.kafka.topics_pattern!r} matches topics, it names none): pass "
                          "--topic NAME")
    topic = topic or cfg.kafka.topics[0]
    if from_timestamp_ms is not None and to_timestamp_ms is not None \
            and from_timestamp_ms > to_timestamp_ms:
        raise ConfigError("replay: --from-timestamp is after --to-timestamp (the range is "
                          "reversed): the earlier time comes first")
    c = open_reader(cfg.kafka, group=False)
    try:
        known = c.partitions_for_topic(topic)
        if not known:
            raise TopicNotFound(missing_topics_message([topic], c.topics(), cfg.kafka.brokers))
        parts = sorted(partitions) if partitions else sorted(known)
        missing = [p for p in parts if p not in known]
        if missing:
            raise ConfigError(f"--partitions: topic {topic} has no partition {missing}; it has "
                              f"{sorted(known)}")
        tps = [TopicPartition(topic, p) for p in parts]
        beginning = c.beginning_offsets(tps)
        ends = c.end_offsets(tps)

        def times(ts):
            if ts is None:
                return None
            return c.offsets_for_times({tp: ts for tp in tps})

        return compute_plan(topic, parts, beginning, ends, from_offset=from_offset,
                            from_times=times(from_timestamp_ms), to_offset=to_offset,
                            to_times=times(to_timestamp_ms), chunk_rows=cfg.batch.max_rows)
    finally:
        c.close()


class ReplayLock:
    """An flock on a file named after the replay; released by the kernel if we die."""

    def __init__(self, cfg, plan: ReplayPlan, lock_dir: str | None = None):
        # keyed on what it writes (table, topic, partitions), not on offsets that move between runs
        key = f"{cfg.doris.database}.{cfg.doris.table}|{plan.topic}|" + ",".join(
            str(tp.partition) for tp in plan.partitions)
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        self.path = os.path.join(lock_dir or tempfile.gettempdir(), f"sinker-replay-{digest}.lock")
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise AlreadyRunning(f"another run of this replay is still going (pid {holder}, lock "
                                 f"{self.path}); this one did nothing. Let it finish, or stop it.")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def progress_by_partition(plan: ReplayPlan, pipeline) -> dict:
    """Rows confirmed in Doris (or dead-lettered) per partition, from the tracker's positions."""
    done = pipeline.tracker.peek_committable()
    out = {}
    for tp in plan.partitions:
        pos = done.get((tp.topic, tp.partition), plan.start[tp])
        out[tp.partition] = (max(0, min(pos, plan.end[tp]) - plan.start[tp]),
                             plan.end[tp] - plan.start[tp])
    return out


def resume_command(config_path: str, plan: ReplayPlan, progress_positions: dict, table: str) -> str:
    """The command that loads the rest of the plan into the same table (``table`` is db.table)."""
    frm = ",".join(f"{tp.partition}:{progress_positions.get((tp.topic, tp.partition), plan.start[tp])}"
                   for tp in plan.partitions)
    to = ",".join(f"{tp.partition}:{plan.end[tp] - 1}" for tp in plan.partitions)
    return (f"sinker replay -c {config_path} --topic {plan.topic} --table {table} "
            f"--from-offset {frm} --to-offset {to}")


def plan_as_dict(plan: ReplayPlan) -> dict:
    """What ``--plan`` shows: per partition the offsets it would load and how many messages that
    is (at most: compaction and transaction markers leave gaps)."""
    return {"topic": plan.topic, "chunk_rows": plan.chunk_rows, "messages": plan.total,
            "partitions": [{"partition": tp.partition, "from_offset": plan.start[tp],
                            "to_offset": plan.end[tp] - 1,
                            "messages": max(0, plan.end[tp] - plan.start[tp])}
                           for tp in plan.partitions]}


def group_committed(cfg, plan: ReplayPlan) -> dict:
    """The consumer group's committed offset of each planned partition (None: no commit). Read
    without joining the group: nothing is committed and the group is not rebalanced."""
    c = open_reader(cfg.kafka, group=True)
    try:
        return {tp: c.committed(tp) for tp in plan.partitions}
    finally:
        c.close()


def overlaps_group(plan: ReplayPlan, committed: dict) -> dict:
    """``{partition: (first, last, committed)}`` for the planned ranges that start below what the
    group committed: ``run`` loaded those offsets under its own labels, so replaying them loads
    their rows a second time."""
    out = {}
    for tp in plan.partitions:
        done = committed.get(tp)
        if done is not None and plan.start[tp] < min(done, plan.end[tp]):
            out[tp.partition] = (plan.start[tp], min(done, plan.end[tp]) - 1, done)
    return out


@dataclass
class ReplayOutcome:
    """What a replay did, for sinker.py to report and turn into an exit code."""
    plan: ReplayPlan
    done: bool                      # the whole range is in Doris or in the dead-letter output
    loaded: int
    dead_lettered: int
    error: BaseException | None
    resume: str                     # the command that finishes the job (when not done)


class _Progress(threading.Thread):
    """Every half second, hands per-partition progress to ``on_progress`` (a terminal's bars);
    without one, logs a progress line every ``interval_s``."""

    def __init__(self, plan: ReplayPlan, pipeline, on_progress, interval_s: float = 5.0):
        super().__init__(name="replay-progress", daemon=True)
        self.plan, self.pipeline, self.on_progress, self.interval_s = plan, pipeline, on_progress, interval_s
        self.stop = threading.Event()

    def run(self):
        last = 0.0
        while not self.stop.wait(0.5):
            if self.on_progress is not None:
                self.on_progress(progress_by_partition(self.plan, self.pipeline))
            elif time.monotonic() - last >= self.interval_s:
                last = time.monotonic()
                self._log()
        if self.on_progress is not None:
            self.on_progress(progress_by_partition(self.plan, self.pipeline))
        else:
            self._log()

    def _log(self):
        prog = progress_by_partition(self.plan, self.pipeline)
        done = sum(d for d, _ in prog.values())
        total = sum(t for _, t in prog.values())
        log.info("replay progress: %d/%d rows (%s)", done, total,
                 ", ".join(f"p{p}: {d}/{t}" for p, (d, t) in sorted(prog.items())))


def _earlier_or_none(cfg, plan: ReplayPlan) -> EarlierLoads:
    if not labels_carry_offsets(cfg, plan):
        log.warning("the labels of this replay are longer than Doris's 128 characters and lose "
                    "their offsets: a re-run after the end moved (no --to-offset) may load the "
                    "rows of the earlier run's last chunk twice, and writes its dead letters again; "
                    "shorter database, table or topic names avoid it")
        return EarlierLoads.none()
    try:
        earlier = earlier_loads(cfg, plan)
    except Exception as e:  # noqa: BLE001 - the loads themselves will say what is wrong with Doris
        log.warning("could not read the labels of earlier runs of this replay from Doris (%s): a "
                    "re-run after the end moved (no --to-offset) may load the rows of the earlier "
                    "run's last chunk twice, and dead letters are written again. Newer Doris "
                    "builds allow SHOW TRANSACTION to admin users only", e)
        return EarlierLoads.none()
    n = sum(len(found) for by_first in earlier.ranges.values() for found in by_first.values())
    if n:
        log.info("earlier runs of this replay loaded %d batches still known to Doris: this run "
                 "forms them again (same labels) and skips the %d whose rows are in", n,
                 len(earlier.finished))
    return earlier


def run_replay(cfg, plan: ReplayPlan, config_path: str, *, lock_dir=None,
               on_progress=None) -> ReplayOutcome:
    """Run the plan through the pipeline, holding the replay's lock."""
    from ..pipeline import Pipeline
    with ReplayLock(cfg, plan, lock_dir):
        log.info("replay %s partitions %s: %d messages, offsets %s", plan.topic,
                 [tp.partition for tp in plan.partitions], plan.total,
                 ", ".join(f"p{tp.partition}:{plan.start[tp]}..{plan.end[tp] - 1}"
                           for tp in plan.partitions))
        bounds = ReplayBounds(plan, _earlier_or_none(cfg, plan))
        # labelled loads, also with doris.group_commit: a re-run of the plan must load nothing twice
        pipeline = Pipeline(with_labels(cfg), label_prefix=LABEL_PREFIX, replay=bounds)
        pipeline.install_signal_handlers()
        reporter = _Progress(plan, pipeline, on_progress)
        reporter.start()
        try:
            result = pipeline.run()
        finally:
            reporter.stop.set()
            reporter.join(5)
    snap = pipeline.accounting.snapshot()
    done = result.error is None and bounds.finished() and pipeline.tracker.pending_count() == 0
    error = result.error
    if not done and pipeline.interrupted and getattr(error, "exit_code", 4) == 4:
        # a stop asked for (also one whose drain ran out of time) is not a failure
        error = Interrupted("interrupted by a signal; what was loaded is kept"
                            + (f" ({error})" if error is not None else ""))
    table = f"{cfg.doris.database}.{cfg.doris.table}"
    return ReplayOutcome(plan, done, snap["loaded"], snap["dead_lettered"], error,
                         resume_command(config_path, plan, pipeline.tracker.peek_committable(), table))
