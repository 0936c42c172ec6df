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

import uuid
from dataclasses import dataclass, field
from typing import Any

from schemas.workflows import (
    TEMPLATE,
    Compensation,
    StepSpec,
    WorkflowSpec,
    WorkflowState,
)

JOURNAL_LIMIT = 300
_IDS = uuid.UUID("7f1c2a9e-4b6d-4e1f-8a3c-2d5e6f7a8b9c")


class WorkflowInputError(ValueError):
    """The run's data lacks an input the spec declares; ``field`` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Message:
    """Something a transition implies: an event to publish, or (``due``) the next cursor
    to send into the unit's queue after ``delay`` seconds."""

    type: str
    data: dict[str, Any]
    delay: float = 0.0
    due: bool = False


@dataclass
class Outcome:
    """What happened when the cursor's tool was called."""

    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    retryable: bool = True


def run_id(event_id: str, kind: str) -> str:
    """The id codebus mints for the run a ``workflow.run_requested`` starts: derived from
    the request's event id, so a redelivered request finds its run instead of a twin."""
    return f"{kind}-{uuid.uuid5(_IDS, event_id).hex[:20]}"


def message_id(flow_id: str, rev: int, n: int) -> str:
    """The id of the ``n``-th message of the transition that produced ``rev``."""
    return str(uuid.uuid5(_IDS, f"{flow_id}\x1f{rev}\x1f{n}"))


# ---- templates -------------------------------------------------------------------------


def lookup(data: Any, path: str) -> Any:
    """``data['a']['b']`` for ``a.b`` (list items by number); KeyError names the path."""
    value = data
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(f"{path!r}: no {part!r} here")
    return value


def render(value: Any, context: dict[str, Any]) -> Any:
    """``value`` with its ``${...}`` templates filled from ``context``; a string that is
    one template keeps the value's type (a number stays a number)."""
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value)
        if whole:
            return lookup(context, whole.group(0)[2:-1])
        return TEMPLATE.sub(lambda m: str(lookup(context, m.group(0)[2:-1])), value)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


# ---- starting --------------------------------------------------------------------------


def new_run(
    flow_id: str,
    spec: WorkflowSpec,
    data: dict[str, Any],
    now: float,
    requested_by: str | None = None,
) -> tuple[WorkflowState, list[Message]]:
    """A run at its first step; :class:`WorkflowInputError` names a missing input."""
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
    )
    _journal(state, now, "started", flow=spec.kind, name=spec.name)
    started = Message(
        "workflow.started",
        {
            "flow_id": flow_id,
            "kind": spec.kind,
            "name": spec.name,
            "steps": [s.name for s in spec.steps],
        },
    )
    return state, [started, _due(state)]


# ---- the cursor ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """The tool call the cursor stands for."""

    tool: str
    args: dict[str, Any]
    timeout: float
    label: str  # step name, for messages


def current_call(state: WorkflowState) -> Call:
    """The tool call of the cursor (forward args rendered now; compensation args as
    recorded when their step completed). KeyError if a template has no value."""
    if state.mode == "forward":
        step = state.spec.steps[state.index]
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
    _journal(new, now, "intent", mode=new.mode, index=new.index, attempt=new.attempt)
    return new


def advance(
    state: WorkflowState, outcome: Outcome, now: float
) -> tuple[WorkflowState, list[Message]]:
    """The state after the cursor's call ended with ``outcome``, and its messages."""
    new = state.model_copy(deep=True)
    new.inflight = False
    new.updated_at = now
    new.due = None
    if new.mode == "forward":
        return _forward(new, outcome, now)
    return _compensation(new, outcome, now)


def _forward(s: WorkflowState, outcome: Outcome, now: float) -> tuple[WorkflowState, list[Message]]:
    step = s.spec.steps[s.index]
    if outcome.ok:
        failure = _fail_if(step, outcome.result)
        if failure is not None:
            outcome = Outcome(ok=False, error=failure, retryable=False)
    if not outcome.ok:
        error = outcome.error or "failed"
        if outcome.retryable and s.attempt < step.retry.attempts:
            return _retry(s, step.retry.delay(s.attempt), error, now)
        return _step_failed(s, step, error, now)
    try:
        outputs = {key: lookup(outcome.result, path) for key, path in step.outputs.items()}
    except KeyError as exc:
        return _step_failed(s, step, f"outputs: result has no {exc}", now)
    s.context.update(outputs)
    _journal(
        s, now, "completed", step=step.name, index=s.index, attempts=s.attempt, outputs=outputs
    )
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
        # Rendered now, against the context this step left: what undoing it needs is
        # recorded in the same write that lets the next step start.
        comp = step.compensate
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
    s.index += 1
    s.attempt = 1
    if s.index >= len(s.spec.steps):
        s.phase = "succeeded"
        _journal(s, now, "phase", to="succeeded")
        messages.append(
            Message(
                "workflow.completed",
                {"flow_id": s.id, "kind": s.spec.kind, "name": s.spec.name, "context": s.context},
            )
        )
        return s, messages
    messages.append(_due(s))
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


