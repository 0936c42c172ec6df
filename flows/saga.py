"""Saga compensations: recorded when their step completes, run in reverse after a
failure, each retried; a compensation that still fails is published and the others run
on; the saga ends in ``compensated`` or ``compensation_failed`` (a person re-runs the
failed ones with ``recompensate`` once the cause is fixed)."""

from __future__ import annotations

from flows.pipeline_core import (
    Message,
    Outcome,
    Transition,
    due_message,
    journal,
    render,
    retry_later,
)
from schemas.workflows import Compensation, StepSpec, WorkflowState


def record_compensation(s: WorkflowState, step: StepSpec) -> None:
    """Record the undo of ``step``, its arguments rendered now against the context the
    step left - in the same write that lets the next step start."""
    comp = step.compensate
    assert comp is not None
    s.compensations.append(
        Compensation(
            step=step.name,
            index=s.index,
            tool=comp.tool,
            args=render(dict(comp.args), s.context),
            timeout=comp.timeout,
            retry=comp.retry,
        )
    )


def start_compensating(s: WorkflowState, report: Message, now: float) -> Transition:
    """After the failed-step ``report``: undo the recorded steps, newest first."""
    if not s.compensations:
        s.phase = "compensated"  # nothing was done that needs undoing
        journal(s, now, "phase", to=s.phase)
        return s, [report, finished(s)]
    # Undo in reverse order of the steps.
    s.compensations.reverse()
    s.phase = "compensating"
    s.mode = "compensate"
    s.index = 0
    s.attempt = 1
    journal(s, now, "phase", to="compensating", order=[c.step for c in s.compensations])
    return s, [report, due_message(s)]


def compensation_done(s: WorkflowState, outcome: Outcome, now: float) -> Transition:
    """The saga after the current compensation ended with ``outcome``: done, retried
    after its backoff, or failed (published) - then the next one, or the end."""
    comp = s.compensations[s.index]
    comp.attempts = s.attempt
    messages: list[Message] = []
    if outcome.ok:
        comp.status, comp.error = "done", None
        journal(s, now, "compensated", step=comp.step, attempts=s.attempt)
        messages.append(
            Message(
                "saga.compensation_completed",
                {
                    "flow_id": s.id,
                    "name": s.spec.name,
                    "step": comp.step,
                    "tool": comp.tool,
                    "attempts": s.attempt,
                },
            )
        )
    else:
        error = outcome.error or "failed"
        if outcome.retryable and s.attempt < comp.retry.attempts:
            return retry_later(s, comp.retry.delay(s.attempt), error, now)
        comp.status, comp.error = "failed", error
        journal(s, now, "compensation_failed", step=comp.step, attempts=s.attempt, error=error)
        messages.append(
            Message(
                "saga.compensation_failed",
                {
                    "flow_id": s.id,
                    "name": s.spec.name,
                    "step": comp.step,
                    "tool": comp.tool,
                    "attempts": s.attempt,
                    "error": error,
                },
            )
        )
    following = next_pending(s, s.index + 1)
    if following is None:
        failed = [c.step for c in s.compensations if c.status == "failed"]
        s.phase = "compensation_failed" if failed else "compensated"
        journal(s, now, "phase", to=s.phase, failed=failed)
        messages.append(finished(s))
        return s, messages
    s.index, s.attempt = following, 1
    messages.append(due_message(s))
    return s, messages


def next_pending(s: WorkflowState, start: int) -> int | None:
    for i in range(start, len(s.compensations)):
        if s.compensations[i].status == "pending":
            return i
    return None


def recompensate(state: WorkflowState, by: str | None, now: float) -> Transition | str:
    """Re-run the failed compensations of a saga in ``compensation_failed`` (once a person
    has fixed their cause); otherwise the reason the command does not apply."""
    if state.spec.kind != "saga":
        return f"{state.id} is a pipeline; only sagas compensate"
    if state.phase != "compensation_failed":
        return f"{state.id} is {state.phase}; only a saga in compensation_failed re-compensates"
    s = state.model_copy(deep=True)
    for comp in s.compensations:
        if comp.status == "failed":
            comp.status, comp.attempts = "pending", 0
    first = next_pending(s, 0)
    assert first is not None  # compensation_failed means one failed
    s.phase, s.mode, s.index, s.attempt, s.updated_at, s.due = (
        "compensating",
        "compensate",
        first,
        1,
        now,
        None,
    )
    journal(s, now, "command", command="compensate", by=by)
    return s, [due_message(s)]


def finished(s: WorkflowState) -> Message:
    return Message(
        "saga.finished",
        {
            "flow_id": s.id,
            "name": s.spec.name,
            "phase": s.phase,
            "failed": [c.step for c in s.compensations if c.status == "failed"],
        },
    )
