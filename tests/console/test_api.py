"""The console's HTTP API against the live RabbitMQ and Redis: authentication, scopes,
CSRF and Origin checks, security headers, redaction, and each view's operations."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from bus import deadletters
from flows.store import FlowStore
from gateway.console.security import CSP
from gateway.console.state import CONSOLE
from schemas.envelope import Event
from tests.console.conftest import (
    DEPLOYER_KEY,
    OPERATOR_TOKEN,
    READ_TOKEN,
    SECRET,
    VIEWER_KEY,
    Console,
    sign_in,
)
from tests.flows.helpers import new_state
from tools.guards.breaker import BreakerStore

pytestmark = pytest.mark.timeout(60)


async def _json(response: aiohttp.ClientResponse) -> Any:
    return json.loads(await response.text())


async def _letters(console: Console) -> list[str | None]:
    # Not Broker.depth: a quorum queue's count lags behind acks of basic.get deliveries.
    return [i.message_id for i in await deadletters.list_dead_letters(console.broker, 100)]


async def test_security_headers_on_page_and_api(console: Console, http: Any) -> None:
    for path in ("/", "/static/console.js", "/api/breakers"):
        async with http.get(path) as r:
            assert r.headers["Content-Security-Policy"] == CSP, path
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "unsafe-inline" not in CSP and "script-src 'self'" in CSP
    async with http.get("/") as r:
        page = await r.text()
    assert "<script src=" in page and "<script>" not in page and "style=" not in page


async def test_unauthenticated_and_unknown_credentials_are_refused(
    console: Console, http: Any
) -> None:
    for path in ("/api/dead-letters", "/api/breakers", "/api/rollouts", "/api/events/stream"):
        async with http.get(path) as r:
            assert r.status == 401, path
            assert (await _json(r))["field"] == "Authorization"
    async with http.get("/api/breakers", headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401
    async with http.get("/api/breakers", headers={"Authorization": f"Bearer {READ_TOKEN}"}) as r:
        assert r.status == 200
    async with http.get("/api/breakers", headers={"Authorization": f"Bearer {VIEWER_KEY}"}) as r:
        assert r.status == 200  # a gateway API key, checked against its hash


async def test_login_errors_name_the_field(console: Console, http: Any) -> None:
    origin = {"Origin": console.url}
    async with http.post("/api/login", json={}, headers=origin) as r:
        assert r.status == 400 and (await _json(r))["field"] == "key"
    async with http.post("/api/login", data=b"[1]", headers=origin) as r:
        assert r.status == 400 and (await _json(r))["field"] == "body"
    async with http.post("/api/login", json={"key": "wrong"}, headers=origin) as r:
        assert r.status == 401
    async with http.post("/api/login", json={"key": OPERATOR_TOKEN}) as r:
        assert r.status == 403 and (await _json(r))["field"] == "Origin"
    async with http.post("/api/login", json={"key": OPERATOR_TOKEN}, headers=origin) as r:
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert OPERATOR_TOKEN not in cookie and OPERATOR_TOKEN not in await r.text()
    async with http.get("/api/session") as r:
        body = await _json(r)
        assert body["name"] == "oncall" and body["scope"] == "operator" and body["csrf"]


async def test_state_changes_need_session_csrf_and_origin(console: Console, http: Any) -> None:
    letter = await console.add_dead_letter()
    path = f"/api/dead-letters/{letter}/replay"
    bearer = {"Authorization": f"Bearer {OPERATOR_TOKEN}", "Origin": console.url}
    async with http.post(path, headers=bearer) as r:
        assert r.status == 401  # a bearer header alone never changes state
    csrf = await sign_in(http, console, OPERATOR_TOKEN)
    async with http.post(path, headers={"Origin": console.url}) as r:
        assert r.status == 403 and (await _json(r))["field"] == "X-CSRF-Token"
    async with http.post(path, headers={"Origin": console.url, "X-CSRF-Token": "x" + csrf}) as r:
        assert r.status == 403 and (await _json(r))["error"] == "csrf_mismatch"
    async with http.post(
        path, headers={"Origin": "http://evil.example", "X-CSRF-Token": csrf}
    ) as r:
        assert r.status == 403 and (await _json(r))["error"] == "origin_mismatch"
    async with http.post(path, headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 403 and (await _json(r))["field"] == "Origin"
    # Nothing above replayed it.
    async with http.get("/api/dead-letters") as r:
        assert [i["id"] for i in (await _json(r))["items"]] == [letter]
    async with http.post(path, headers={"Origin": console.url, "X-CSRF-Token": csrf}) as r:
        assert r.status == 200, await r.text()


async def test_read_only_scope_cannot_operate(console: Console, http: Any) -> None:
    letter = await console.add_dead_letter()
    csrf = await sign_in(http, console, VIEWER_KEY)
    headers = {"Origin": console.url, "X-CSRF-Token": csrf}
    for path in (
        f"/api/dead-letters/{letter}/replay",
        "/api/dead-letters/purge",
        "/api/breakers/docker/reset",
        "/api/rollouts/d-1/promote",
    ):
        async with http.post(path, json={"confirm": "purge"}, headers=headers) as r:
            assert r.status == 403, path
            assert (await _json(r))["field"] == "scope"
    assert await _letters(console) == [letter]


async def test_dead_letters_list_show_replay_purge_with_redaction(
    console: Console, http: Any
) -> None:
    first = await console.add_dead_letter()
    second = await console.add_dead_letter()
    csrf = await sign_in(http, console, DEPLOYER_KEY)
    headers = {"Origin": console.url, "X-CSRF-Token": csrf}
    async with http.get("/api/dead-letters") as r:
        text = await r.text()
    items = json.loads(text)["items"]
    assert {i["id"] for i in items} == {first, second}
    assert items[0]["kind"] == "rejected" and items[0]["queue"] == console.origin_queue
    assert SECRET not in text
    async with http.get(f"/api/dead-letters/{first}") as r:
        text = await r.text()
    assert json.loads(text)["event"]["id"] == first and SECRET not in text
    async with http.get("/api/dead-letters/no%20such") as r:
        assert r.status == 400 and (await _json(r))["field"] == "id"
    async with http.get("/api/dead-letters?limit=0") as r:
        assert r.status == 400 and (await _json(r))["field"] == "limit"

    async with http.post(f"/api/dead-letters/{first}/replay", headers=headers) as r:
        assert (await _json(r))["replayed"] == [{"id": first, "queue": console.origin_queue}]
    delivery = await console.broker.get(console.origin_queue)
    assert delivery is not None and Event.from_json(delivery.message.body).id == first
    await delivery.ack()
    async with http.post(f"/api/dead-letters/{first}/replay", headers=headers) as r:
        assert r.status == 404 and (await _json(r))["field"] == "id"

    async with http.post("/api/dead-letters/purge", json={}, headers=headers) as r:
        assert r.status == 400 and (await _json(r))["field"] == "confirm"
    assert await _letters(console) == [second]
    async with http.post(
        "/api/dead-letters/purge", json={"confirm": "purge"}, headers=headers
    ) as r:
        assert (await _json(r))["purged"] == 1
    assert await _letters(console) == []


async def test_breakers_state_and_reset(console: Console, http: Any) -> None:
    store = BreakerStore(console.redis, console.names)
    admission = await store.acquire("docker", 5.0)
    await store.failure("docker", admission, threshold=1, reset_timeout=60.0)
    csrf = await sign_in(http, console, OPERATOR_TOKEN)
    async with http.get("/api/breakers") as r:
        rows = (await _json(r))["items"]
    assert [(b["server"], b["state"]) for b in rows] == [("docker", "open")]
    headers = {"Origin": console.url, "X-CSRF-Token": csrf}
    async with http.post("/api/breakers/bad name!/reset", headers=headers) as r:
        assert r.status == 400 and (await _json(r))["field"] == "server"
    async with http.post("/api/breakers/docker/reset", headers=headers) as r:
        assert (await _json(r))["had_state"] is True
    assert await store.status_all() == []


async def test_rollouts_show_and_publish_the_cli_command_events(
    console: Console, http: Any
) -> None:
    flow = new_state("canary", id="d-console-1", app="shop")
    assert await FlowStore(console.redis, console.names).create(flow)
    csrf = await sign_in(http, console, OPERATOR_TOKEN)
    headers = {"Origin": console.url, "X-CSRF-Token": csrf}
    async with http.get("/api/rollouts") as r:
        rows = (await _json(r))["items"]
    assert [(f["id"], f["phase"], f["strategy"]) for f in rows] == [
        ("d-console-1", "pending", "canary")
    ]
    async with http.get("/api/rollouts/d-console-1") as r:
        assert "journal" in await _json(r)
    async with http.post("/api/rollouts/d-console-1/promote", headers=headers) as r:
        assert r.status == 503 and (await _json(r))["error"] == "unroutable"  # nobody listens

    queue = console.names.subscription_queue("console.commands")
    await console.broker.declare_queue(queue, ["deployment.*"])
    async with http.post("/api/rollouts/d-console-1/abort", json={}, headers=headers) as r:
        assert r.status == 400 and (await _json(r))["field"] == "reason"
    async with http.post(
        "/api/rollouts/d-console-1/promote", json={"full": "yes"}, headers=headers
    ) as r:
        assert r.status == 400 and (await _json(r))["field"] == "full"
    async with http.post("/api/rollouts/d-console-1/rewind", headers=headers) as r:
        assert r.status == 400 and (await _json(r))["field"] == "command"
    async with http.post("/api/rollouts/d-nope/approve", headers=headers) as r:
        assert r.status == 404
    sent = []
    for command, body in (("promote", {"full": True}), ("approve", {}), ("abort", {"reason": "x"})):
        async with http.post(
            f"/api/rollouts/d-console-1/{command}", json=body, headers=headers
        ) as r:
            assert r.status == 200, await r.text()
            sent.append((await _json(r))["event_id"])
    got = []
    for _ in sent:
        d = await console.broker.get(queue)
        assert d is not None
        got.append(Event.from_json(d.message.body))
        await d.ack()
    assert [e.id for e in got] == sent
    assert [e.type for e in got] == [
        "deployment.promote_requested",
        "deployment.approval_granted",
        "deployment.abort_requested",
    ]
    assert all(e.data["flow_id"] == "d-console-1" for e in got)
    assert all(e.data["by"] == "console:oncall" for e in got)
    assert got[0].data["full"] is True and got[2].data["reason"] == "x"


async def test_correlation_tree_from_the_audit_trail(console: Console, http: Any) -> None:
    from schemas.envelope import new_event

    root = new_event("deployment.requested", {"app": "web", "version": "1"}, source="t")
    child = new_event(
        "deployment.started",
        {"app": "web", "version": "1", "environment": "staging", "token": SECRET},
        source="t",
        correlationid=root.correlationid,
        causationid=root.id,
    )
    other = new_event("deployment.requested", {"app": "x", "version": "2"}, source="t")
    for e in (root, child, other):
        await console.redis.xadd(
            console.names.event_log_stream,
            {
                "id": e.id,
                "type": e.type,
                "source": e.source,
                "time": e.time.isoformat(),
                "correlationid": e.correlationid or "",
                "causationid": e.causationid or "",
                "event": e.to_json(),
            },
        )
    record = {
        "tool": "docker.docker_build",
        "outcome": "ok",
        "duration_ms": 12.5,
        "event_id": child.id,
        "error": None,
    }
    await console.redis.xadd(console.names.audit_stream, {"record": json.dumps(record)})
    await sign_in(http, console, READ_TOKEN)
    async with http.get(f"/api/correlation/{root.correlationid}") as r:
        text = await r.text()
    body = json.loads(text)
    assert body["events"] == 2 and SECRET not in text
    (node,) = body["tree"]
    assert node["id"] == root.id and [c["id"] for c in node["children"]] == [child.id]
    assert node["children"][0]["tool_calls"][0]["tool"] == "docker.docker_build"


async def test_stream_filters_are_validated(console: Console, http: Any) -> None:
    await sign_in(http, console, READ_TOKEN)
    async with http.get("/api/events/stream?types=Deploy..x") as r:
        assert r.status == 400 and (await _json(r))["field"] == "types"
    async with http.get("/api/events/stream/check?types=deployment.*") as r:
        assert (await _json(r))["types"] == ["deployment.*"]


async def test_stream_delivers_redacted_events_filtered_by_correlation(
    console: Console, http: Any
) -> None:
    from schemas.envelope import new_event

    await sign_in(http, console, READ_TOKEN)
    wanted = new_event(
        "notification.requested",
        {"channel": "#a", "title": "t", "details": {"api_key": SECRET}},
        source="t",
    )
    other = new_event("notification.requested", {"channel": "#b", "title": "t"}, source="t")
    async with http.get(
        "/api/events/stream",
        params={"types": "notification.*", "correlationid": wanted.correlationid},
    ) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        assert (await r.content.readuntil(b"\n\n")).startswith(b"event: ready")
        await console.broker.publish(other)
        await console.broker.publish(wanted)
        frame = (await r.content.readuntil(b"\n\n")).decode()
    assert frame.startswith("event: bus")
    shown = json.loads(frame.split("data: ", 1)[1])
    assert shown["id"] == wanted.id and SECRET not in frame


async def test_event_streams_are_capped(console: Console, http: Any) -> None:
    state = console.app[CONSOLE]
    state.config = state.config.model_copy(update={"max_streams": 1})
    await sign_in(http, console, READ_TOKEN)
    async with http.get("/api/events/stream") as first:
        assert (await first.content.readuntil(b"\n\n")).startswith(b"event: ready")
        async with http.get("/api/events/stream") as second:
            assert second.status == 503
            assert (await _json(second))["error"] == "too_many_streams"


async def test_redis_down_is_a_503_naming_it(console: Console, http: Any) -> None:
    import redis.asyncio as aioredis

    state = console.app[CONSOLE]
    live, state.redis = state.redis, aioredis.Redis.from_url("redis://u:pw@127.0.0.1:1/0")
    try:
        await sign_in(http, console, READ_TOKEN)
        async with http.get("/api/breakers") as r:
            text = await r.text()
        assert r.status == 503 and "Redis is unavailable" in text and "pw" not in text
    finally:
        await state.redis.aclose()
        state.redis = live


async def test_repeated_failed_sign_ins_are_throttled(console: Console, http: Any) -> None:
    origin = {"Origin": console.url}
    limit = console.app[CONSOLE].throttle.limit
    for _ in range(limit):
        async with http.post("/api/login", json={"key": "guess"}, headers=origin) as r:
            assert r.status == 401
    # Even the right key is refused now: a guesser cannot tell a hit from the throttle.
    async with http.post("/api/login", json={"key": OPERATOR_TOKEN}, headers=origin) as r:
        assert r.status == 429 and (await _json(r))["field"] == "key"
