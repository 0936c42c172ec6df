"""Canary and blue-green through the whole embedded system (in-memory broker, fakeredis,
the fake kubernetes server, real handlers, inbox and guard chain): commands as events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.store import FlowStore
from schemas.analysis import AnalysisTemplate
from schemas.envelope import new_event
from schemas.flows import BlueGreenSpec, CanarySpec, FlowsConfig, FlowState, StrategySpec
from tests.flows.helpers import deployment, service
from tools.fakes.kubernetes import FakeKubernetesServer
from tools.fakes.prometheus import FakePrometheusServer
from tools.fakes.slack import FakeSlackServer
from workers.embedded import EmbeddedSystem

pytestmark = pytest.mark.timeout(60)

NS = "web-staging"


def flows_config(root: Path) -> FlowsConfig:
    spec = StrategySpec(
        canary=CanarySpec(
            replicas=4,
            steps=({"set_weight": 25}, {"pause": 0.2}, {"set_weight": 50}, {"pause": None}),  # type: ignore[arg-type]
            poll_interval=0.05,
        ),
        blue_green=BlueGreenSpec(
            replicas=2, scale_down_delay=0.2, poll_interval=0.05, approval_timeout=None
        ),
    )
    return FlowsConfig(manifest_roots=(str(root),), allow_unlisted_apps=True, default=spec)


def manifests(root: Path, version: str) -> str:
    path = root / f"web-{version}.yaml"
    path.write_text(yaml.safe_dump_all([deployment(image=f"web:{version}", replicas=4), service()]))
    return str(path)


async def deploy(system: EmbeddedSystem, root: Path, version: str, strategy: str) -> str:
    data = {
        "app": "web",
        "version": version,
        "environment": "staging",
        "strategy": strategy,
        "manifest_path": manifests(root, version),
    }
    ev = new_event("deployment.requested", data, correlationid="ci-run-1")
    await system.broker.publish(ev)
    for _ in range(200):
        started = [e for e in system.of_type("deployment.started") if e.causationid == ev.id]
        if started:
            return str(started[0].data["flow_id"])
        await asyncio.sleep(0.01)
    raise AssertionError("no deployment.started")


async def until(
    system: EmbeddedSystem, flow_id: str, *phases: str, step: int | None = None, timeout: float = 15
) -> FlowState:
    store = FlowStore(system.redis, system.names)
    state = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                state = await store.load(flow_id)
                if (
                    state is not None
                    and state.phase in phases
                    and not state.outbox
                    and step in (None, state.step)
                ):
                    return state
                await asyncio.sleep(0.02)
    except TimeoutError:
        detail = state.model_dump(exclude={"objects"}) if state else None
        dead = [m.headers for m in system.broker.dead_letters]
        raise AssertionError(
            f"flow {flow_id} not in {phases}: {detail}; dead letters {dead}"
        ) from None


async def command(system: EmbeddedSystem, type_: str, flow_id: str, **extra: Any) -> None:
    await system.broker.publish(new_event(type_, {"flow_id": flow_id, "by": "ann", **extra}))


def image_of(k8s: FakeKubernetesServer, name: str) -> str:
    dep = k8s.get("Deployment", name, NS)
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def replicas_of(k8s: FakeKubernetesServer, name: str) -> int:
    dep = k8s.get("Deployment", name, NS)
    assert dep is not None
    return int(dep["spec"]["replicas"])


async def test_canary_steps_through_weights_pauses_and_is_promoted(tmp_path: Path) -> None:
    async with EmbeddedSystem(flows_config=flows_config(tmp_path), sweep_interval=0.2) as system:
        k8s = system.server(FakeKubernetesServer)
        first = await deploy(system, tmp_path, "1.0", "canary")
        await until(system, first, "succeeded")  # nothing to compare with: deployed directly
        assert image_of(k8s, "web") == "web:1.0"

        flow = await deploy(system, tmp_path, "2.0", "canary")
        paused = await until(system, flow, "paused", step=4)
        assert paused.step == 4 and paused.desired_weight == 50 and paused.actual_weight == 50.0
        assert (replicas_of(k8s, "web-canary"), replicas_of(k8s, "web")) == (2, 2)
        assert image_of(k8s, "web") == "web:1.0" and image_of(k8s, "web-canary") == "web:2.0"

        await command(system, "deployment.promote_requested", flow)
        done = await until(system, flow, "succeeded")
        assert image_of(k8s, "web") == "web:2.0" and replicas_of(k8s, "web") == 4
        assert replicas_of(k8s, "web-canary") == 0
        weights = [
            (e.data["desired_weight"], e.data["actual_weight"])
            for e in system.of_type("deployment.weight_set")
            if e.data["flow_id"] == flow
        ]
        assert weights == [(25, 25.0), (50, 50.0)]
        assert [e.data["flow_id"] for e in system.of_type("deployment.completed")] == [first, flow]
        steps = [j["step"] for j in done.journal if j["kind"] == "step"]
        assert steps == sorted(set(steps)) and steps[-1] == len(done.steps) - 1


async def test_canary_abort_leaves_stable_serving_and_canary_at_zero(tmp_path: Path) -> None:
    async with EmbeddedSystem(flows_config=flows_config(tmp_path), sweep_interval=0.2) as system:
        k8s = system.server(FakeKubernetesServer)
        await until(system, await deploy(system, tmp_path, "1.0", "canary"), "succeeded")
        flow = await deploy(system, tmp_path, "2.0", "canary")
        await until(system, flow, "paused", step=4)
        await command(system, "deployment.approval_granted", flow)  # wrong phase
        await command(system, "deployment.abort_requested", flow, reason="error budget")
        state = await until(system, flow, "aborted")
        assert (replicas_of(k8s, "web-canary"), replicas_of(k8s, "web")) == (0, 4)
        assert image_of(k8s, "web") == "web:1.0"
        assert state.reason == "aborted by ann: error budget"
        [rejected] = system.of_type("deployment.command_rejected")
        assert rejected.data["command"] == "deployment.approval_granted"
        assert rejected.data["phase"] == "paused"
        [aborted] = system.of_type("deployment.aborted")
        assert aborted.data["by"] == "ann"
        assert system.broker.dead_letters == []


async def test_blue_green_waits_for_approval_then_switches_and_scales_down(tmp_path: Path) -> None:
    async with EmbeddedSystem(flows_config=flows_config(tmp_path), sweep_interval=0.2) as system:
        k8s = system.server(FakeKubernetesServer)
        first = await deploy(system, tmp_path, "1.0", "blue_green")
        await until(system, first, "awaiting_approval")
        await command(system, "deployment.approval_granted", first, reason="first release")
        await until(system, first, "succeeded")
        active = k8s.get("Service", "web", NS)
        assert active is not None and active["spec"]["selector"]["codebus.io/color"] == "blue"

        flow = await deploy(system, tmp_path, "2.0", "blue_green")
        waiting = await until(system, flow, "awaiting_approval")
        assert waiting.meta["new_colour"] == "green" and not waiting.switched
        preview = k8s.get("Service", "web-preview", NS)
        assert preview is not None and preview["spec"]["selector"]["codebus.io/color"] == "green"
        assert k8s.get("Service", "web", NS)["spec"]["selector"]["codebus.io/color"] == "blue"  # type: ignore[index]

        await command(system, "deployment.approval_granted", flow, reason="preview looks good")
        done = await until(system, flow, "succeeded")
        assert k8s.get("Service", "web", NS)["spec"]["selector"]["codebus.io/color"] == "green"  # type: ignore[index]
        assert replicas_of(k8s, "web-blue") == 0 and replicas_of(k8s, "web-green") == 2
        assert done.approval is not None and done.approval["by"] == "ann"
        promoted = [e for e in system.of_type("deployment.promoted") if e.data["flow_id"] == flow]
        assert len(promoted) == 1 and promoted[0].data["by"] == "ann"
        await system.settle()
        titles = [str(m.payload) for m in system.server(FakeSlackServer).messages]
        # one notification per state change that matters: two flows, one approval each
        assert sum("Approval needed: web" in t for t in titles) == 2
        assert sum("Deployment promoted: web 2.0" in t for t in titles) == 1
        # started, approval needed, promoted, completed - per flow, nothing per step
        assert len(titles) == 8, titles


async def test_blue_green_denied_scales_the_preview_down(tmp_path: Path) -> None:
    async with EmbeddedSystem(flows_config=flows_config(tmp_path), sweep_interval=0.2) as system:
        k8s = system.server(FakeKubernetesServer)
        flow = await deploy(system, tmp_path, "1.0", "blue_green")
        await until(system, flow, "awaiting_approval")
        await command(system, "deployment.approval_denied", flow, reason="wrong build")
        state = await until(system, flow, "aborted")
        assert state.reason == "approval denied by ann: wrong build"
        assert replicas_of(k8s, "web-blue") == 0
        assert k8s.get("Service", "web", NS) is None  # never switched: nothing served it


async def test_flow_state_is_not_keyed_by_the_callers_correlation_id(tmp_path: Path) -> None:
    # V3: two requests with the same correlation id get two flows; neither overwrites.
    async with EmbeddedSystem(flows_config=flows_config(tmp_path), sweep_interval=0.2) as system:
        victim = await deploy(system, tmp_path, "1.0", "rolling")
        attacker = await deploy(system, tmp_path, "6.6", "rolling")
        assert victim != attacker
        store = FlowStore(system.redis, system.names)
        v, a = await store.load(victim), await store.load(attacker)
        assert v is not None and a is not None
        assert v.version == "1.0" and a.version == "6.6"
        assert "ci-run-1" not in (victim, attacker)


# ---- analysis steps ---------------------------------------------------------------------

ERROR_RATE = 'sum(rate(errors{app="web"}[1m])) / sum(rate(requests{app="web"}[1m]))'


def analysis_config(root: Path) -> FlowsConfig:
    template = AnalysisTemplate.model_validate(
        {
            "metrics": [
                {
                    "name": "error_rate",
                    "query": ERROR_RATE.replace('"web"', '"{{args.app}}"'),
                    "interval": 0.05,
                    "count": 4,
                    "success_condition": "result[0] <= 0.01",
                    "failure_condition": "result[0] > 0.05",
                    "failure_limit": 1,
                }
            ]
        }
    )
    steps = ({"set_weight": 50}, {"analysis": {"template": "errors"}})
    spec = StrategySpec(canary=CanarySpec(replicas=2, steps=steps, poll_interval=0.05))  # type: ignore[arg-type]
    return FlowsConfig(
        manifest_roots=(str(root),),
        allow_unlisted_apps=True,
        default=spec,
        analysis_templates={"errors": template},
    )


async def test_canary_rolled_back_on_a_breach_says_why_in_one_line(tmp_path: Path) -> None:
    async with EmbeddedSystem(flows_config=analysis_config(tmp_path), sweep_interval=0.2) as system:
        k8s = system.server(FakeKubernetesServer)
        prom = system.server(FakePrometheusServer)
        prom.script(ERROR_RATE, [0.001, 0.071, 0.09])
        await until(system, await deploy(system, tmp_path, "1.0", "canary"), "succeeded")
        flow = await deploy(system, tmp_path, "2.0", "canary")
        state = await until(system, flow, "rolled_back")
        assert (replicas_of(k8s, "web-canary"), replicas_of(k8s, "web")) == (0, 2)
        assert image_of(k8s, "web") == "web:1.0"
        assert state.reason is not None and "\n" not in state.reason
        assert state.reason.startswith("analysis errors failed: ")
        assert "result[0] > 0.05" in state.reason and "failed 2 > failure_limit 1" in state.reason
        measured = [e.data["phase"] for e in system.of_type("deployment.analysis_measured")]
        assert measured == ["successful", "failed", "failed"]
        [rolled] = system.of_type("deployment.rolled_back")
        assert rolled.data["evidence"] and "0.09" in rolled.data["evidence"]
        [failed] = [e for e in system.of_type("deployment.failed") if e.data["flow_id"] == flow]
        assert failed.data["stage"] == "analysis"
        await system.settle()
        titles = [str(m.payload) for m in system.server(FakeSlackServer).messages]
        [rollback] = [t for t in titles if "Deployment rolled back: web 2.0" in t]
        assert "failure_limit" in rollback
        assert not any("measured" in t for t in titles)


async def test_inconclusive_analysis_waits_for_a_person(tmp_path: Path) -> None:
    async with EmbeddedSystem(flows_config=analysis_config(tmp_path), sweep_interval=0.2) as system:
        prom = system.server(FakePrometheusServer)
        prom.script(ERROR_RATE, [None])  # no data: inconclusive by default
        await until(system, await deploy(system, tmp_path, "1.0", "canary"), "succeeded")
        flow = await deploy(system, tmp_path, "2.0", "canary")
        waiting = await until(system, flow, "awaiting_approval")
        assert waiting.evidence and "inconclusive" in waiting.evidence
        [asked] = system.of_type("deployment.approval_requested")
        assert "analysis errors inconclusive" in asked.data["reason"]
        await command(system, "deployment.approval_granted", flow, reason="no traffic at night")
        await until(system, flow, "succeeded")


async def test_promote_full_skips_every_remaining_step(tmp_path: Path) -> None:
    async with EmbeddedSystem(flows_config=flows_config(tmp_path), sweep_interval=0.2) as system:
        k8s = system.server(FakeKubernetesServer)
        await until(system, await deploy(system, tmp_path, "1.0", "canary"), "succeeded")
        flow = await deploy(system, tmp_path, "2.0", "canary")
        await until(system, flow, "paused", step=2)  # the first bake, at 25 %
        await command(system, "deployment.promote_requested", flow, full=True, reason="hotfix")
        done = await until(system, flow, "succeeded")
        assert image_of(k8s, "web") == "web:2.0" and replicas_of(k8s, "web") == 4
        assert replicas_of(k8s, "web-canary") == 0
        weights = [e.data["desired_weight"] for e in system.of_type("deployment.weight_set")]
        assert weights == [25]  # 50 % never happened
        entered = [j["step"] for j in done.journal if j["kind"] == "step"]
        assert entered == [0, 1, 2, 5, 6, 7]
