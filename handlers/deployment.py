"""The deployment flow (unit ``deploy``), after the guide's facade and event-bus patterns:

deployment.requested -> deployment.started, [docker_build -> image.built],
security.scan_requested  ...  security.scan_completed -> kubectl_apply ->
kubectl_rollout_status -> deployment.completed | (rollout undo -> deployment.rolled_back)
-> deployment.failed.

The request is kept in Redis as workflow state under the correlation id, so the step
after the scan (handled by another unit) knows what to deploy.
"""

from __future__ import annotations

import json
import time

from bus.context import HandlerContext
from bus.router import Router
from handlers.toolcalls import call_tool
from schemas.events import (
    DeploymentCompleted,
    DeploymentFailed,
    DeploymentRequested,
    DeploymentRolledBack,
    DeploymentStarted,
    ImageBuilt,
    SecurityScanCompleted,
    SecurityScanRequested,
)
from schemas.names import Names
from tools.adapters.kubernetes_rollout import RolloutTimeout
from tools.errors import ToolFailed

router = Router("deploy")

WORKFLOW_TTL = 7 * 24 * 3600


def namespace_for(app: str, environment: str) -> str:
    """The guide's convention: one namespace per app and environment."""
    return f"{app}-{environment}"[:63]


@router.subscribe("deployment.requested", name="deploy.requested")
async def on_requested(req: DeploymentRequested, ctx: HandlerContext) -> None:
    """Start a deployment: record the workflow, build the image, ask for a scan."""
    names: Names = ctx.deps["names"]
    redis = ctx.deps["redis"]
    image = req.image or f"{req.app}:{req.version}"
    workflow = {**req.model_dump(mode="json"), "image": image, "started_at": time.time()}
    # Written before anything is published, so the next step always finds it; a
    # redelivery writes the same values again.
    key = names.workflow_key(ctx.event.correlationid or ctx.event.id)
    await redis.set(key, json.dumps(workflow), ex=WORKFLOW_TTL)
    await ctx.publish(
        "deployment.started",
        DeploymentStarted(
            app=req.app,
            version=req.version,
            environment=req.environment,
            strategy=req.strategy,
            image=image,
        ),
    )
    if req.context_path:
        try:
            built = await call_tool(
                ctx,
                "docker.docker_build",
                {"dockerfile_path": req.context_path, "image_tag": image},
            )
        except ToolFailed as exc:
            await _fail(ctx, req.app, req.version, req.environment, "build", str(exc))
            return
        await ctx.publish(
            "image.built",
            ImageBuilt(app=req.app, version=req.version, image_tag=image, image_id=built.image_id),
        )
    await ctx.publish(
        "security.scan_requested",
        SecurityScanRequested(image=image, severity="high", app=req.app, version=req.version),
    )


@router.subscribe("security.scan_completed", name="deploy.scanned")
async def on_scanned(scan: SecurityScanCompleted, ctx: HandlerContext) -> None:
    """Deploy a scanned image if it passed; otherwise fail the deployment."""
    names: Names = ctx.deps["names"]
    raw = await ctx.deps["redis"].get(names.workflow_key(ctx.event.correlationid or ""))
    if raw is None:
        ctx.logger.info("scan of %s is not part of a deployment; nothing to do", scan.image)
        return
    wf = json.loads(raw)
    app, version, env = wf["app"], wf["version"], wf["environment"]
    if not scan.passed:
        reason = f"{scan.total_vulnerabilities} vulnerabilities at or above {scan.severity}"
        await _fail(ctx, app, version, env, "security_scan", reason)
        return
    namespace = namespace_for(app, env)
    manifest = wf.get("manifest_path") or f"./k8s/{app}/"
    try:
        applied = await call_tool(
            ctx, "kubernetes.kubectl_apply", {"manifest_path": manifest, "namespace": namespace}
        )
        status = await call_tool(
            ctx,
            "kubernetes.kubectl_rollout_status",
            {"name": app, "namespace": namespace, "timeout": ctx.deps.get("rollout_timeout", 300)},
            passthrough=(RolloutTimeout,),
        )
    except (ToolFailed, RolloutTimeout) as exc:
        await _rollback(ctx, app, version, env, namespace, str(exc))
        return
    if not status.ready:
        await _rollback(ctx, app, version, env, namespace, status.message)
        return
    await ctx.publish(
        "deployment.completed",
        DeploymentCompleted(
            app=app,
            version=version,
            environment=env,
            image=wf.get("image"),
            duration_seconds=max(0.0, time.time() - float(wf.get("started_at", time.time()))),
            result={"namespace": namespace, "applied": applied.applied_resources},
        ),
    )


async def _rollback(
    ctx: HandlerContext, app: str, version: str, env: str, namespace: str, why: str
) -> None:
    try:
        await call_tool(
            ctx,
            "kubernetes.kubectl_rollout",
            {"action": "undo", "resource_type": "deployment", "name": app, "namespace": namespace},
        )
    except ToolFailed as exc:
        ctx.logger.warning("rollback of %s failed: %s", app, exc)
    else:
        await ctx.publish(
            "deployment.rolled_back",
            DeploymentRolledBack(app=app, version=version, environment=env, reason=why),
        )
    await _fail(ctx, app, version, env, "rollout", why)


async def _fail(
    ctx: HandlerContext, app: str, version: str, env: str, stage: str, reason: str
) -> None:
    await ctx.publish(
        "deployment.failed",
        DeploymentFailed(
            app=app, version=version, environment=env, stage=stage, reason=reason[:2000]
        ),
    )
