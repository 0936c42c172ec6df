"""What people read about a flow: one line of "why", and a summary for ``show``/``list``."""

from __future__ import annotations

from typing import Any

from flows.plan import describe_step
from schemas.flows import FlowState


def current_step(state: FlowState) -> str:
    """``3 (set weight 50 %) of 0-7``: the step index as journals and reasons give it."""
    if state.step >= len(state.steps):
        return "done"
    last = len(state.steps) - 1
    return f"{state.step} ({describe_step(state.steps[state.step])}) of 0-{last}"


def why(state: FlowState) -> str:
    """The evidence behind the flow's last decision, in one line."""
    approval = state.approval or {}
    if state.phase in ("rolled_back", "aborted", "failed", "aborting"):
        line = f"{state.phase}: {state.reason or 'no reason recorded'}"
    elif state.phase == "awaiting_approval":
        line = f"awaiting approval at step {current_step(state)}"
        if state.evidence:
            line += f": {state.evidence}"
    elif state.phase == "paused":
        timer = state.timers.get("step")
        until = f" until {timer.due:.0f}" if timer else " until promoted"
        line = f"paused at step {current_step(state)}{until}"
    elif state.phase == "succeeded":
        line = f"succeeded: {len(state.steps)} steps done"
        if approval.get("granted"):
            line += f"; approved by {approval.get('by')}"
            if approval.get("reason"):
                line += f" ({approval['reason']})"
    elif state.phase == "pending":
        waiting = [image for image, ok in state.images.items() if ok is None]
        line = f"pending: waiting for scans of {', '.join(waiting) or 'nothing'}"
    else:
        line = f"{state.phase}: step {current_step(state)}"
    return " ".join(line.split())  # one line, whatever the evidence held


def last_measurements(state: FlowState, limit: int = 5) -> list[dict[str, Any]]:
    """The newest measurements of the current analysis step."""
    raw = state.step_state.get("measurements") or {}
    flat = [m for ms in raw.values() for m in ms]
    return sorted(flat, key=lambda m: m.get("at", 0))[-limit:]


def summary(state: FlowState, now: float) -> dict[str, Any]:
    """The fields of ``codebus deployments show`` (also its ``--json``)."""
    return {
        "id": state.id,
        "app": state.app,
        "version": state.version,
        "environment": state.environment,
        "namespace": state.namespace,
        "strategy": state.strategy,
        "phase": state.phase,
        "step": current_step(state),
        "desired_weight": state.desired_weight,
        "actual_weight": state.actual_weight,
        "attempt": state.attempt,
        "why": why(state),
        "approval": state.approval,
        "timers": {
            name: {"due_in": round(t.due - now, 3), "token": t.token}
            for name, t in state.timers.items()
        },
        "pending_actions": [{k: v for k, v in a.items() if k != "data"} for a in state.outbox],
        "measurements": last_measurements(state),
        "stalled": state.stalled,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "journal": state.journal[-25:],
    }
