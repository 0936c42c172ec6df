"""Prometheus metrics of the flow engine (all prefixed ``codebus_``)::

    flow_phase_transitions_total{from_phase,to_phase}  each phase change a decision stored
    flow_timer_lateness_seconds{timer}                 how late a timer was acted on
                                                        (arrival - due; step, poll, approval)
    flows_in_phase{phase}                              live flows per non-terminal phase, as
                                                        the last sweep counted them

They live in one registry per process (:func:`default_flow_metrics`) that the worker
serves on ``/metrics``. The engine reads what a decision did from its journal entries
(those stamped with the decision's time), so the state machine stays free of I/O.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.flows import TERMINAL_PHASES, FlowState, Phase

LIVE_PHASES = tuple(p for p in Phase.__args__ if p not in TERMINAL_PHASES)  # type: ignore[attr-defined]
_LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class FlowMetrics:
    """The flow engine's series in one registry (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.transitions = Counter(
            "codebus_flow_phase_transitions",
            "Phase changes of flows, by phase left and phase entered.",
            ["from_phase", "to_phase"],
            registry=r,
        )
        self.lateness = Histogram(
            "codebus_flow_timer_lateness_seconds",
            "How late a flow timer was acted on (arrival minus due time).",
            ["timer"],
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.in_phase = Gauge(
            "codebus_flows_in_phase",
            "Live flows per non-terminal phase, as the last sweep counted them.",
            ["phase"],
            registry=r,
        )

    def observe_decision(self, new: FlowState, now: float) -> None:
        """Record the phase changes and timer arrivals of the decision taken at ``now``."""
        for entry in reversed(new.journal):
            if entry.get("at") != now:
                break
            kind = entry.get("kind")
            if kind == "phase":
                self.transitions.labels(str(entry["frm"]), str(entry["to"])).inc()
            elif kind == "timer":
                self.lateness.labels(str(entry["timer"])).observe(max(0.0, float(entry["late"])))

    def observe_sweep(self, phases: Iterable[str]) -> None:
        """Set the live-flow gauge from the phases one sweep saw."""
        tally = Tally(phases)
        for phase in LIVE_PHASES:
            self.in_phase.labels(phase).set(tally.get(phase, 0))


_default: FlowMetrics | None = None


def default_flow_metrics() -> FlowMetrics:
    """The process's flow metrics (one registry per process, created on first use)."""
    global _default
    if _default is None:
        _default = FlowMetrics()
    return _default
