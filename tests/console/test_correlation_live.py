"""The correlation view on real data: handlers run by the embedded system (real
middleware, guard chain and audit unit) against the live Redis, tool calls audited by
the toolbox, and the console's API hangs each call under the event whose handler made
it - one call made through ``handlers.toolcalls.call_tool``, one straight through
``ctx.toolbox`` (ids from the consumer middleware's delivery context)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bus.context import HandlerContext
from bus.router import Router
from schemas.envelope import Event, new_event
from schemas.names import Names
from tests.console.conftest import READ_TOKEN, Console, sign_in
from workers.embedded import EmbeddedSystem
from workers.settings import Settings
from workers.units import Unit

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


async def test_tool_calls_appear_under_the_event_whose_handler_made_them(
    console: Console, http: Any, redis_client: Any, names: Names
) -> None:
    settings = Settings(prefix=names.prefix, retry_base_delay=0.05, max_attempts=2, http_port=0)
    request = new_event(
        "security.scan_requested", {"image": "web:1", "severity": "high"}, source="tests"
    )
    async with EmbeddedSystem(
        ("security", "audit", PROBE), settings=settings, redis=redis_client
    ) as system:
        await system.broker.publish(request)
        await system.settle()
    (completed,) = system.of_type("security.scan_completed")

    records = [
        json.loads(fields[b"record"])
        for _id, fields in await redis_client.xrange(names.audit_stream)
    ]
    assert sorted((r["event_id"], r["tool"]) for r in records) == sorted(
        [
            (request.id, "security-scanner.docker_security_scan"),
            (completed.id, "security-scanner.docker_security_scan"),
        ]
    )
    assert {r["correlationid"] for r in records} == {request.id}
    by_event = {r["event_id"]: r for r in records}
    assert by_event[request.id]["causationid"] is None
    assert by_event[completed.id]["causationid"] == request.id

    await sign_in(http, console, READ_TOKEN)
    async with http.get(f"/api/correlation/{request.id}") as r:
        assert r.status == 200
        body = await r.json()
    (root,) = body["tree"]
    assert root["id"] == request.id and body["tool_calls"] == []
    nodes = {n["id"]: n for n in _nodes(body["tree"])}
    assert nodes[completed.id] in root["children"]
    for event_id in (request.id, completed.id):
        (call,) = nodes[event_id]["tool_calls"]
        assert call["tool"] == "security-scanner.docker_security_scan"
        assert call["outcome"] == "ok" and call["event_id"] == event_id
    assert set(nodes) == {e.id for e in system.events if e.correlationid == request.id}
