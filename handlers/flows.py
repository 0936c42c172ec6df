"""Deployment flows on the bus (unit ``deploy``): timer wake-ups, sweeps and the
operators' commands, each fed to the flow engine (``flows.engine``).

Wake-ups and sweeps are not published to the exchange: they are sent, through the
delay tiers, straight into this unit's ``deploy.flow-wake`` queue.
"""

from __future__ import annotations

import math
import time
from typing import Any

from bus.context import HandlerContext
from bus.errors import Reject, Unroutable
from bus.router import Router
from flows.config import default_config
from flows.engine import FlowEngine, Ports
from flows.machine import Command, FlowEvent, WakeUp
from flows.pipeline_core import message_id
from flows.pipeline_sweep import overdue_steps
from flows.repository_record import RecordingEngine
from flows.store import FlowStore
from flows.sweeper import sweep
from handlers import deps
from handlers.toolcalls import call_tool
from schemas.events import (
    DeploymentAbortRequested,
    DeploymentApprovalDenied,
    DeploymentApprovalGranted,
    DeploymentPromoteRequested,
    DeploymentRetryRequested,
    FlowsSweep,
    FlowTimerFired,
)
from schemas.flows import FlowsConfig
from schemas.names import Names

router = Router("deploy")

WAKE = Names.FLOW_WAKE_SUBSCRIPTION
#: Seconds between sweeps, and how overdue a timer must be before a sweep re-sends it.
SWEEP_INTERVAL = 10.0
SWEEP_GRACE = 5.0


def engine_of(ctx: HandlerContext) -> FlowEngine:
    """The flow engine over this worker's Redis; it records every decision in the
    deployment repository when the unit has one (flows.repository_record)."""
    store = FlowStore(ctx.redis, ctx.names)
    outbox = deps.outbox(ctx)
    if outbox is None:
        return FlowEngine(store)
    return RecordingEngine(store, outbox.repository, outbox=outbox)


def flows_config(ctx: HandlerContext) -> FlowsConfig:
    """The loaded ``CODEBUS_FLOWS_CONFIG`` (or the default)."""
    return deps.FlowDeps.of(ctx).flows_config or default_config()


def ports(ctx: HandlerContext) -> Ports:
    """The engine's ports bound to this delivery."""

    async def publish(type: str, data: dict[str, Any], event_id: str) -> None:
        try:
            await ctx.publish(type, data, id=event_id)
        except Unroutable:
            # A state change nobody subscribes to (no audit unit deployed) must not hold
            # the rollout back; it stays in the flow's journal.
            ctx.logger.warning("no subscriber for %s of flow %s", type, data.get("flow_id"))

    async def wake(flow_id: str, timer: str, token: int, delay: float, event_id: str) -> None:
        payload = FlowTimerFired(flow_id=flow_id, timer=timer, token=token)
        await ctx.send(WAKE, "deployment.flow_timer", payload, id=event_id, delay=delay)

    async def tool(name: str, args: dict[str, Any]) -> Any:
        return await call_tool(ctx, name, args)

    return Ports(publish=publish, wake=wake, call_tool=tool)


async def advance(ctx: HandlerContext, flow_id: str, event: FlowEvent) -> None:
    """Feed ``event`` to the flow; a missing flow is an error with its id (dead letter)."""
    state = await engine_of(ctx).handle(flow_id, event, ports(ctx))
    if state is None:
        raise Reject(f"no deployment flow {flow_id!r}")


def sweep_interval(ctx: HandlerContext) -> float:
    """Seconds between sweeps (a dependency so tests and the demo can compress time)."""
    return deps.seconds(deps.FlowDeps.of(ctx).flows_sweep_interval, SWEEP_INTERVAL)


