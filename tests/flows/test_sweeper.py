"""The sweeper re-sends a wake-up that was lost; the reconciler reports a stuck flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import handlers.flows
from flows.engine import Ports
from schemas.flows import CanarySpec, FlowsConfig, Pause, StrategySpec
from tests.flows.test_strategies_embedded import deploy, until
from workers.embedded import EmbeddedSystem

pytestmark = pytest.mark.timeout(60)


def config(root: Path, **spec: Any) -> FlowsConfig:
    canary = CanarySpec(
        replicas=4,
        steps=({"set_weight": 25}, {"pause": 0.2}),  # type: ignore[arg-type]
        poll_interval=0.05,
    )
    return FlowsConfig(
        manifest_roots=(str(root),),
        allow_unlisted_apps=True,
        default=StrategySpec(canary=canary, **spec),
    )


async def test_a_lost_wake_up_is_resent_by_the_sweeper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped: list[tuple[str, str]] = []
    real_ports = handlers.flows.ports

    def lossy_ports(ctx: Any) -> Ports:
        ports = real_ports(ctx)

        async def wake(flow_id: str, timer: str, token: int, delay: float, event_id: str) -> None:
            if timer == "step" and not dropped and delay > 0:
                dropped.append((flow_id, timer))  # lost: as if the process died here
                return
            await ports.wake(flow_id, timer, token, delay, event_id)

        return Ports(publish=ports.publish, wake=wake, call_tool=ports.call_tool)

    monkeypatch.setattr(handlers.flows, "ports", lossy_ports)
    async with EmbeddedSystem(flows_config=config(tmp_path), sweep_interval=0.3) as system:
        await until(system, await deploy(system, tmp_path, "1.0", "canary"), "succeeded")
        flow = await deploy(system, tmp_path, "2.0", "canary")
        done = await until(system, flow, "succeeded")
    assert dropped == [(flow, "step")]
    [fired] = [j for j in done.journal if j["kind"] == "timer" and j["timer"] == "step"]
    assert fired["late"] >= 0.3  # woken by the sweep (grace = one interval), not the lost message


async def test_a_flow_stuck_in_a_phase_is_reported_stalled_once(tmp_path: Path) -> None:
    canary = CanarySpec(replicas=4, steps=(Pause(pause=None),), poll_interval=0.05)
    cfg = FlowsConfig(
        manifest_roots=(str(tmp_path),),
        allow_unlisted_apps=True,
        default=StrategySpec(canary=canary, stall_after=0.5),
    )
    async with EmbeddedSystem(flows_config=cfg, sweep_interval=0.2) as system:
        await until(system, await deploy(system, tmp_path, "1.0", "canary"), "succeeded")
        flow = await deploy(system, tmp_path, "2.0", "canary")
        state = await until(system, flow, "paused")
        assert state.stall_after == 0.5
        stalled = await _wait_stalled(system, flow)
        assert stalled.stalled
        await command_abort(system, flow)
        await until(system, flow, "aborted")
    events = [e for e in system.of_type("deployment.stalled") if e.data["flow_id"] == flow]
    assert len(events) == 1 and events[0].data["phase"] == "paused"
    assert events[0].data["seconds"] >= 0.5


async def _wait_stalled(system: EmbeddedSystem, flow: str) -> Any:
    import asyncio

    from flows.store import FlowStore

    store = FlowStore(system.redis, system.names)
    for _ in range(200):
        state = await store.load(flow)
        if state is not None and state.stalled:
            await asyncio.sleep(0.5)  # more sweeps: still one report
            return state
        await asyncio.sleep(0.02)
    raise AssertionError("never reported stalled")


async def command_abort(system: EmbeddedSystem, flow: str) -> None:
    from tests.flows.test_strategies_embedded import command

    await command(system, "deployment.abort_requested", flow, reason="stuck")
