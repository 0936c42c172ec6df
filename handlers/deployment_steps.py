"""The deploy facade's built-in steps (``action:`` in ``flows/pipeline_facade.yaml``),
each run in one delivery of the facade run's cursor (``handlers.workflows.run_step``).

They publish the events the hand-coded chain published (same types, payloads and, where
subscribers rely on them, ids): ``deployment.started``, ``image.built``,
``security.scan_requested``; the strategy's flow (``flows.engine``) publishes the
outcome. ``scan`` and ``rollout`` wait: the engine's state decides when they end, read
now (a flow that finished before the step began) or when its next event arrives
(``handlers.deployment``).
"""

from __future__ import annotations

import uuid

from bus.context import HandlerContext
from flows.config import PolicyError, new_flow
from flows.machine import ScanDone
from flows.pipeline import Call, Outcome
from handlers.flows import advance, engine_of, flows_config, ports, schedule_sweep
from handlers.workflows import Action
from schemas.events import (
    DeploymentFailed,
    DeploymentRequested,
    DeploymentStarted,
    ImageBuilt,
    SecurityScanRequested,
    validate_payload,
)
from schemas.flows import FlowState
from schemas.workflows import WorkflowState
from tools.errors import CircuitOpen, ToolError, ToolFailed, ToolTransientError

_EVENT_IDS = uuid.UUID("3c0f6a51-8e2d-4b7a-9d14-6f5e2a1b7c38")


def event_id(flow_id: str, type: str, key: str = "") -> str:
    """The id of an event a facade step publishes for ``flow_id``: the same whichever
    delivery (a redelivery, a re-sent step) publishes it."""
    return str(uuid.uuid5(_EVENT_IDS, f"{flow_id}\x1f{type}\x1f{key}"))


def request_of(state: WorkflowState) -> DeploymentRequested:
    """The request the run serves (its inputs less the flow id)."""
    data = {k: v for k, v in state.inputs.items() if k != "flow_id"}
    req = validate_payload("deployment.requested", data)
    assert isinstance(req, DeploymentRequested)
    return req


def _final(state: WorkflowState) -> bool:
    """Whether this is the step's last try."""
    return state.attempt >= state.spec.steps[state.index].retry.attempts


async def validate(ctx: HandlerContext, state: WorkflowState, call: Call) -> Outcome:
    """The policy check; creates the deployment flow and announces it."""
    flow_id = str(state.context["flow_id"])
    req = request_of(state)
    try:
        flow, images = new_flow(flows_config(ctx), req, flow_id)
    except PolicyError as exc:
        failed = DeploymentFailed(
            app=req.app,
            version=req.version,
            environment=req.environment,
            stage="policy",
            reason=str(exc)[:2000],
            flow_id=None,
        )
        await ctx.publish("deployment.failed", failed)
        return Outcome(ok=False, error=f"policy: {exc}", retryable=False)
    await engine_of(ctx).create(flow)  # False on a redelivery: the flow exists already
    image = req.image or images[0]
    started = DeploymentStarted(
        app=req.app,
        version=req.version,
        environment=req.environment,
        strategy=req.strategy,
        image=image,
        flow_id=flow_id,
    )
    await ctx.publish("deployment.started", started)
    await schedule_sweep(ctx)
    return Outcome(ok=True, result={"image": image, "images": images, "namespace": flow.namespace})


async def build(ctx: HandlerContext, state: WorkflowState, call: Call) -> Outcome:
    """``docker.docker_build`` when the request gave a build context; a failure on the
    last try fails the deployment at stage ``build``."""
    context_path, image = call.args.get("context_path"), str(call.args["image_tag"])
    if not context_path:
        return Outcome(ok=True, result={"image_id": None})
    flow_id = str(state.context["flow_id"])
    args = {"dockerfile_path": context_path, "image_tag": image}
    try:
        built = await ctx.toolbox.call_tool("docker.docker_build", args)
    except ToolError as exc:
        retryable = isinstance(exc, ToolTransientError | CircuitOpen)
        if not retryable or _final(state):
            failed = ScanDone(image=image, passed=False, detail=str(exc), stage="build")
            await advance(ctx, flow_id, failed)
        why = "build failed" if isinstance(exc, ToolFailed) else "docker.docker_build"
        return Outcome(ok=False, error=f"{why}: {exc}", retryable=retryable)
    req = request_of(state)
    built_event = ImageBuilt(
        app=req.app, version=req.version, image_tag=image, image_id=built.image_id
    )
    await ctx.publish("image.built", built_event, id=event_id(flow_id, "image.built", image))
    return Outcome(ok=True, result={"image_id": built.image_id})


