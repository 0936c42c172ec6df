"""The correlation view on real data: workers of the security, audit and a probe unit
on the live RabbitMQ and Redis (the worker's middleware, guard chain and audit sink),
tool calls audited by the toolbox, and the console's API hangs each call under the
event whose handler made it - one call made through ``handlers.toolcalls.call_tool``,
one straight through ``ctx.toolbox`` (ids from the consumer middleware's delivery
context)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bus.context import HandlerContext
from bus.rabbitmq import RabbitBroker
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import Event, new_event
from schemas.names import Names
from tests.console.conftest import READ_TOKEN, Console, sign_in
from tools.fakes.security_scanner import FakeSecurityScannerServer
from workers.app import make_middleware
from workers.settings import Settings
from workers.toolbox import ToolsFile, build_toolbox, guard_config
from workers.units import UNITS, Unit, with_unit_roles

pytestmark = pytest.mark.timeout(60)

probe = Router("probe")


@probe.subscribe("security.scan_completed", name="probe.rescan")
async def rescan(event: Event, ctx: HandlerContext) -> None:
    """Calls a tool without the handlers' helper: only the middleware knows the event."""
    await ctx.toolbox.call_tool(
        "security-scanner.docker_security_scan", {"image": "web:2", "severity": "high"}
    )


PROBE = Unit("probe", "calls a tool directly", (probe,), tools=("security-scanner.*",))


def _nodes(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for node in tree:
        out += [node, *_nodes(node["children"])]
    return out


@contextlib.asynccontextmanager
async def workers(amqp_url: str, redis: Any, names: Names) -> AsyncIterator[RabbitBroker]:
    """The security, audit and probe units on the live services, one toolbox as the
    worker builds it (audit records to the Redis stream)."""
    units = [UNITS["security"], UNITS["audit"], PROBE]
    settings = Settings(prefix=names.prefix, retry_base_delay=0.05, max_attempts=2, http_port=0)
    broker = RabbitBroker(amqp_url, names=names, connection_name="codebus-correlation-test")
    await broker.connect()
    config = with_unit_roles(guard_config(ToolsFile()), units, undeclared=())
    toolbox = build_toolbox([FakeSecurityScannerServer()], redis, names, config, "test")
    await toolbox.start()
    running: list[Worker] = []
    queues = [names.subscription_queue(s.name) for u in units for s in u.subscriptions()]
    try:
        for unit in units:
            worker = Worker(
                broker,
                unit.subscriptions(),
                middleware=make_middleware(settings, redis, CollectorRegistry()),
                deps={"redis": redis, "names": names, "toolbox": toolbox.as_role(unit.name)},
                grace_period=5,
                source=f"codebus/{unit.name}",
            )
            await worker.start()
            running.append(worker)
        yield broker
    finally:
        for worker in running:
            await worker.stop()
        await toolbox.close()
        with contextlib.suppress(Exception):
            await broker.delete_topology(queues)
        await broker.close()


async def _until(check: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_tool_calls_appear_under_the_event_whose_handler_made_them(
    console: Console, http: Any, amqp_url: str, redis_client: Any, names: Names
) -> None:
    request = new_event(
        "security.scan_requested", {"image": "web:1", "severity": "high"}, source="tests"
    )

    async def records() -> list[dict[str, Any]]:
        entries = await redis_client.xrange(names.audit_stream)
        return [json.loads(fields[b"record"]) for _id, fields in entries]

    async def logged() -> list[dict[bytes, bytes]]:
        return [f for _id, f in await redis_client.xrange(names.event_log_stream)]

    async with workers(amqp_url, redis_client, names) as broker:
        await broker.publish(request)
        # The scan, its completion (which the probe rescans) and the audit trail of both.
        await _until(lambda: _at_least(records, 2), "two audited tool calls")
        await _until(lambda: _at_least(logged, 2), "the event log")
    log = {f[b"type"].decode(): f[b"id"].decode() for f in await logged()}
    completed = log["security.scan_completed"]

    got = await records()
    assert sorted((r["event_id"], r["tool"]) for r in got) == sorted(
        [
            (request.id, "security-scanner.docker_security_scan"),
            (completed, "security-scanner.docker_security_scan"),
        ]
    )
    assert {r["correlationid"] for r in got} == {request.id}
    by_event = {r["event_id"]: r for r in got}
    assert by_event[request.id]["causationid"] is None
    assert by_event[completed]["causationid"] == request.id

    await sign_in(http, console, READ_TOKEN)
    async with http.get(f"/api/correlation/{request.id}") as r:
        assert r.status == 200
        body = await r.json()
    (root,) = body["tree"]
    assert root["id"] == request.id and body["tool_calls"] == []
    nodes = {n["id"]: n for n in _nodes(body["tree"])}
    assert set(nodes) == set(log.values())
    assert nodes[completed] in root["children"]
    for event_id in (request.id, completed):
        (call,) = nodes[event_id]["tool_calls"]
        assert call["tool"] == "security-scanner.docker_security_scan"
        assert call["outcome"] == "ok" and call["event_id"] == event_id


async def _at_least(read: Any, n: int) -> bool:
    return len(await read()) >= n
