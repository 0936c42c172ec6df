"""Prometheus metrics of the consumer runtime."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from bus.middleware.base import Middleware, Processing
from bus.outcome import Outcome


def outcome_label(outcome: Outcome) -> str:
    """A short label such as ``done``, ``duplicate``, ``retry`` or ``dead_letter``."""
    name = type(outcome).__name__
    if name == "Done" and getattr(outcome, "duplicate", False):
        return "duplicate"
    return {
        "Done": "done",
        "RetryLater": "retry",
        "Defer": "deferred",
        "DeadLetter": "dead_letter",
        "Requeue": "requeued",
        "Failed": "failed",
    }.get(name, name.lower())


class MetricsMiddleware(Middleware):
    """``codebus_events_processed_total{subscription,outcome}``,
    ``codebus_event_processing_seconds{subscription}`` and
    ``codebus_events_in_flight{subscription}``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.processed = Counter(
            "codebus_events_processed",
            "Deliveries settled, by subscription and outcome",
            ["subscription", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "codebus_event_processing_seconds",
            "Time from delivery to settlement",
            ["subscription"],
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
        )
        self.in_flight = Gauge(
            "codebus_events_in_flight",
            "Deliveries being processed",
            ["subscription"],
            registry=registry,
        )
        self._series: dict[str, _SubscriptionSeries] = {}

    def _children(self, sub: str) -> _SubscriptionSeries:
        # labels() costs a lock and a dict lookup per call: resolved once per subscription.
        series = self._series.get(sub)
        if series is None:
            series = self._series[sub] = _SubscriptionSeries(self, sub)
        return series

    async def before_process(self, p: Processing) -> Outcome | None:
        self._children(p.subscription.name).in_flight.inc()
        p.state["metrics_in"] = True
        return None

    async def after_process(self, p: Processing, outcome: Outcome) -> Outcome:
        series = self._children(p.subscription.name)
        if p.state.pop("metrics_in", False):
            series.in_flight.dec()
        series.processed(outcome).inc()
        series.duration.observe(time.perf_counter() - p.started)
        return outcome


class _SubscriptionSeries:
    """One subscription's children of the consumer metrics."""

    __slots__ = ("_metrics", "_processed", "_sub", "duration", "in_flight")

    def __init__(self, metrics: MetricsMiddleware, sub: str) -> None:
        self._metrics = metrics
        self._sub = sub
        self.in_flight = metrics.in_flight.labels(sub)
        self.duration = metrics.duration.labels(sub)
        self._processed: dict[tuple[type, bool], Any] = {}

    def processed(self, outcome: Outcome) -> Any:
        """The ``processed`` counter child of this outcome's label."""
        key = (type(outcome), bool(getattr(outcome, "duplicate", False)))
        child = self._processed.get(key)
        if child is None:
            child = self._processed[key] = self._metrics.processed.labels(
                self._sub, outcome_label(outcome)
            )
        return child


class InboxWaits:
    """``codebus_inbox_wait_seconds{operation}``: how long a delivery waits for its
    inbox claim (before the handler) and for its done-mark (after it, before the ack),
    Redis outages included. Passed to :class:`IdempotencyMiddleware` as ``waits``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.histogram = Histogram(
            "codebus_inbox_wait_seconds",
            "Time a delivery waited for its inbox claim or its completion",
            ["operation"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
        )
        self._children = {op: self.histogram.labels(op) for op in ("claim", "complete")}

    def observe(self, operation: str, seconds: float) -> None:
        """Record one wait of ``operation`` (``claim`` or ``complete``)."""
        self._children[operation].observe(seconds)
