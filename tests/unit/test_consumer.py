"""The consumer thread's watchdog for a join whose assignment kafka-python lost."""
from __future__ import annotations

import queue
import threading

from lib import consumer as cm
from lib.config import KafkaConfig


class FakeCoordinator:
    def __init__(self):
        self.rejoins = 0

    def request_rejoin(self):
        self.rejoins += 1


class FakeConsumer:
    def __init__(self):
        self._coordinator = FakeCoordinator()


def test_rejoin_is_requested_after_owning_nothing_for_a_while_then_backs_off(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(cm.time, "monotonic", lambda: now[0])
    t = cm.ConsumerThread(KafkaConfig(topics=("t",)), queue.Queue(), None, None, None, None,
                          threading.Event(), threading.Event())
    t.consumer = FakeConsumer()
    coord = t.consumer._coordinator
    t._watch_unassigned(False)                      # starts the clock
    now[0] += cm.UNASSIGNED_REJOIN_S - 1
    t._watch_unassigned(False)
    assert coord.rejoins == 0
    now[0] += 2
    t._watch_unassigned(False)
    assert coord.rejoins == 1
    now[0] += cm.UNASSIGNED_REJOIN_S + 1           # the interval doubled: not yet
    t._watch_unassigned(False)
    assert coord.rejoins == 1
    now[0] += cm.UNASSIGNED_REJOIN_S
    t._watch_unassigned(False)
    assert coord.rejoins == 2
    t._watch_unassigned(True)                       # partitions arrived: reset
    assert t._rejoin_after == cm.UNASSIGNED_REJOIN_S and t._unassigned_since is None
