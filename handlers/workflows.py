"""Pipelines and sagas on the bus (unit ``workflows``): one step per delivery.

``workflow.run_requested`` creates the run (id minted from the request's event id) and
sends its first ``workflow.step_due`` into this unit's own queue; each ``step_due``
records the intent, calls one tool, stores the outcome by compare-and-set and sends what
follows (the next step, a retry after its backoff, a compensation, the report). A
``step_due`` that no longer matches the run's cursor - a duplicate, or the redelivery
of a delivery that crashed after storing - re-sends the messages of the run's last
transition under their original ids (downstream inboxes drop the copies), so a crash
between "stored" and "sent" cannot strand a run.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bus.context import HandlerContext
from bus.errors import Reject, Unroutable
from bus.router import Router
from flows.pipeline import (
    Call,
    Message,
    Outcome,
    WorkflowInputError,
    advance,
    begin,
    current_call,
    matches,
    message_id,
    new_run,
    recompensate,
    run_id,
)
from flows.pipeline_record import run_journal, run_record
from flows.pipeline_store import WorkflowStore
from flows.pipeline_sweep import overdue_steps
from flows.repository import FlowRepository
from flows.store import Conflict
from handlers import deps
from handlers import workflows_subflow as subflow
from schemas.errors import field_errors
from schemas.names import Names
from schemas.workflows import (
    SagaCompensateRequested,
    WorkflowRunRequested,
    WorkflowSpec,
    WorkflowsSweep,
    WorkflowState,
    WorkflowStepDue,
)
from tools.errors import ToolArgumentError, ToolError, ToolNotFound, ToolPermissionDenied

router = Router("workflows")

STEPS = Names.WORKFLOW_STEP_SUBSCRIPTION
_NEVER_SUCCEEDS = (ToolArgumentError, ToolPermissionDenied, ToolNotFound)


def store_of(ctx: HandlerContext) -> WorkflowStore:
    """The runs' store over this worker's Redis."""
    return WorkflowStore(ctx.redis, ctx.names)


def repository_of(ctx: HandlerContext) -> FlowRepository | None:
    """Where runs leave their records (``flows.repository_s3.repository_from``)."""
    return deps.repository(ctx)


ActionFn = Callable[[HandlerContext, WorkflowState, Call], Awaitable[Outcome | None]]


@dataclass(frozen=True)
class Action:
    """A built-in step of the unit that runs a pipeline (``action:`` in the spec): the
    deploy facade's ``deploy.validate`` ... ``run`` returns the step's outcome, or None
    when the step ends later on an event (``waits``: the run then waits for the flow
    named by ``context.flow_id``)."""

    run: ActionFn
    waits: bool = False


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    return [{"type": m.type, "data": m.data, "delay": m.delay, "due": m.due} for m in messages]


async def send(ctx: HandlerContext, state: WorkflowState) -> None:
    """Send the messages of the transition that produced ``state`` (ids from its rev)."""
    now = time.time()
    for n, m in enumerate(state.sent):
        event_id = message_id(state.id, state.rev, n)
        if m["due"]:
            # A re-send waits only for what is left of the backoff.
            delay = max(0.0, state.due - now) if state.due is not None else 0.0
            queue = state.queue or STEPS
            await ctx.send(queue, "workflow.step_due", m["data"], id=event_id, delay=delay)
            continue
        try:
            await ctx.publish(m["type"], m["data"], id=event_id)
        except Unroutable:
            # Nobody subscribes (no audit unit deployed): the run's record keeps it.
            ctx.logger.warning("no subscriber for %s of run %s", m["type"], state.id)


async def record(ctx: HandlerContext, state: WorkflowState) -> None:
    """Write the run's journal record of this rev and its summary through the records'
    outbox: a failed write never holds the run up and is written again by the next
    sweep (``flows.repository_outbox``)."""
    outbox = deps.outbox(ctx)
    if outbox is not None:
        await outbox.write(run_journal(state), run_record(state))


async def store_and_send(
    ctx: HandlerContext,
    state: WorkflowState,
    messages: list[Message],
    expected_rev: int,
    *,
    resend_on_conflict: bool = True,
) -> WorkflowState | None:
    """CAS ``state`` with its messages, then send and record them; None if the run moved
    on meanwhile (then its own last messages are re-sent, unless the caller raced a
    live delivery that sends them itself: ``resend_on_conflict=False``)."""
    state.sent = _messages(messages)
    store = store_of(ctx)
    try:
        saved = await store.save(state, expected_rev)
    except Conflict:
        current = await store.load(state.id)
        if current is not None and resend_on_conflict:
            await send(ctx, current)
        return None
    await send(ctx, saved)
    await record(ctx, saved)
    return saved


@router.subscribe("workflow.run_requested", name="workflows.run")
async def on_run_requested(req: WorkflowRunRequested, ctx: HandlerContext) -> None:
    """Validate the spec and inputs, create the run, send its first step."""
    try:
        spec = WorkflowSpec.model_validate(req.spec)
    except ValidationError as exc:
        raise Reject(f"invalid workflow spec: {field_errors(exc, ('spec',))}") from None
    for i, step in enumerate(spec.steps):
        if step.action is not None:
            raise Reject(
                f"invalid workflow spec: spec.steps.{i}.action: {step.action!r} is a built-in "
                "step of the deploy facade; workflows run tool and deploy steps"
            )
    flow_id = run_id(ctx.event.id, spec.kind)
    try:
        state, messages = new_run(flow_id, spec, req.data, time.time(), req.requested_by)
    except WorkflowInputError as exc:
        raise Reject(str(exc)) from None
    state.sent = _messages(messages)
    store = store_of(ctx)
    await schedule_sweep(ctx)
    if await store.create(state):
        state = state.model_copy(update={"rev": 0})
        await send(ctx, state)
        await record(ctx, state)
        return
    existing = await store.load(flow_id)  # a redelivered request: its run exists
    if existing is not None:
        await send(ctx, existing)


async def call(ctx: HandlerContext, state: WorkflowState) -> Outcome:
    """Call the cursor's tool with its timeout; the outcome, never an exception for a
    tool's failure (argument, permission and unknown-tool errors are not retried)."""
    try:
        spec = current_call(state)
    except KeyError as exc:
        return Outcome(ok=False, error=f"template: {exc}", retryable=False)
    toolbox = ctx.toolbox
    try:
        async with asyncio.timeout(spec.timeout):
            result = await toolbox.call_tool(spec.tool, spec.args)
    except _NEVER_SUCCEEDS as exc:
        return Outcome(ok=False, error=f"{spec.tool}: {exc}", retryable=False)
    except ToolError as exc:
        return Outcome(ok=False, error=f"{spec.tool}: {exc}")
    except TimeoutError:
        return Outcome(ok=False, error=f"{spec.tool}: no answer within {spec.timeout:g}s")
    return Outcome(ok=True, result=result.model_dump(mode="json"))


