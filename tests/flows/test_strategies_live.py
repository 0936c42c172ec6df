"""The three strategies end to end on the live RabbitMQ and Redis, the strict Kubernetes
API-server stand-in (its controller makes one rollout step per read) behind the real
kubernetes adapter, and the real Prometheus scraping a target whose error rate the test
controls, behind the real prometheus adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from schemas.analysis import AnalysisTemplate
from schemas.flows import (
    BlueGreenSpec,
    CanarySpec,
    FlowsConfig,
    RollingSpec,
    StrategySpec,
)
from schemas.names import Names
from tests.flows.live import Stack, image_of, replicas_of, running_stack, tool_servers
from tests.flows.test_analysis_prometheus import ERROR_RATE, Running
from tests.flows.test_analysis_prometheus import prometheus as prometheus
from tests.tools.adapters.k8s_apiserver import FakeApiServer, serve

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")
pytestmark = [MODULE_LOOP, pytest.mark.prometheus, pytest.mark.redis, pytest.mark.timeout(120)]

NS = "{app}-staging"


def config(root: Path) -> FlowsConfig:
    errors = AnalysisTemplate.model_validate(
        {
            "metrics": [
                {
                    "name": "error_rate",
                    "query": ERROR_RATE,
                    "interval": 1,
                    "count": 2,
                    "success_condition": "result[0] <= 0.05",
                    "failure_condition": "result[0] > 0.05",
                    "failure_limit": 1,
                }
            ]
        }
    )
    canary = CanarySpec(
        replicas=4,
        steps=(
            {"set_weight": 25},  # type: ignore[arg-type]
            {"analysis": {"template": "errors"}},
            {"set_weight": 50},
            {"pause": 0.3},
        ),
        poll_interval=0.1,
        step_deadline=30,
    )
    blue_green = BlueGreenSpec(
        replicas=2,
        scale_down_delay=0.3,
        poll_interval=0.1,
        step_deadline=30,
        approval_timeout=None,
        post_promotion_analysis={"template": "errors"},  # type: ignore[arg-type]
    )
    rolling = RollingSpec(progress_deadline=3, poll_interval=0.1)
    return FlowsConfig(
        manifest_roots=(str(root),),
        allow_unlisted_apps=True,
        default=StrategySpec(canary=canary, blue_green=blue_green, rolling=rolling),
        analysis_templates={"errors": errors},
    )


@pytest_asyncio.fixture(loop_scope="module")
async def k8s() -> AsyncIterator[tuple[FakeApiServer, str]]:
    server = FakeApiServer()
    runner, url = await serve(server)
    try:
        yield server, url
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def stack(
    amqp_url: str,
    redis_url: str,
    names: Names,
    tmp_path: Path,
    k8s: tuple[FakeApiServer, str],
    prometheus: Running,
) -> AsyncIterator[Stack]:
    import redis.asyncio as aioredis

    api, url = k8s
    client = aioredis.Redis.from_url(redis_url)
    servers = tool_servers(url, api.token, prometheus.url)
    try:
        async with running_stack(amqp_url, client, names, tmp_path, config(tmp_path), servers) as s:
            yield s
    finally:
        keys = [k async for k in client.scan_iter(match=f"{names.prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def first_release(stack: Stack, app: str, strategy: str) -> None:
    flow = await stack.deploy(app, "1.0", strategy)
    if strategy == "blue_green":
        # The first release has no old colour: post-promotion analysis still runs.
        await stack.phase(flow, "succeeded", "rolled_back")
    else:
        await stack.phase(flow, "succeeded")


async def test_canary_promoted_to_100(stack: Stack, k8s: Any) -> None:
    api, _ = k8s
    ns = NS.format(app="good")
    await first_release(stack, "good", "canary")
    flow = await stack.deploy("good", "2.0", "canary")
    done = await stack.phase(flow, "succeeded")
    assert image_of(api, ns, "good") == "good:2.0" and replicas_of(api, ns, "good") == 4
    assert replicas_of(api, ns, "good-canary") == 0
    assert done.desired_weight == 50 and done.actual_weight == 50.0
    analysis = [j for j in done.journal if j["kind"] == "analysis"]
    assert [a["phase"] for a in analysis] == ["successful"]


async def test_canary_aborted_on_a_breach(stack: Stack, k8s: Any, prometheus: Running) -> None:
    api, _ = k8s
    ns = NS.format(app="bad")
    prometheus.target.ratios["bad"] = 0.01
    await first_release(stack, "bad", "canary")
    stable_before = api.state.get(*_dep(ns, "bad"))["spec"]["template"]  # type: ignore[index]
    prometheus.target.ratios["bad"] = 0.2
    flow = await stack.deploy("bad", "2.0", "canary")
    state = await stack.phase(flow, "rolled_back")
    assert replicas_of(api, ns, "bad-canary") == 0 and replicas_of(api, ns, "bad") == 4
    assert api.state.get(*_dep(ns, "bad"))["spec"]["template"] == stable_before  # type: ignore[index]
    assert state.reason is not None and "\n" not in state.reason
    assert state.reason.startswith("analysis errors failed: error_rate")
    assert "> 0.05" in state.reason and "failure_limit 1" in state.reason


async def test_blue_green_promoted_after_approval(stack: Stack, k8s: Any) -> None:
    api, _ = k8s
    ns = NS.format(app="web")
    flow = await stack.deploy("web", "1.0", "blue_green")
    await stack.phase(flow, "awaiting_approval")
    await stack.command("deployment.approval_granted", flow)
    await stack.phase(flow, "succeeded")
    flow = await stack.deploy("web", "2.0", "blue_green")
    waiting = await stack.phase(flow, "awaiting_approval")
    assert waiting.meta["new_colour"] == "green"
    assert _selector(api, ns, "web") == "blue" and _selector(api, ns, "web-preview") == "green"
    await stack.command("deployment.approval_granted", flow, reason="preview checked")
    await stack.phase(flow, "succeeded")
    assert _selector(api, ns, "web") == "green"
    assert replicas_of(api, ns, "web-blue") == 0 and replicas_of(api, ns, "web-green") == 2


async def test_blue_green_switched_back_by_post_promotion_analysis(
    stack: Stack, k8s: Any, prometheus: Running
) -> None:
    api, _ = k8s
    ns = NS.format(app="good")
    prometheus.target.ratios["good"] = 0.01
    flow = await stack.deploy("good", "3.0", "blue_green")
    await stack.phase(flow, "awaiting_approval")
    await stack.command("deployment.approval_granted", flow)
    await stack.phase(flow, "succeeded")
    old = _selector(api, ns, "good")
    flow = await stack.deploy("good", "4.0", "blue_green")
    await stack.phase(flow, "awaiting_approval")
    prometheus.target.ratios["good"] = 0.3
    try:
        await error_rate_above(prometheus, "good", 0.05)  # the new colour "misbehaves"
        await stack.command("deployment.approval_granted", flow)
        state = await stack.phase(flow, "rolled_back")
    finally:
        prometheus.target.ratios["good"] = 0.01
    assert state.switched and _selector(api, ns, "good") == old
    assert replicas_of(api, ns, f"good-{state.meta['new_colour']}") == 0
    assert state.reason is not None and state.reason.startswith("analysis errors failed")


async def test_rolling_update_rolled_back_on_progress_deadline(stack: Stack, k8s: Any) -> None:
    api, _ = k8s
    ns = NS.format(app="roll")
    await first_release(stack, "roll", "rolling")
    flow = await stack.deploy("roll", "2.0", "rolling", tag="deadline")
    state = await stack.phase(flow, "rolled_back")
    assert state.reason == 'deployment "roll" exceeded its progress deadline'
    # kubectl rollout undo: the template is the first release's again
    await stack.until(flow, lambda s: image_of(api, ns, "roll") == "roll:1.0", what="undo")


async def error_rate_above(prometheus: Running, app: str, threshold: float) -> None:
    """Wait until Prometheus' rate window shows the error rate the target now serves."""
    import asyncio

    import aiohttp

    query = ERROR_RATE.replace("{{args.app}}", app)
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            async with session.get(f"{prometheus.url}/api/v1/query", params={"query": query}) as r:
                result = (await r.json())["data"]["result"]
            if result and float(result[0]["value"][1]) > threshold:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"error rate of {app} never rose above {threshold}")


def _dep(ns: str, name: str) -> tuple[Any, str, str]:
    from tests.tools.adapters.k8s_state import by_kind

    return by_kind("Deployment"), ns, name


def _selector(api: FakeApiServer, ns: str, name: str) -> str | None:
    from tests.tools.adapters.k8s_state import by_kind

    svc = api.state.get(by_kind("Service"), ns, name)
    assert svc is not None, name
    return svc["spec"]["selector"].get("codebus.io/color")