async def schedule_sweep(ctx: HandlerContext, slot: int | None = None) -> None:
    """Send the sweep of ``slot``; without a slot, start the chain unless it runs (its
    marker lives two intervals, refreshed by every link). The id is the slot, so even
    two chains started at once merge in the inbox."""
    interval = sweep_interval(ctx)
    now = time.time()
    names, redis = ctx.names, ctx.redis
    marker_ms = max(1, int(interval * 2000))
    if slot is None:
        if not await redis.set(names.flows_sweep_key, "1", nx=True, px=marker_ms):
            return
        slot = math.floor(now / interval) + 1
    else:
        await redis.set(names.flows_sweep_key, "1", px=marker_ms)
    await ctx.send(
        WAKE,
        "deployment.flows_sweep",
        FlowsSweep(slot=slot),
        id=f"{names.prefix}-flows-sweep-{slot}",
        delay=max(0.0, slot * interval - now),
    )


@router.subscribe("deployment.flow_timer", "deployment.flows_sweep", name=WAKE)
async def on_wake(msg: FlowTimerFired | FlowsSweep, ctx: HandlerContext) -> None:
    """A timer's wake-up, or the periodic sweep (which re-arms itself first)."""
    if isinstance(msg, FlowTimerFired):
        await advance(ctx, msg.flow_id, WakeUp(timer=msg.timer, token=msg.token))
        await schedule_sweep(ctx)  # restarts a sweep chain that was lost
        return
    grace = deps.seconds(deps.FlowDeps.of(ctx).flows_sweep_grace, SWEEP_GRACE)
    report = await sweep(
        engine_of(ctx), lambda _id: ports(ctx), now=time.time(), grace=grace, slot=msg.slot
    )
    unwritten = await deps.flush_records(ctx, ctx.logger)
    runs = await sweep_facade_runs(ctx, msg.slot)
    if report.live or unwritten or runs:
        # The chain ends with the last live flow; the next request starts it again.
        # Sent before this delivery is acked: a crash repeats the sweep, never loses it.
        await schedule_sweep(ctx, msg.slot + 1)
    else:
        await ctx.redis.delete(ctx.names.flows_sweep_key)
    if report.rewoken or report.drained or report.stalled:
        ctx.logger.warning(
            "sweep: %d overdue wake-ups re-sent, %d outboxes finished, %d flows stalled",
            report.rewoken,
            report.drained,
            report.stalled,
        )


async def sweep_facade_runs(ctx: HandlerContext, slot: int) -> int:
    """Re-send the overdue step of the deploy facade's runs (a ``workflow.step_due``
    dead-lettered, say); the number of runs still live."""
    from handlers.workflows import SWEEP_GRACE as RUN_GRACE
    from handlers.workflows import store_of

    grace = deps.seconds(deps.FlowDeps.of(ctx).workflows_sweep_grace, RUN_GRACE)
    queue = Names.DEPLOY_STEP_SUBSCRIPTION
    found = await overdue_steps(store_of(ctx), time.time(), grace, queue=queue)
    for m in found.resent:
        # A new id per sweep: the lost original may be marked done in the inbox.
        event_id = message_id(m.data["flow_id"], -2, 10_000 + slot)
        await ctx.send(queue, "workflow.step_due", m.data, id=event_id)
    if found.resent:
        ctx.logger.warning("sweep: re-sent the pending step of %d deploy runs", len(found.resent))
    return found.live


Commands = (
    DeploymentPromoteRequested
    | DeploymentAbortRequested
    | DeploymentRetryRequested
    | DeploymentApprovalGranted
    | DeploymentApprovalDenied
)


@router.subscribe(
    "deployment.promote_requested",
    "deployment.abort_requested",
    "deployment.retry_requested",
    "deployment.approval_granted",
    "deployment.approval_denied",
    name="deploy.flow-commands",
)
async def on_command(cmd: Commands, ctx: HandlerContext) -> None:
    """An operator's command: accepted, or answered with deployment.command_rejected."""
    kind: Any = {
        DeploymentPromoteRequested: "promote",
        DeploymentAbortRequested: "abort",
        DeploymentRetryRequested: "retry",
        DeploymentApprovalGranted: "approve",
        DeploymentApprovalDenied: "deny",
    }[type(cmd)]
    full = isinstance(cmd, DeploymentPromoteRequested) and cmd.full
    await advance(ctx, cmd.flow_id, Command(kind=kind, by=cmd.by, reason=cmd.reason, full=full))
    await schedule_sweep(ctx)
