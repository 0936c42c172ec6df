"""Tool-layer metrics: calls by outcome, latency, cache hits and misses, breaker state
and transitions (live Redis), and outbound webhook deliveries."""

from __future__ import annotations

import asyncio

import pytest

from tests.tools.toolbox_helpers import HttpishServer, fast_config, make_toolbox
from tools.errors import CircuitOpen, ToolPermissionDenied, ToolTransientError
from tools.guards.metrics import ToolMetrics

READ = {"service": "web"}
DEPLOY = {"image_tag": "app:1"}


def sample(metrics: ToolMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_calls_are_counted_by_outcome_and_timed(redis_client, names) -> None:
    metrics = ToolMetrics()
    server = HttpishServer()
    toolbox = make_toolbox(redis_client, names, server, metrics=metrics)
    await toolbox.call_tool("httpish.deploy", DEPLOY)
    server.plan.extend([ToolTransientError("503", status=503)] * 3)
    with pytest.raises(ToolTransientError):
        await toolbox.call_tool("httpish.deploy", DEPLOY)
    with pytest.raises(ToolPermissionDenied):
        await toolbox.call_tool("httpish.deploy", DEPLOY, role="developer")
    labels = {"server": "httpish", "tool": "httpish.deploy"}
    assert sample(metrics, "codebus_tool_calls_total", outcome="ok", **labels) == 1
    # Three adapter attempts behind one call: the retries are inside, one outcome.
    assert sample(metrics, "codebus_tool_calls_total", outcome="transient", **labels) == 1
    assert sample(metrics, "codebus_tool_calls_total", outcome="denied", **labels) == 1
    assert sample(metrics, "codebus_tool_call_seconds_count", **labels) == 3


async def test_cache_hits_and_misses(redis_client, names) -> None:
    metrics = ToolMetrics()
    toolbox = make_toolbox(redis_client, names, metrics=metrics)
    for _ in range(3):
        await toolbox.call_tool("httpish.get_status", READ)
    tool = "httpish.get_status"
    assert sample(metrics, "codebus_tool_cache_requests_total", tool=tool, result="miss") == 1
    assert sample(metrics, "codebus_tool_cache_requests_total", tool=tool, result="hit") == 2
    calls = sample(metrics, "codebus_tool_calls_total", server="httpish", tool=tool, outcome="ok")
    assert calls == 3


async def test_breaker_state_and_transitions_follow_the_circuit(redis_client, names) -> None:
    metrics = ToolMetrics()
    server = HttpishServer()
    config = fast_config(**{"httpish.*": {"retry": False, "breaker_reset_timeout": 0.2}})
    toolbox = make_toolbox(redis_client, names, server, config=config, metrics=metrics)

    def state(s: str) -> float:
        return sample(metrics, "codebus_tool_breaker_state", server="httpish", state=s)

    def moved(a: str, b: str) -> float:
        return sample(
            metrics,
            "codebus_tool_breaker_transitions_total",
            server="httpish",
            from_state=a,
            to_state=b,
        )

    await toolbox.call_tool("httpish.deploy", DEPLOY)
    assert (state("closed"), state("open")) == (1, 0)
    server.plan.extend([ToolTransientError("503", status=503)] * 3)
    for _ in range(3):
        with pytest.raises(ToolTransientError):
            await toolbox.call_tool("httpish.deploy", DEPLOY)
    assert (state("closed"), state("open")) == (0, 1)
    with pytest.raises(CircuitOpen):
        await toolbox.call_tool("httpish.deploy", DEPLOY)
    assert (
        sample(
            metrics,
            "codebus_tool_calls_total",
            server="httpish",
            tool="httpish.deploy",
            outcome="circuit_open",
        )
        == 1
    )
    await asyncio.sleep(0.25)
    await toolbox.call_tool("httpish.deploy", DEPLOY)  # the probe succeeds
    assert (state("closed"), state("open"), state("half_open")) == (1, 0, 0)
    assert moved("closed", "open") == 1
    assert moved("open", "half_open") == 1
    assert moved("half_open", "closed") == 1


async def test_webhook_deliveries_are_counted_and_timed() -> None:
    import base64
    import ipaddress

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from schemas.envelope import new_event
    from schemas.gateway_config import OutboundSubscription
    from tools.webhooks.delivery import WebhookSender

    statuses = iter([200, 503, 404])

    async def handle(_: web.Request) -> web.Response:
        return web.Response(status=next(statuses))

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    metrics = ToolMetrics()
    sender = WebhookSender(allowed_cidrs=[ipaddress.ip_network("127.0.0.1/32")], metrics=metrics)
    sub = OutboundSubscription(
        name="rx",
        url=f"http://127.0.0.1:{server.port}/hook",
        patterns=["#"],
        secret="whsec_" + base64.b64encode(b"receiver-secret-0123456789").decode(),
    )
    event = new_event("deployment.completed", {"app": "shop", "version": "1"}, source="t")
    try:
        await sender.deliver(sub, event)
        for _ in range(2):
            with pytest.raises(Exception):  # noqa: B017 - classification is tested elsewhere
                await sender.deliver(sub, event)
    finally:
        await server.close()
    assert sample(metrics, "codebus_webhook_deliveries_total", outcome="ok") == 1
    assert sample(metrics, "codebus_webhook_deliveries_total", outcome="transient") == 1
    assert sample(metrics, "codebus_webhook_deliveries_total", outcome="failed") == 1
    assert sample(metrics, "codebus_webhook_delivery_seconds_count") == 3
