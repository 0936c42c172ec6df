"""The sweeper and the reconciler.

Sweeper: a crash between "state written" and "wake-up sent" (or a wake-up lost with a
dead-lettered delivery) would strand a flow, so every sweep re-sends the wake-up of each
timer overdue by more than ``grace`` and carries out outboxes nobody finished. The state
decides what a wake-up means, so a duplicate is harmless.

Reconciler: a flow in one phase for longer than its ``stall_after`` is reported once as
``deployment.stalled`` (it is not left "running" silently).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flows.engine import FlowEngine, Ports, action_event_id
from flows.machine import StallCheck
from flows.metrics import default_flow_metrics

#: Newest flows the reconciler looks at per sweep (each is one Redis read).
STALL_SCAN_LIMIT = 1000


@dataclass
class SweepReport:
    """What one sweep did."""

    rewoken: int = 0
    drained: int = 0
    stalled: int = 0
    live: int = 0  # flows not in a terminal phase


async def sweep(
    engine: FlowEngine,
    ports_for: Callable[[str], Ports],
    *,
    now: float,
    grace: float,
    slot: int,
) -> SweepReport:
    """Re-send overdue wake-ups, finish abandoned outboxes, report stalled flows."""
    report = SweepReport()
    for flow_id, _due in await engine.store.due(before=now - grace):
        state = await engine.store.load(flow_id)
        if state is None:
            continue
        ports = ports_for(flow_id)
        for name, timer in state.timers.items():
            if timer.due <= now - grace:
                event_id = action_event_id(flow_id, timer.token, f"sweep-{slot}")
                await ports.wake(flow_id, name, timer.token, 0.0, event_id)
                report.rewoken += 1
        if state.outbox and state.updated_at <= now - grace and await engine.drain(flow_id, ports):
            report.drained += 1
    phases: list[str] = []
    async for state in engine.store.all(limit=STALL_SCAN_LIMIT):
        if state.terminal:
            continue
        report.live += 1
        phases.append(state.phase)
        if state.stalled or now - state.phase_since < state.stall_after:
            continue
        after = await engine.handle(state.id, StallCheck(), ports_for(state.id))
        if after is not None and after.stalled:
            report.stalled += 1
    default_flow_metrics().observe_sweep(phases)
    return report
