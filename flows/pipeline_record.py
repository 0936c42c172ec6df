"""What a pipeline or saga run leaves in the repository at each step and at its end."""

from __future__ import annotations

from schemas.workflows import FlowRecord, JournalRecord, WorkflowState


def run_record(state: WorkflowState) -> FlowRecord:
    """The summary of a run: phase, cursor, failed-step report, compensations."""
    spec = state.spec
    if state.mode == "forward":
        step_name = spec.steps[state.index].name if state.index < len(spec.steps) else None
    else:
        step_name = (
            state.compensations[state.index].step
            if state.index < len(state.compensations)
            else None
        )
    failed = state.failed_step or {}
    inputs = state.inputs

    def text(key: str) -> str | None:
        value = inputs.get(key)
        return value if isinstance(value, str) else None

    return FlowRecord(
        id=state.id,
        kind=spec.kind,
        rev=state.rev,
        name=spec.name,
        app=text("app"),
        environment=text("environment"),
        version=text("version"),
        phase=state.phase,
        terminal=state.terminal,
        step=state.index,
        step_name=step_name,
        reason=(f"{failed['step']}: {failed['error']}" if failed else None),
        created_at=state.created_at,
        updated_at=state.updated_at,
        detail={
            "mode": state.mode,
            "attempt": state.attempt,
            "inputs": inputs,
            "context": state.context,
            "failed_step": state.failed_step,
            "compensations": [c.model_dump(mode="json") for c in state.compensations],
            "requested_by": state.requested_by,
        },
    )


def run_journal(state: WorkflowState) -> JournalRecord:
    """The journal record of ``state.rev``: the entries its transition wrote."""
    return JournalRecord(
        flow_id=state.id,
        rev=state.rev,
        at=state.updated_at,
        phase=state.phase,
        step=state.index,
        entries=[e for e in state.journal if float(e.get("at", 0.0)) >= state.updated_at],
    )
