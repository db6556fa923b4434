"""The one place that reads fields of a Kafka record, for either client, without wrapping it.

kafka-python hands out ``ConsumerRecord`` namedtuples (fields); confluent-kafka hands out
``Message`` objects (methods, and the timestamp as a ``(type, ms)`` pair). A wrapper object per
record would cost more than librdkafka spends on the record, so code that reads records picks
the getters once per list with ``fields(records[0])`` and maps them over the list (C loops, no
object per record). Positional getters on the namedtuple are about twice as fast as attributes.
"""
from __future__ import annotations

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


def _message_timestamp(message) -> int:
    return message.timestamp()[1]


KAFKA_PYTHON = Fields(*(itemgetter(ConsumerRecord._fields.index(n)) for n in Fields._fields))
CONFLUENT = Fields(Message.topic, Message.partition, Message.offset, _message_timestamp,
                   Message.key, Message.value)
ATTRIBUTES = Fields(*map(attrgetter, Fields._fields))   # any other record with these attributes


def fields(record) -> Fields:
    """The getters for ``record``'s type (and every record of its poll result)."""
    kind = type(record)
    if kind is ConsumerRecord:
        return KAFKA_PYTHON
    if kind is Message:
        return CONFLUENT
    return ATTRIBUTES


def identity(record) -> tuple[str, int, int, int, bytes | None]:
    """(topic, partition, offset, timestamp, value): what a dead letter keeps of a record."""
    f = fields(record)
    return f.topic(record), f.partition(record), f.offset(record), f.timestamp(record), f.value(record)
