"""One shutdown state for the threads of a pipeline, with its phases named and ordered.

    running → stop requested (a signal, or replay read its whole range)
            → draining   (the consumer hands on no more records; the batcher seals what it holds;
                          writers load what is sealed)
            → finishing  (the consumer commits what Doris confirmed, closes, exits)

``abort`` stands beside the phases: give up loading at once (a fatal error elsewhere, or the
shutdown timeout). Entering a phase enters every earlier one, so no thread can see "finishing"
without "draining" — the order the commit rule depends on.
"""
from __future__ import annotations

import threading

PHASES = ("running", "stop requested", "draining", "finishing")

# A stop signal is often delivered twice at once: a terminal's Ctrl-C and systemd's control-group
# stop reach every process, and the one-file binary's bootloader forwards what it gets. Signals
# this close to the first are the same request (pipeline.py, commands/workers.py).
SAME_SIGNAL_S = 1.0


class Shutdown:
    def __init__(self):
        self._lock = threading.Lock()
        self._phase = 0
        self._reached = [threading.Event() for _ in PHASES]
        self._reached[0].set()
        self._abort = threading.Event()

    @property
    def phase(self) -> str:
        return PHASES[self._phase]

    def _enter(self, index: int) -> None:
        with self._lock:
            for i in range(self._phase + 1, index + 1):
                self._reached[i].set()
            self._phase = max(self._phase, index)

    def request_stop(self) -> None:
        self._enter(1)

    def drain(self) -> None:
        self._enter(2)

    def finish(self) -> None:
        self._enter(3)

    def abort(self) -> None:
        self._abort.set()

    @property
    def stop_requested(self) -> bool:
        return self._reached[1].is_set()

    @property
    def draining(self) -> bool:
        return self._reached[2].is_set()

    @property
    def finishing(self) -> bool:
        return self._reached[3].is_set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def wait_abort(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` unless aborted first (writers' backoff)."""
        return self._abort.wait(seconds)

    def wait_stop_requested(self, seconds: float) -> bool:
        return self._reached[1].wait(seconds)