def scan_outcome(flow: FlowState | None) -> Outcome | None:
    """The scan step's end as the flow shows it; None while scans are outstanding."""
    if flow is None:
        return Outcome(ok=False, error="the deployment flow is gone", retryable=False)
    if any(ok is False for ok in flow.images.values()):
        return Outcome(ok=False, error=f"{flow.reason or 'scan failed'}", retryable=False)
    if all(flow.images.values()):
        return Outcome(ok=True, result={"scanned": sorted(flow.images)})
    if flow.phase != "pending":  # aborted by a person while it waited for scans
        return Outcome(ok=False, error=f"{flow.phase}: {flow.reason}", retryable=False)
    return None


def rollout_outcome(flow: FlowState | None) -> Outcome | None:
    """The deploy step's end: the strategy's flow ended; None while it runs."""
    if flow is None:
        return Outcome(ok=False, error="the deployment flow is gone", retryable=False)
    if not flow.terminal:
        return None
    if flow.phase == "succeeded":
        return Outcome(ok=True, result={"phase": flow.phase, "namespace": flow.namespace})
    return Outcome(ok=False, error=f"{flow.phase}: {flow.reason}", retryable=False)


async def _flow(ctx: HandlerContext, state: WorkflowState) -> FlowState | None:
    return await engine_of(ctx).store.load(str(state.context["flow_id"]))


async def scan(ctx: HandlerContext, state: WorkflowState, call: Call) -> Outcome | None:
    """Ask for a scan of every image the manifests run; the results end the step."""
    flow = await _flow(ctx, state)
    done = scan_outcome(flow)
    if done is not None or flow is None:
        return done
    req = request_of(state)
    for image, ok in flow.images.items():
        if ok is not None:
            continue
        wanted = SecurityScanRequested(
            image=image,
            severity=call.args.get("severity", "high"),
            app=req.app,
            version=req.version,
            flow_id=flow.id,
        )
        key = event_id(flow.id, "security.scan_requested", image)
        await ctx.publish("security.scan_requested", wanted, id=key)
    return None


async def rollout(ctx: HandlerContext, state: WorkflowState, call: Call) -> Outcome | None:
    """The strategy runs on the flow engine (started when the last scan passed); its
    end ends the step."""
    return rollout_outcome(await _flow(ctx, state))


async def notify(ctx: HandlerContext, state: WorkflowState, call: Call) -> Outcome:
    """The outcome's events are out before the run ends: what the flow's outbox still
    holds (a crash after deciding) is published now."""
    flow_id = str(state.context["flow_id"])
    engine = engine_of(ctx)
    flow = await engine.store.load(flow_id)
    if flow is not None and flow.outbox:
        await engine.drain(flow_id, ports(ctx))
        flow = await engine.store.load(flow_id)
    if flow is None:
        return Outcome(ok=False, error="the deployment flow is gone", retryable=False)
    if flow.outbox:
        return Outcome(ok=False, error="the outcome is not announced yet (flow busy)")
    return Outcome(ok=True, result={"announced": flow.phase})


ACTIONS: dict[str, Action] = {
    "deploy.validate": Action(validate),
    "deploy.build": Action(build),
    "deploy.scan": Action(scan, waits=True),
    "deploy.rollout": Action(rollout, waits=True),
    "deploy.notify": Action(notify),
}
#: What ends a waiting step, read from the deployment flow.
WAITERS = {"deploy.scan": scan_outcome, "deploy.rollout": rollout_outcome}