#: Seconds between sweeps, and how far past a step's timeout it must be to be re-sent.
SWEEP_INTERVAL = 30.0
SWEEP_GRACE = 120.0


async def schedule_sweep(ctx: HandlerContext, slot: int | None = None) -> None:
    """Send the sweep of ``slot``; without one, start the chain unless it runs (its
    marker lives two intervals, refreshed by every link; the slot is the id, so two
    chains started at once merge in the inbox)."""
    interval = deps.seconds(deps.FlowDeps.of(ctx).workflows_sweep_interval, SWEEP_INTERVAL)
    names, redis = ctx.names, ctx.redis
    now = time.time()
    marker_ms = max(1, int(interval * 2000))
    if slot is None:
        if not await redis.set(names.workflows_sweep_key, "1", nx=True, px=marker_ms):
            return
        slot = math.floor(now / interval) + 1
    else:
        await redis.set(names.workflows_sweep_key, "1", px=marker_ms)
    await ctx.send(
        STEPS,
        "workflow.sweep",
        {"slot": slot},
        id=f"{names.prefix}-workflows-sweep-{slot}",
        delay=max(0.0, slot * interval - now),
    )


async def sweep(msg: WorkflowsSweep, ctx: HandlerContext) -> None:
    """Re-send the steps of runs overdue far past their timeout; re-arm while runs live."""
    grace = deps.seconds(deps.FlowDeps.of(ctx).workflows_sweep_grace, SWEEP_GRACE)
    found = await overdue_steps(store_of(ctx), time.time(), grace)
    unwritten = await deps.flush_records(ctx, ctx.logger)
    for m in found.resent:
        # A new id per sweep: the lost original may be marked done in the inbox.
        event_id = message_id(m.data["flow_id"], -1, 10_000 + msg.slot)
        await ctx.send(m.queue or STEPS, "workflow.step_due", m.data, id=event_id)
    if found.resent:
        ctx.logger.warning("sweep: re-sent the pending step of %d runs", len(found.resent))
    if found.live or unwritten:
        await schedule_sweep(ctx, msg.slot + 1)
    else:
        await ctx.redis.delete(ctx.names.workflows_sweep_key)


