"""What operators watch: Prometheus metrics, health and readiness, logs, the status HTTP server."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Observers:
    """The observers every pipeline thread reports to, passed as one bundle."""
    metrics: object     # observability.metrics.Metrics
    health: object      # observability.health.Health

    @property
    def accounting(self):
        """One set of counters behind consumed == loaded + dead_lettered + pending."""
        return self.metrics.accounting

    @classmethod
    def create(cls, metrics=None, health=None) -> "Observers":
        from .health import Health
        from .metrics import Metrics
        return cls(metrics or Metrics(), health or Health())
