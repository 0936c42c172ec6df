"""The deployment flow (unit ``deploy``), after the guide's facade, strategy and
event-bus patterns:

deployment.requested -> policy check, a flow minted by codebus (``flows.engine``),
deployment.started, [docker_build -> image.built], security.scan_requested for every
image the manifests run ... security.scan_completed -> the strategy (rolling,
blue-green, canary) steps through timers and tool calls -> deployment.completed |
deployment.rolled_back + deployment.failed | deployment.aborted.

No handler waits: every wait is a timer in the flow's state and a delayed wake-up
(``handlers.flows``). Flow state is keyed by the flow id codebus mints, never by a
caller's correlation id (V3).
"""

from __future__ import annotations

import uuid

from bus.context import HandlerContext
from bus.router import Router
from flows.config import PolicyError, new_flow
from flows.machine import ScanDone
from handlers.flows import advance, engine_of, flows_config, schedule_sweep
from handlers.toolcalls import call_tool
from schemas.events import (
    DeploymentFailed,
    DeploymentRequested,
    DeploymentStarted,
    ImageBuilt,
    SecurityScanCompleted,
    SecurityScanRequested,
)
from tools.errors import ToolFailed

router = Router("deploy")

_FLOW_IDS = uuid.UUID("9a3e4f0c-2b61-4c1e-8f0d-5d7b2a6c3e11")


def mint_flow_id(subscription: str, event_id: str) -> str:
    """The flow of one accepted request: derived from the delivery (so a redelivery
    finds its flow) and never from the caller's correlation id."""
    return "d-" + uuid.uuid5(_FLOW_IDS, f"{subscription}\x1f{event_id}").hex[:20]


@router.subscribe("deployment.requested", name="deploy.requested")
async def on_requested(req: DeploymentRequested, ctx: HandlerContext) -> None:
    """Check the request against the policy, create its flow, build, ask for scans."""
    flow_id = mint_flow_id(ctx.subscription, ctx.event.id)
    try:
        state, images = new_flow(flows_config(ctx), req, flow_id)
    except PolicyError as exc:
        await _fail(ctx, req, "policy", str(exc), None)
        return
    await engine_of(ctx).create(state)  # False on a redelivery: the flow exists already
    await ctx.publish(
        "deployment.started",
        DeploymentStarted(
            app=req.app,
            version=req.version,
            environment=req.environment,
            strategy=req.strategy,
            image=req.image or images[0],
            flow_id=flow_id,
        ),
    )
    await schedule_sweep(ctx)
    if req.context_path:
        image = req.image or images[0]
        try:
            built = await call_tool(
                ctx,
                "docker.docker_build",
                {"dockerfile_path": req.context_path, "image_tag": image},
            )
        except ToolFailed as exc:
            failed = ScanDone(image=image, passed=False, detail=str(exc), stage="build")
            await advance(ctx, flow_id, failed)
            return
        await ctx.publish(
            "image.built",
            ImageBuilt(app=req.app, version=req.version, image_tag=image, image_id=built.image_id),
        )
    for image in images:
        await ctx.publish(
            "security.scan_requested",
            SecurityScanRequested(
                image=image, severity="high", app=req.app, version=req.version, flow_id=flow_id
            ),
        )


@router.subscribe("security.scan_completed", name="deploy.scanned")
async def on_scanned(scan: SecurityScanCompleted, ctx: HandlerContext) -> None:
    """A scan a flow waits for: the flow goes on once every image passed."""
    if scan.flow_id is None:
        ctx.logger.info("scan of %s is not part of a deployment; nothing to do", scan.image)
        return
    detail = f"{scan.total_vulnerabilities} vulnerabilities at or above {scan.severity}"
    await advance(ctx, scan.flow_id, ScanDone(image=scan.image, passed=scan.passed, detail=detail))
    await schedule_sweep(ctx)


async def _fail(
    ctx: HandlerContext, req: DeploymentRequested, stage: str, reason: str, flow_id: str | None
) -> None:
    await ctx.publish(
        "deployment.failed",
        DeploymentFailed(
            app=req.app,
            version=req.version,
            environment=req.environment,
            stage=stage,
            reason=reason[:2000],
            flow_id=flow_id,
        ),
    )
