"""Prometheus metrics of the tool layer: tool calls, circuit breakers, the result cache
and outbound webhook deliveries.

Series (all prefixed ``codebus_``)::

    tool_calls_total{server,tool,outcome}         every call, by how it ended
    tool_call_seconds{server,tool}                latency histogram, guards included
    tool_cache_requests_total{tool,result}        hit / miss / error of cached reads
    tool_breaker_state{server,state}              1 for the state this process last saw
    tool_breaker_transitions_total{server,from_state,to_state}
    webhook_deliveries_total{outcome}             outbound webhook POSTs
    webhook_delivery_seconds                      their latency

Breaker state lives in Redis and is shared by every worker; these series report what
*this process* observed on its own calls (admissions and verdicts), so take ``max by
(server)`` across workers. A transition counts once per process that saw it.

The metrics of one process live in one registry (:func:`default_metrics`), which the
worker exposes on ``/metrics`` next to the consumer's; tests pass their own
:class:`ToolMetrics` to keep counts apart.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel

from tools.errors import (
    CircuitOpen,
    ToolArgumentError,
    ToolError,
    ToolPermissionDenied,
    ToolTimeout,
    ToolTransientError,
)
from tools.guards import Next, ToolCall

BREAKER_STATES = ("closed", "open", "half_open")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


def outcome_of(exc: BaseException | None) -> str:
    """The ``outcome`` label of a call that raised ``exc`` (None: it returned)."""
    if exc is None:
        return "ok"
    # Order matters: CircuitOpen and ToolTimeout are transient errors too.
    for cls, label in (
        (CircuitOpen, "circuit_open"),
        (ToolTimeout, "timeout"),
        (ToolTransientError, "transient"),
        (ToolPermissionDenied, "denied"),
        (ToolArgumentError, "invalid"),
        (ToolError, "failed"),
        (asyncio.CancelledError, "cancelled"),
    ):
        if isinstance(exc, cls):
            return label
    return "error"


class ToolMetrics:
    """The tool layer's series in one registry (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.calls = Counter(
            "codebus_tool_calls",
            "Tool calls, by server, tool and outcome.",
            ["server", "tool", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "codebus_tool_call_seconds",
            "Time a tool call took through the whole guard chain.",
            ["server", "tool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "codebus_tool_cache_requests",
            "Reads of the tool-result cache, by tool and result (hit, miss, error).",
            ["tool", "result"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "codebus_tool_breaker_state",
            "Circuit state of a tool server as this process last saw it (1 = current).",
            ["server", "state"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "codebus_tool_breaker_transitions",
            "Circuit state changes this process observed, by server.",
            ["server", "from_state", "to_state"],
            registry=r,
        )
        self.deliveries = Counter(
            "codebus_webhook_deliveries",
            "Outbound webhook deliveries, by outcome (ok, transient, timeout, failed, ...).",
            ["outcome"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "codebus_webhook_delivery_seconds",
            "Time from connecting to the receiver's answer.",
            buckets=_LATENCY_BUCKETS[:11],
            registry=r,
        )
        self._last_state: dict[str, str] = {}

    def observe_breaker(self, server: str, state: str | None) -> None:
        """Record that ``server``'s circuit is in ``state`` (None: unknown, ignored)."""
        if state not in BREAKER_STATES:
            return
        previous = self._last_state.get(server)
        if previous == state:
            return
        self._last_state[server] = state
        if previous is not None:
            self.breaker_transitions.labels(server, previous, state).inc()
        for each in BREAKER_STATES:
            self.breaker_state.labels(server, each).set(1 if each == state else 0)

    def last_breaker_state(self, server: str) -> str | None:
        """The state this process last saw for ``server``'s circuit (None: never saw)."""
        return self._last_state.get(server)

    def observe_delivery(self, exc: BaseException | None, seconds: float | None) -> None:
        """Record one webhook delivery that ended with ``exc`` (None: a 2xx)."""
        self.deliveries.labels(outcome_of(exc)).inc()
        if seconds is not None:
            self.delivery_latency.observe(seconds)


_default: ToolMetrics | None = None


def default_metrics() -> ToolMetrics:
    """The process's tool metrics (one registry per process, created on first use)."""
    global _default
    if _default is None:
        _default = ToolMetrics()
    return _default


class MetricsGuard:
    """Outermost guard: counts every call by outcome and times it (denials included)."""

    def __init__(self, metrics: ToolMetrics) -> None:
        self.metrics = metrics

    def enabled(self, call: ToolCall) -> bool:
        """Always on: metrics cost a few label look-ups."""
        return True

    async def __call__(self, call: ToolCall, call_next: Next) -> BaseModel:
        """Run the call; record its outcome and latency whatever happens."""
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await call_next(call)
        except BaseException as exc:
            error = exc
            raise
        finally:
            server, tool = call.spec.server, call.name
            self.metrics.calls.labels(server, tool, outcome_of(error)).inc()
            self.metrics.latency.labels(server, tool).observe(time.perf_counter() - started)
