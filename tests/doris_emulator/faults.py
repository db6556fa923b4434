"""Fault injection for the Doris emulator: what a flaky or overloaded Doris does to a client.

Tests arm a fault kind with a probability (and optionally a seed and a maximum count); the HTTP
side asks `fire(kind)` at the point where that fault would happen and counts it in `fired`, so a
test can prove its scenario really met the fault.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass

KINDS = (
    "http_500",           # BE answers HTTP 500, nothing loaded
    "reset",              # BE reads part of the body, then resets the connection, nothing loaded
    "slow",               # BE sleeps delay_s before answering; the load still happens
    "publish_timeout",    # BE commits the rows, answers Status "Publish Timeout"
    "too_many_versions",  # BE loads nothing, Status Fail with [E-235]
    "commit_then_drop",   # BE commits the rows, then closes the connection without answering
    "txn_limit",          # BE refuses at begin: running txns on db larger than limit
    "label_running",      # BE answers Label Already Exists + RUNNING without loading
    "fe_500",             # FE answers HTTP 500 instead of the redirect
)


@dataclass
class _Rule:
    rate: float
    delay_s: float
    rng: random.Random
    left: int | None


class Faults:
    """Thread-safe registry of armed faults and how often each fired."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rules: dict[str, _Rule] = {}
        self.fired: dict[str, int] = {}

    def set(self, kind: str, rate: float = 1.0, delay_s: float = 0.0, seed: int | None = None,
            count: int | None = None) -> None:
        """Arm `kind`: it fires on a load with probability `rate`, at most `count` times."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose one of: {', '.join(KINDS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {rate}")
        with self._lock:
            self._rules[kind] = _Rule(rate, delay_s, random.Random(seed), count)

    def clear(self) -> None:
        """Disarm every fault and reset the counts (a fresh start for the next scenario)."""
        with self._lock:
            self._rules.clear()
            self.fired = {}

    def armed(self) -> bool:
        return bool(self._rules)

    def fire(self, kind: str) -> bool:
        """Roll for `kind`; True (and counted) when it fires now."""
        if not self._rules:
            return False
        with self._lock:
            rule = self._rules.get(kind)
            if rule is None or (rule.left is not None and rule.left <= 0):
                return False
            if rule.rate < 1.0 and rule.rng.random() >= rule.rate:
                return False
            if rule.left is not None:
                rule.left -= 1
            self.fired[kind] = self.fired.get(kind, 0) + 1
            return True

    def delay(self, kind: str) -> float:
        rule = self._rules.get(kind)
        return rule.delay_s if rule else 0.0
