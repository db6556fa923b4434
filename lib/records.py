"""The one place that reads fields of a Kafka record, for either client, without wrapping it.

kafka-python hands out ``ConsumerRecord`` namedtuples (fields); confluent-kafka hands out
``Message`` objects (methods, and the timestamp as a ``(type, ms)`` pair). A wrapper object per
record would cost more than librdkafka spends on the record, so code that reads records picks
the getters once per list with ``fields(records[0])`` and maps them over the list (C loops, no
object per record). Positional getters on the namedtuple are about twice as fast as attributes.
Once mapped, a batch keeps a ``Slice`` of each list (flat containers of what it may still need),
not the records.
"""
from __future__ import annotations

from array import array
from operator import attrgetter, itemgetter
from typing import Callable, NamedTuple

from confluent_kafka import Message
from kafka.consumer.fetcher import ConsumerRecord


class Fields(NamedTuple):
    """Getters of one record type; ``timestamp`` is ms since the epoch, negative when none."""
    topic: Callable
    partition: Callable
    offset: Callable
    timestamp: Callable
    key: Callable
    value: Callable


class Kept(NamedTuple):
    """A record rebuilt from a Slice, for the rare paths that need one record (re-mapping a
    line Doris rejected, its dead letter)."""
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def _message_timestamp(message) -> int:
    return message.timestamp()[1]


KAFKA_PYTHON = Fields(*(itemgetter(ConsumerRecord._fields.index(n)) for n in Fields._fields))
CONFLUENT = Fields(Message.topic, Message.partition, Message.offset, _message_timestamp,
                   Message.key, Message.value)
KEPT = Fields(*(itemgetter(i) for i in range(len(Fields._fields))))
ATTRIBUTES = Fields(*map(attrgetter, Fields._fields))   # any other record with these attributes


def fields(record) -> Fields:
    """The getters for ``record``'s type (and every record of its poll result)."""
    kind = type(record)
    if kind is ConsumerRecord:
        return KAFKA_PYTHON
    if kind is Message:
        return CONFLUENT
    if kind is Kept:
        return KEPT
    return ATTRIBUTES


class Slice:
    """What a batch keeps of one partition's mapped records until Doris confirms them: the
    fields a rejected row's dead letter and its re-mapping read, in flat containers. The
    client's record objects (a 13-field tuple, a headers list and two ints per kafka-python
    record; a Message with its own topic string per confluent-kafka one) are freed once mapped;
    the values are the client's own bytes objects, not copies. When every record's line is its
    value and a newline (the json passthrough), the values are not kept at all: they are read
    back from the batch's lines, which would otherwise hold each of them twice."""
    __slots__ = ("topic", "partition", "offsets", "timestamps", "keys", "_values", "_lines",
                 "_start")

    def __init__(self, topic: str, partition: int, offsets, timestamps, keys, values: list | None,
                 lines: list | None = None, start: int = 0):
        self.topic = topic
        self.partition = partition
        self.offsets = offsets        # a range when the slice has no gaps (the common case)
        self.timestamps = timestamps  # array('q'), or a list when a record had none
        self.keys = keys              # None when every key is None
        self._values = values         # None: lines[start:start + len(offsets)] are value + b"\n"
        self._lines = lines
        self._start = start

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def values(self) -> list:
        if self._values is not None:
            return self._values
        return [line[:-1] for line in self._lines[self._start:self._start + len(self.offsets)]]

    def records(self) -> list[Kept]:
        n = len(self.offsets)
        keys = self.keys if self.keys is not None else [None] * n
        return list(map(Kept, [self.topic] * n, [self.partition] * n, self.offsets,
                        self.timestamps, keys, self.values))


class Each:
    """Records of any partitions in any order, kept one by one: dead letters sent again
    (``sinker dead-letters resend``), never the hot path. Read like a Slice."""
    __slots__ = ("kept",)

    def __init__(self, records: list):
        self.kept = [Kept(*(getter(r) for getter in fields(r))) for r in records]

    def __len__(self) -> int:
        return len(self.kept)

    @property
    def values(self) -> list:
        return [k.value for k in self.kept]

    def records(self) -> list[Kept]:
        return self.kept


def keep(topic: str, partition: int, records: list, lines: list | None = None,
         start: int = 0) -> Slice:
    """The Slice of one partition's records, in rising offsets (C loops over the list, no object
    per record). ``lines``: the batch's lines, when ``lines[start:]`` are these records' values
    each with a newline (the values are then read back from them, not kept)."""
    f = fields(records[0])
    first, last = f.offset(records[0]), f.offset(records[-1])
    # offsets rise within a partition: as many as the span means no gap
    offsets = range(first, last + 1) if last - first + 1 == len(records) else \
        array("q", map(f.offset, records))
    timestamps = list(map(itemgetter(1), map(Message.timestamp, records)) if f is CONFLUENT
                      else map(f.timestamp, records))
    try:
        timestamps = array("q", timestamps)
    except TypeError:             # a record without a timestamp (None): kept as it is
        pass
    keys = list(map(f.key, records))
    if keys.count(None) == len(keys):
        keys = None
    values = None if lines is not None else list(map(f.value, records))
    return Slice(topic, partition, offsets, timestamps, keys, values, lines, start)


def identity(record) -> tuple[str, int, int, int, bytes | None]:
    """(topic, partition, offset, timestamp, value): what a dead letter keeps of a record."""
    f = fields(record)
    return f.topic(record), f.partition(record), f.offset(record), f.timestamp(record), f.value(record)
