"""Pipelines and sagas: the decisions, as pure functions over :class:`WorkflowState`.

A run moves one cursor ``(mode, index, attempt)``: a forward step, or (sagas, after a
failure) a compensation. Each transition returns the new state and the messages it
implies - the next cursor's ``workflow.step_due`` (sent into the unit's own queue, after
a retry's backoff) and the events people and other units see. The handler
(``handlers.workflows``) stores the state by compare-and-set, then sends the messages;
their ids derive from (run, rev, n), so re-sending them after a crash is harmless.

- pipeline: steps in order; a failed step (after its retries) ends the run in
  ``failed`` with the report (``workflow.failed``: step, error, context at that point);
- saga: each completed step's compensation is rendered against the context of that
  moment and recorded in the same write that moves to the next step; on failure the
  recorded compensations run in reverse, each retried; one that still fails is
  published (``saga.compensation_failed``) and the others run on; the saga ends in
  ``compensated`` or ``compensation_failed`` (``flows compensate ID`` re-runs the failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.pipeline_core import (
    Message,
    Outcome,
    Transition,
    due_message,
    journal,
    lookup,
    message_id,
    render,
    retry_later,
    run_id,
)
from flows.saga import (
    compensation_done,
    recompensate,
    record_compensation,
    start_compensating,
)
from schemas.workflows import StepSpec, WorkflowSpec, WorkflowState

__all__ = [
    "Call",
    "Message",
    "Outcome",
    "WorkflowInputError",
    "advance",
    "begin",
    "current_call",
    "lookup",
    "matches",
    "message_id",
    "new_run",
    "recompensate",
    "render",
    "run_id",
]


class WorkflowInputError(ValueError):
    """The run's data lacks an input the spec declares; ``field`` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


# ---- starting --------------------------------------------------------------------------


def new_run(
    flow_id: str,
    spec: WorkflowSpec,
    data: dict[str, Any],
    now: float,
    requested_by: str | None = None,
    queue: str | None = None,
) -> Transition:
    """A run at its first step; :class:`WorkflowInputError` names a missing input.
    ``queue``: the subscription that runs its steps (None: the workflows unit's)."""
    for key in spec.inputs:
        if key not in data:
            raise WorkflowInputError(f"data.{key}: required by {spec.kind} {spec.name}", key)
    state = WorkflowState(
        id=flow_id,
        spec=spec,
        inputs=dict(data),
        context=dict(data),
        requested_by=requested_by,
        created_at=now,
        updated_at=now,
        queue=queue,
    )
    journal(state, now, "started", flow=spec.kind, name=spec.name)
    started = Message(
        "workflow.started",
        {
            "flow_id": flow_id,
            "kind": spec.kind,
            "name": spec.name,
            "steps": [s.name for s in spec.steps],
        },
    )
    return state, [started, due_message(state)]


# ---- the cursor ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """The tool call the cursor stands for."""

    tool: str
    args: dict[str, Any]
    timeout: float
    label: str  # step name, for messages
    subflow: bool = False  # a deploy step: args are the deployment.requested payload
    action: bool = False  # a built-in action of the unit: ``tool`` is the action's name


def current_call(state: WorkflowState) -> Call:
    """The tool call of the cursor (forward args rendered now; compensation args as
    recorded when their step completed). KeyError if a template has no value."""
    if state.mode == "forward":
        step = state.spec.steps[state.index]
        if step.deploy is not None:
            payload = render(dict(step.deploy), state.context)
            return Call("deployment.requested", payload, step.timeout, step.name, subflow=True)
        if step.action is not None:
            args = render(dict(step.args), state.context)
            return Call(step.action, args, step.timeout, step.name, action=True)
        assert step.tool is not None
        return Call(step.tool, render(dict(step.args), state.context), step.timeout, step.name)
    comp = state.compensations[state.index]
    return Call(comp.tool, comp.args, comp.timeout, comp.step)


