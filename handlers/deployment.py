"""The deployment facade (unit ``deploy``): a declared pipeline, after the guide's
facade, pipeline, strategy and event-bus patterns.

``deployment.requested`` starts a run of the deploy pipeline (``flows/pipeline_facade.yaml``
or ``CODEBUS_DEPLOY_PIPELINE``): validate (policy, the flow minted by codebus,
deployment.started) -> build (image.built) -> scan (security.scan_requested for every
image the manifests run ... security.scan_completed) -> deploy (the strategy - rolling,
blue-green, canary - a sub-flow on the flow engine) -> notify (its outcome is out:
deployment.completed | deployment.rolled_back + deployment.failed | deployment.aborted).
One step per delivery: validate in the request's delivery, the others through
``workflow.step_due`` in this unit's ``deploy.steps`` queue. A step that fails ends the
run with the failed-step report (``workflow.failed``) besides the stage's
``deployment.failed``.

No handler waits: the scan and deploy steps end when the flow's events arrive here. Flow
state is keyed by the flow id codebus mints, never by a caller's correlation id (V3).
"""

from __future__ import annotations

import os
import time

from bus.context import HandlerContext
from bus.errors import Reject
from bus.router import Router
from flows.machine import ScanDone
from flows.pipeline import advance as advance_run
from flows.pipeline import new_run
from flows.pipeline_facade import FacadeSpecError, facade_run_id, load_facade_spec, mint_flow_id
from handlers.deployment_steps import ACTIONS, WAITERS
from handlers.deps import FlowDeps
from handlers.flows import advance, engine_of, schedule_sweep
from handlers.workflows import record, run_step, send, store_and_send, store_of
from schemas.envelope import Event
from schemas.events import DeploymentRequested, SecurityScanCompleted
from schemas.names import Names
from schemas.workflows import WorkflowSpec, WorkflowStepDue

__all__ = ["mint_flow_id", "router"]

router = Router("deploy")

STEPS = Names.DEPLOY_STEP_SUBSCRIPTION
_OUTCOMES = (
    "deployment.completed",
    "deployment.failed",
    "deployment.rolled_back",
    "deployment.aborted",
)


def facade_spec(ctx: HandlerContext) -> WorkflowSpec:
    """The deploy pipeline: a ``deploy_pipeline`` dependency, ``CODEBUS_DEPLOY_PIPELINE``
    or the shipped one."""
    spec = FlowDeps.of(ctx).deploy_pipeline
    if spec is not None:
        return spec
    try:
        return load_facade_spec(os.environ.get("CODEBUS_DEPLOY_PIPELINE") or None)
    except FacadeSpecError as exc:
        # Dead-lettered with the reason; replay it once the file is fixed.
        raise Reject(f"CODEBUS_DEPLOY_PIPELINE: {exc}") from None


@router.subscribe("deployment.requested", name="deploy.requested")
async def on_requested(req: DeploymentRequested, ctx: HandlerContext) -> None:
    """Start the request's run of the deploy pipeline and run its first step here."""
    flow_id = mint_flow_id(ctx.subscription, ctx.event.id)
    data = {**req.model_dump(mode="json"), "flow_id": flow_id}
    spec = facade_spec(ctx)
    run_id = facade_run_id(flow_id)
    state, messages = new_run(run_id, spec, data, time.time(), req.requested_by, queue=STEPS)
    # The first step runs in this delivery: no step_due for it, only workflow.started.
    state.sent = [{"type": m.type, "data": m.data, "delay": 0.0, "due": False}
                  for m in messages if not m.due]  # fmt: skip
    store = store_of(ctx)
    if await store.create(state):
        state = state.model_copy(update={"rev": 0})
        await send(ctx, state)
        await record(ctx, state)
    first = WorkflowStepDue(flow_id=run_id, mode="forward", index=0, attempt=1)
    await run_step(ctx, first, ACTIONS)  # a redelivery re-sends what the run last sent


@router.subscribe("workflow.step_due", name=STEPS)
async def on_step_due(due: WorkflowStepDue, ctx: HandlerContext) -> None:
    """One step of a facade run."""
    await run_step(ctx, due, ACTIONS)


async def settle(ctx: HandlerContext, flow_id: str) -> None:
    """End the facade step that waits for ``flow_id`` if the flow now says how it ended."""
    store = store_of(ctx)
    state = await store.load(facade_run_id(flow_id))
    if state is not None and state.cause == ctx.event.id:
        await send(ctx, state)  # this delivery ended the step, then died before sending
        return
    if state is None or not state.inflight or state.waiting != flow_id:
        return  # no run waits (yet: the step reads the flow when it starts)
    step = state.spec.steps[state.index]
    decide = WAITERS.get(step.action or "")
    if state.mode != "forward" or decide is None:
        return
    outcome = decide(await engine_of(ctx).store.load(flow_id))
    if outcome is None:
        return
    new, messages = advance_run(state, outcome, time.time())
    new.cause = ctx.event.id
    # Lost to a racing delivery (the step's own, or the other event): that one sends.
    await store_and_send(ctx, new, messages, state.rev, resend_on_conflict=False)


@router.subscribe("security.scan_completed", name="deploy.scanned")
async def on_scanned(scan: SecurityScanCompleted, ctx: HandlerContext) -> None:
    """A scan a flow waits for: the flow goes on once every image passed."""
    if scan.flow_id is None:
        ctx.logger.info("scan of %s is not part of a deployment; nothing to do", scan.image)
        return
    detail = f"{scan.total_vulnerabilities} vulnerabilities at or above {scan.severity}"
    await advance(ctx, scan.flow_id, ScanDone(image=scan.image, passed=scan.passed, detail=detail))
    await schedule_sweep(ctx)
    await settle(ctx, scan.flow_id)


@router.subscribe(*_OUTCOMES, name="deploy.outcomes")
async def on_outcome(event: Event, ctx: HandlerContext) -> None:
    """A deployment flow ended: its facade run's waiting step ends with it."""
    flow_id = event.data.get("flow_id")
    if flow_id:
        await settle(ctx, str(flow_id))