@router.subscribe("workflow.step_due", "workflow.sweep", name=STEPS)
async def on_step_due(due: WorkflowStepDue | WorkflowsSweep, ctx: HandlerContext) -> None:
    """Run one step or compensation of a run (or the periodic sweep)."""
    if isinstance(due, WorkflowsSweep):
        await sweep(due, ctx)
        return
    await run_step(ctx, due)


async def run_step(
    ctx: HandlerContext, due: WorkflowStepDue, actions: Mapping[str, Action] | None = None
) -> None:
    """Run the cursor ``due`` names, if it is the run's live one: record the intent, call
    the tool (or start the deploy sub-flow, or run the unit's built-in ``action``), then
    store the outcome and send what follows."""
    store = store_of(ctx)
    state = await store.load(due.flow_id)
    if state is None:
        raise Reject(f"no pipeline or saga run {due.flow_id!r}")
    if not matches(state, due.mode, due.index, due.attempt):
        await send(ctx, state)  # a duplicate, or a redelivery after the run moved on
        await record(ctx, state)  # and the record a crash may have kept from being written
        return
    try:
        spec: Call | None = current_call(state)
    except KeyError:
        spec = None  # call() reports the missing template value
    action = None
    if spec is not None and spec.action:
        action = (actions or {}).get(spec.tool)
    if not state.inflight:
        intent = begin(state, time.time())
        if spec is not None and spec.subflow:
            intent.waiting = subflow.request_ids(intent)[1]
        elif action is not None and action.waits:
            intent.waiting = str(intent.context.get("flow_id"))
        try:
            state = await store.save(intent, state.rev)
        except Conflict:
            return  # another delivery of this cursor is running it
        await record(ctx, state)  # the intent: this tool is being called
    outcome: Outcome | None
    if spec is not None and spec.subflow:
        outcome = await subflow.start(ctx, state, spec)
    elif spec is not None and spec.action:
        if action is None:
            why = f"{spec.tool}: no such action in this unit"
            outcome = Outcome(ok=False, error=why, retryable=False)
        else:
            outcome = await action.run(ctx, state, spec)
    else:
        outcome = await call(ctx, state)
    if outcome is None:
        return  # an event ends the step (a deployment's outcome, a scan)
    new, messages = advance(state, outcome, time.time())
    # A waiting step can also be ended by the event it waits for; that delivery sends.
    racing = action is not None and action.waits
    await store_and_send(ctx, new, messages, state.rev, resend_on_conflict=not racing)


@router.subscribe("saga.compensate_requested", name="workflows.commands")
async def on_compensate(cmd: SagaCompensateRequested, ctx: HandlerContext) -> None:
    """Re-run a saga's failed compensations, or say why not."""
    store = store_of(ctx)
    for _ in range(10):
        state = await store.load(cmd.flow_id)
        if state is None:
            why = f"no pipeline or saga run {cmd.flow_id!r}"
            outcome: Any = why
        else:
            outcome = recompensate(state, cmd.by, time.time())
        if isinstance(outcome, str):
            await ctx.publish(
                "workflow.command_rejected",
                {"flow_id": cmd.flow_id, "command": "compensate", "why": outcome},
            )
            return
        assert state is not None
        new, messages = outcome
        if await store_and_send(ctx, new, messages, state.rev) is not None:
            return
    raise Conflict(f"run {cmd.flow_id}: too many concurrent changes")