def matches(state: WorkflowState, mode: str, index: int, attempt: int) -> bool:
    """Whether a ``workflow.step_due`` for this cursor is the live one."""
    return (
        not state.terminal
        and state.phase in ("running", "compensating")
        and (state.mode, state.index, state.attempt) == (mode, index, attempt)
    )


def begin(state: WorkflowState, now: float) -> WorkflowState:
    """Record the intent to call the cursor's tool (before calling it)."""
    new = state.model_copy(deep=True)
    new.inflight = True
    new.updated_at = now
    journal(new, now, "intent", mode=new.mode, index=new.index, attempt=new.attempt)
    return new


def advance(state: WorkflowState, outcome: Outcome, now: float) -> Transition:
    """The state after the cursor's call ended with ``outcome``, and its messages."""
    new = state.model_copy(deep=True)
    new.inflight = False
    new.waiting = None
    new.cause = None
    new.updated_at = now
    new.due = None
    if new.mode == "forward":
        return _forward(new, outcome, now)
    return compensation_done(new, outcome, now)


def _forward(s: WorkflowState, outcome: Outcome, now: float) -> Transition:
    step = s.spec.steps[s.index]
    if outcome.ok:
        failure = _fail_if(step, outcome.result)
        if failure is not None:
            outcome = Outcome(ok=False, error=failure, retryable=False)
    if not outcome.ok:
        error = outcome.error or "failed"
        if outcome.retryable and s.attempt < step.retry.attempts:
            return retry_later(s, step.retry.delay(s.attempt), error, now)
        return _step_failed(s, step, error, now)
    try:
        outputs = {key: lookup(outcome.result, path) for key, path in step.outputs.items()}
    except KeyError as exc:
        return _step_failed(s, step, f"outputs: result has no {exc}", now)
    s.context.update(outputs)
    journal(s, now, "completed", step=step.name, index=s.index, attempts=s.attempt, outputs=outputs)
    messages = [
        Message(
            "workflow.step_completed",
            {
                "flow_id": s.id,
                "name": s.spec.name,
                "step": step.name,
                "index": s.index,
                "attempts": s.attempt,
                "outputs": outputs,
            },
        )
    ]
    if step.compensate is not None:
        record_compensation(s, step)
    s.index += 1
    s.attempt = 1
    if s.index >= len(s.spec.steps):
        s.phase = "succeeded"
        journal(s, now, "phase", to="succeeded")
        messages.append(
            Message(
                "workflow.completed",
                {"flow_id": s.id, "kind": s.spec.kind, "name": s.spec.name, "context": s.context},
            )
        )
        return s, messages
    messages.append(due_message(s))
    return s, messages


def _fail_if(step: StepSpec, result: dict[str, Any]) -> str | None:
    if step.fail_if is None:
        return None
    from flows.expressions import EvaluationError, evaluate_condition

    rule = step.fail_if
    try:
        raw = lookup(result, rule.field)
        value = [float(v) for v in raw] if isinstance(raw, list) else float(raw)
        failed = evaluate_condition(rule.condition, value)
    except (KeyError, TypeError, ValueError, EvaluationError) as exc:
        return f"fail_if on {rule.field}: {exc}"
    return f"fail_if: {rule.field} = {raw!r}; {rule.condition}" if failed else None


def _step_failed(s: WorkflowState, step: StepSpec, error: str, now: float) -> Transition:
    s.failed_step = {
        "step": step.name,
        "index": s.index,
        "attempts": s.attempt,
        "error": error,
        "context": dict(s.context),
    }
    journal(s, now, "failed", step=step.name, index=s.index, attempts=s.attempt, error=error)
    report = Message(
        "workflow.failed",
        {
            "flow_id": s.id,
            "kind": s.spec.kind,
            "name": s.spec.name,
            "failed_step": step.name,
            "index": s.index,
            "attempts": s.attempt,
            "error": error,
            "context": dict(s.context),
        },
    )
    if s.spec.kind == "saga":
        return start_compensating(s, report, now)
    s.phase = "failed"
    journal(s, now, "phase", to=s.phase)
    return s, [report]