def _retry(
    s: WorkflowState, delay: float, error: str, now: float
) -> tuple[WorkflowState, list[Message]]:
    _journal(
        s, now, "retry", mode=s.mode, index=s.index, attempt=s.attempt, error=error, delay=delay
    )
    s.attempt += 1
    s.due = now + delay
    return s, [_due(s, delay)]


def _step_failed(
    s: WorkflowState, step: StepSpec, error: str, now: float
) -> tuple[WorkflowState, list[Message]]:
    s.failed_step = {
        "step": step.name,
        "index": s.index,
        "attempts": s.attempt,
        "error": error,
        "context": dict(s.context),
    }
    _journal(s, now, "failed", step=step.name, index=s.index, attempts=s.attempt, error=error)
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
    if s.spec.kind == "pipeline" or not s.compensations:
        s.phase = "failed" if s.spec.kind == "pipeline" else "compensated"
        _journal(s, now, "phase", to=s.phase)
        messages = [report]
        if s.spec.kind == "saga":
            messages.append(_finished(s))
        return s, messages
    # Undo in reverse order of the steps.
    s.compensations.reverse()
    s.phase = "compensating"
    s.mode = "compensate"
    s.index = 0
    s.attempt = 1
    _journal(s, now, "phase", to="compensating", order=[c.step for c in s.compensations])
    return s, [report, _due(s)]


def _compensation(
    s: WorkflowState, outcome: Outcome, now: float
) -> tuple[WorkflowState, list[Message]]:
    comp = s.compensations[s.index]
    comp.attempts = s.attempt
    messages: list[Message] = []
    if outcome.ok:
        comp.status, comp.error = "done", None
        _journal(s, now, "compensated", step=comp.step, attempts=s.attempt)
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
            return _retry(s, comp.retry.delay(s.attempt), error, now)
        comp.status, comp.error = "failed", error
        _journal(s, now, "compensation_failed", step=comp.step, attempts=s.attempt, error=error)
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
    following = _next_pending(s, s.index + 1)
    if following is None:
        failed = [c.step for c in s.compensations if c.status == "failed"]
        s.phase = "compensation_failed" if failed else "compensated"
        _journal(s, now, "phase", to=s.phase, failed=failed)
        messages.append(_finished(s))
        return s, messages
    s.index, s.attempt = following, 1
    messages.append(_due(s))
    return s, messages


def _next_pending(s: WorkflowState, start: int) -> int | None:
    for i in range(start, len(s.compensations)):
        if s.compensations[i].status == "pending":
            return i
    return None


def recompensate(
    state: WorkflowState, by: str | None, now: float
) -> tuple[WorkflowState, list[Message]] | str:
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
    first = _next_pending(s, 0)
    assert first is not None  # compensation_failed means one failed
    s.phase, s.mode, s.index, s.attempt, s.updated_at, s.due = (
        "compensating",
        "compensate",
        first,
        1,
        now,
        None,
    )
    _journal(s, now, "command", command="compensate", by=by)
    return s, [_due(s)]


# ---- helpers ---------------------------------------------------------------------------


def _due(s: WorkflowState, delay: float = 0.0) -> Message:
    return Message(
        "workflow.step_due",
        {"flow_id": s.id, "mode": s.mode, "index": s.index, "attempt": s.attempt},
        delay=delay,
        due=True,
    )


def _finished(s: WorkflowState) -> Message:
    return Message(
        "saga.finished",
        {
            "flow_id": s.id,
            "name": s.spec.name,
            "phase": s.phase,
            "failed": [c.step for c in s.compensations if c.status == "failed"],
        },
    )


def _journal(s: WorkflowState, now: float, what: str, **detail: Any) -> None:
    s.journal.append({"at": now, "kind": what, **detail})
    del s.journal[:-JOURNAL_LIMIT]
