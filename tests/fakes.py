"""Small fakes shared by the unit tests (integration tests use the real broker and the emulator)."""
from __future__ import annotations

import socket
from collections import namedtuple

from sinker_lib.kafka_client import TopicPartition
from sinker_lib.observability import Observers
from sinker_lib.observability.health import Health
from sinker_lib.observability.metrics import Metrics

# The fields of a Kafka record that sinker reads (kafka-python's ConsumerRecord has them too).
Rec = namedtuple("Rec", "topic partition offset timestamp key value")


def recs(topic, partition, offsets, value=b"v"):
    return [Rec(topic, partition, o, 1000 + o, None, value) for o in offsets]


def observers() -> Observers:
    return Observers(Metrics(), Health())


class Clock:
    """A settable monotonic clock: ``clock()`` reads it, ``clock.t`` or ``advance`` moves it."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FakeMapper:
    """Every record becomes one line; values equal to b'bad' become dead letters."""

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

    def map_slice(self, records, out, dead):
        return self.map_records(records, out, dead), False


class FakeSchema:
    """SchemaSource's face to the batcher: the current mapper and a generation to compare."""

    def __init__(self):
        self.built = 0
        self.generation = 0
        self.m = self._build()

    def _build(self):
        self.built += 1
        return FakeMapper()

    def mapper(self):
        return self.m

    def change(self):
        self.m = self._build()
        self.generation += 1


class FakeReader:
    """lib.kafka_client.KafkaReader's surface over in-memory partitions, for the consumer thread.

    ``log[tp]`` holds the records; ``poll`` returns up to ``batch`` records per unpaused assigned
    partition from its position. ``rebalance(assigned)`` queues a rebalance event as the I/O
    thread would; ``commits`` records every commit; ``fail_commits`` makes the next ones raise;
    ``lose_commit_answers`` makes the next ones happen and then raise (a timed-out request the
    broker carried out)."""

    def __init__(self, cfg=None, group=True, *, log=None, batch=3, committed=None):
        self.group = group
        self.log = {TopicPartition(*tp): list(v) for tp, v in (log or {}).items()}
        self.batch = batch
        self.positions: dict = {}
        self._assigned: set = set()
        self._paused: set = set()
        self.pauses: list = []          # every pause() call's partitions
        self._events: list = []
        self._revoked: set = set()
        self._taken: set | None = None
        # the group's commits: {tp: (offset, metadata)} (a bare offset means empty metadata)
        self.group_offsets = {TopicPartition(*k): (v if isinstance(v, tuple) else (v, ""))
                              for k, v in (committed or {}).items()}
        self.commits: list = []
        self.fail_commits = 0
        self.lose_commit_answers = 0
        self.fail_committed = 0      # the next committed-offset reads raise (a broker outage)
        self.subscribed = None
        self.patterns = None
        self.closed = False
        self.rejoins = 0
        self.poll_timeouts: list = []
        self._pending_revocation: set = set()
        self.reachable = True        # what broker_reachable() answers

    # membership
    def subscribe(self, topics, before_revoke=None, patterns=()):
        self.subscribed = list(topics)
        self.patterns = tuple(patterns)

    def rebalance(self, assigned):
        """A rebalance to ``assigned`` that the next ``poll`` carries out (as kafka-python's poll
        joins the group): everything owned is revoked first (eager protocol), and every
        assigned partition starts at the group's committed offset (or 0)."""
        self._events.append({TopicPartition(*tp) for tp in assigned})

    def lose_join(self):
        """A rebalance whose join kafka-python 3.0 loses: the next ``poll`` revokes everything,
        no assignment ever follows, and ``assignment()`` goes on listing the old partitions
        (pending revocation: not fetched)."""
        self._events.append(None)

    def _rebalance_now(self):
        while self._events:
            new = self._events.pop(0)
            self._revoked |= self._assigned
            self._pending_revocation = set(self._assigned) if new is None else set()
            if new is None:
                continue
            for tp in new - self._assigned:     # kafka-python keeps the position of a partition
                self.positions[tp] = self.group_offsets.get(tp, (0, ""))[0]   # it gets back
            self._assigned = set(new)
            self._paused = set()             # kafka-python: newly assigned partitions are unpaused
            self._taken = set(new)

    def take_rebalance(self):
        revoked, assigned = self._revoked, self._taken
        self._revoked, self._taken = set(), None
        return revoked, assigned

    def request_rejoin(self):
        self.rejoins += 1
        return True

    # reading
    def assign(self, partitions):
        self._assigned = {TopicPartition(*tp) for tp in partitions}

    def seek(self, tp, offset):
        self.positions[tp] = offset

    def seek_to_beginning(self, *tps):
        for tp in tps:
            self.positions[tp] = 0

    def seek_to_end(self, *tps):
        for tp in tps:
            self.positions[tp] = self.end_offsets([tp])[tp]

    def position(self, tp, timeout_ms=None):
        return self.positions.get(tp, 0)

    def poll(self, timeout_ms, max_records=None):
        self.poll_timeouts.append(timeout_ms)
        self._rebalance_now()
        out = {}
        for tp in sorted(self._assigned - self._paused - self._pending_revocation):
            pos = self.positions.get(tp, 0)
            got = [r for r in self.log.get(tp, []) if r.offset >= pos][: self.batch]
            if got:
                out[tp] = got
                self.positions[tp] = got[-1].offset + 1
        return out

    def assignment(self):
        return set(self._assigned)

    def pause(self, *tps):
        self.pauses.append(set(tps))
        self._paused |= set(tps)

    def resume(self, *tps):
        self._paused -= set(tps)

    def paused(self):
        return set(self._paused)

    # offsets
    def commit(self, offsets, timeout_ms=10_000):
        """``{tp: (offset, metadata)}``, as KafkaReader.commit takes it."""
        if self.fail_commits:
            self.fail_commits -= 1
            raise RuntimeError("commit timed out")
        self.commits.append(dict(offsets))
        self.group_offsets.update(offsets)
        if self.lose_commit_answers:
            self.lose_commit_answers -= 1
            raise RuntimeError("KafkaTimeoutError: Timeout after waiting for 10000 ms")

    def committed(self, tp, timeout_ms=5000):
        found = self.group_offsets.get(tp)
        return None if found is None else found[0]

    def committed_with_metadata(self, tp, timeout_ms=5000):
        if self.fail_committed:
            self.fail_committed -= 1
            raise RuntimeError("KafkaTimeoutError: Failed to get offsets by times in 5000 ms")
        return self.group_offsets.get(tp)

    def topics(self):
        return {tp.topic for tp in self.log}

    def broker_reachable(self):
        return self.reachable

    def partitions_for_topic(self, topic):
        return {tp.partition for tp in self.log if tp.topic == topic} or None

    def end_offsets(self, tps, timeout_ms=10_000):
        return {tp: (self.log[tp][-1].offset + 1 if self.log.get(tp) else 0) for tp in tps}

    def close(self):
        self.closed = True
