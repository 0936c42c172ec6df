"""The ``webhooks`` unit: per-subscription delivery, retries that skip successes, and
the end-to-end path inbound webhook -> gateway -> bus -> worker -> signed delivery."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bus.context import HandlerContext
from bus.errors import Reject, Retry
from bus.memory import MemoryBroker
from bus.middleware import RetriesMiddleware
from bus.rabbitmq import RabbitBroker
from bus.retry import RetryPolicy
from bus.runtime import Worker
from gateway.app import create_app
from handlers.webhooks import deliver, router, webhook_deps
from schemas.envelope import Event, new_event
from schemas.gateway_config import GatewayConfig
from schemas.names import Names
from schemas.webhooks import WebhookVerificationError, sign_headers, verify
from tests.bus.conftest import delete_rabbit_topology
from tests.conftest import AMQP_URL, require_service
from tools.webhooks.log import DeliveryLog

OUT_SECRET = "whsec_" + base64.b64encode(b"outbound-secret-0123456789").decode()
IN_SECRET = "whsec_" + base64.b64encode(b"inbound-secret-01234567890").decode()


class Receiver:
    """A local receiver that verifies Standard Webhooks signatures like a consumer would,
    answering ``statuses`` in turn (then 200)."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.verified: list[Event] = []
        self.refused = 0
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.read()
        try:
            verify(
                OUT_SECRET,
                request.headers.get("webhook-id"),
                request.headers.get("webhook-timestamp"),
                body,
                request.headers.get("webhook-signature"),
                now=time.time(),
            )
        except WebhookVerificationError:
            self.refused += 1
            return web.Response(status=401)
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            event = Event.from_json(body)
            assert event.id == request.headers["webhook-id"]
            self.verified.append(event)
        return web.Response(status=status, headers=self.headers if status != 200 else None)


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[TestServer] = []

    async def start(receiver: Receiver) -> str:
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}/hook"

    yield start
    for s in servers:
        await s.close()


def outbound_config(*subs: tuple[str, str, list[str]], **extra: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "subscriptions": [
                {"name": n, "url": u, "patterns": p, "secret": OUT_SECRET} for n, u, p in subs
            ],
            "ssrf_allowed_cidrs": ["127.0.0.1/32"],
            **extra,
        }
    )


def context(event: Event, deps: dict[str, Any], attempt: int, broker: Any) -> HandlerContext:
    return HandlerContext(
        event=event,
        subscription="webhooks.deliver",
        attempt=attempt,
        broker=broker,
        deps=deps,
        logger=logging.getLogger("test"),
        source="test",
    )


def deployment_completed() -> Event:
    return new_event("deployment.completed", {"app": "shop", "version": "1.0"}, source="test")


async def test_retry_skips_subscriptions_that_already_succeeded(serve, redis_client, names) -> None:
    ok, flaky, other = Receiver(), Receiver(503), Receiver()
    config = outbound_config(
        ("ok", await serve(ok), ["deployment.#"]),
        ("flaky", await serve(flaky), ["#"]),
        ("other", await serve(other), ["security.*"]),
    )
    deps = webhook_deps(config, redis_client, names)
    event = deployment_completed()
    broker = MemoryBroker(names)

    with pytest.raises(Retry) as info:
        await deliver(event, context(event, deps, 1, broker))
    assert "flaky" in info.value.reason and "ok" not in info.value.reason.split(":")[0]
    await deliver(event, context(event, deps, 2, broker))

    assert [e.id for e in ok.verified] == [event.id] and ok.calls == 1
    assert [e.id for e in flaky.verified] == [event.id] and flaky.calls == 2
    assert other.calls == 0
    log: DeliveryLog = deps["delivery_log"]
    flaky_record = await log.get(event.id, "flaky")
    assert flaky_record is not None
    assert (flaky_record.state, flaky_record.attempts) == ("succeeded", 2)
    assert (await log.get(event.id, "ok")).attempts == 1


async def test_permanent_failure_rejects_and_is_not_hammered(serve, redis_client, names) -> None:
    gone, flaky = Receiver(404, 404), Receiver(503)
    config = outbound_config(
        ("gone", await serve(gone), ["#"]), ("flaky", await serve(flaky), ["#"])
    )
    deps = webhook_deps(config, redis_client, names)
    event = deployment_completed()
    broker = MemoryBroker(names)
    with pytest.raises(Retry):  # a transient failure wins: the event comes back
        await deliver(event, context(event, deps, 1, broker))
    with pytest.raises(Reject, match="gone"):  # then the permanent one dead-letters it
        await deliver(event, context(event, deps, 2, broker))
    assert gone.calls == 1  # not retried within the run
    assert flaky.calls == 2
    record = await deps["delivery_log"].get(event.id, "gone")
    assert (record.state, record.status_code) == ("failed", 404)


async def test_internal_url_without_allowlist_is_rejected(redis_client, names) -> None:
    config = outbound_config(("meta", "http://169.254.169.254/latest", ["#"]))
    deps = webhook_deps(config, redis_client, names)
    event = deployment_completed()
    with pytest.raises(Reject, match="metadata"):
        await deliver(event, context(event, deps, 1, MemoryBroker(names)))


async def test_429_retry_after_becomes_the_retry_delay(serve, redis_client, names) -> None:
    receiver = Receiver()
    app = web.Application()

    async def limited(request: web.Request) -> web.Response:
        receiver.calls += 1
        return web.Response(status=429, headers={"Retry-After": "3"})

    app.router.add_post("/hook", limited)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        config = outbound_config(("rl", f"http://127.0.0.1:{server.port}/hook", ["#"]))
        deps = webhook_deps(config, redis_client, names)
        event = deployment_completed()
        with pytest.raises(Retry) as info:
            await deliver(event, context(event, deps, 1, MemoryBroker(names)))
        assert info.value.delay == 3.0
    finally:
        await server.close()


def test_router_declares_the_unit() -> None:
    [sub] = router.subscriptions
    assert (sub.name, sub.patterns, sub.unit) == ("webhooks.deliver", ("#",), "webhooks")


# --- end to end -----------------------------------------------------------------------


@pytest.fixture(params=["memory", "rabbitmq"])
async def e2e_broker(request, names: Names) -> AsyncIterator[Any]:
    """A connected broker of each kind; RabbitMQ topology is deleted afterwards."""
    if request.param == "memory":
        broker: Any = MemoryBroker(names)
        await broker.connect()
        yield broker
        await broker.close()
        return
    url = require_service("RabbitMQ", AMQP_URL)
    broker = RabbitBroker(url, names=names, delivery_limit=20)
    await broker.connect()
    yield broker
    await broker.close()
    await delete_rabbit_topology(url, names, [names.subscription_queue("webhooks.deliver")])


async def test_inbound_webhook_reaches_the_outbound_receiver(
    e2e_broker, serve, redis_client, names
) -> None:
    """Signed inbound webhook -> gateway -> bus -> webhooks worker -> signed outbound
    delivery to a local receiver (allowed via 127.0.0.1/32) that verifies it; the first
    attempt gets a 503, so the delivery also goes through the runtime's delay queue."""
    receiver = Receiver(503)
    url = await serve(receiver)
    config = GatewayConfig.model_validate(
        {
            "sources": [{"name": "ci", "kind": "standard", "secret": IN_SECRET}],
            "subscriptions": [
                {"name": "rx", "url": url, "patterns": ["deployment.*"], "secret": OUT_SECRET}
            ],
            "ssrf_allowed_cidrs": [str(ipaddress.ip_network("127.0.0.1/32"))],
        }
    )
    worker = Worker(
        e2e_broker,
        router.subscriptions,
        middleware=[RetriesMiddleware(RetryPolicy(max_attempts=3, base_delay=0.1, jitter=0))],
        deps=webhook_deps(config, redis_client, names),
        concurrency=4,
        grace_period=5,
    )
    await worker.start()  # declares and binds the webhooks.deliver queue
    client = TestClient(TestServer(create_app(config, e2e_broker, redis_client, names=names)))
    await client.start_server()
    try:
        body = json.dumps(
            {"type": "deployment.requested", "data": {"app": "shop", "version": "9.9.9"}}
        ).encode()
        headers = {
            **sign_headers(IN_SECRET, "msg_e2e_1", int(time.time()), body),
            "Content-Type": "application/json",
        }
        resp = await client.post("/webhooks/ci", data=body, headers=headers)
        assert resp.status == 202, await resp.text()
        event_id = (await resp.json())["id"]

        async with asyncio.timeout(20):
            while not receiver.verified:
                await asyncio.sleep(0.05)
        [delivered] = receiver.verified
        assert delivered.id == event_id
        assert delivered.data["version"] == "9.9.9"
        assert receiver.calls == 2 and receiver.refused == 0
        record = await DeliveryLog(redis_client, names).get(event_id, "rx")
        assert record is not None and (record.state, record.attempts) == ("succeeded", 2)
    finally:
        await client.close()
        await worker.stop()


async def test_dependencies_can_come_from_the_worker_defaults(serve, redis_client, names) -> None:
    ok = Receiver()
    config = outbound_config(("ok", await serve(ok), ["#"]))
    event = deployment_completed()
    deps = {"webhook_config": config, "redis": redis_client, "names": names}
    await deliver(event, context(event, deps, 1, MemoryBroker(names)))
    assert ok.verified and await DeliveryLog(redis_client, names).has_succeeded(event.id, "ok")
    with pytest.raises(RuntimeError, match="webhook_config"):
        await deliver(event, context(event, {"redis": redis_client}, 1, MemoryBroker(names)))


async def test_retry_delay_honours_retry_after_only_when_all_give_one(
    serve, redis_client, names
) -> None:
    slow = Receiver(429, 429, headers={"Retry-After": "4"})
    slower = Receiver(429, headers={"Retry-After": "9"})
    config = outbound_config(("a", await serve(slow), ["#"]), ("b", await serve(slower), ["#"]))
    deps = webhook_deps(config, redis_client, names)
    event = deployment_completed()
    with pytest.raises(Retry) as info:
        await deliver(event, context(event, deps, 1, MemoryBroker(names)))
    assert info.value.delay == 9.0  # the later of the two hints
    broken = Receiver(503)
    config = outbound_config(("a", await serve(slow), ["#"]), ("c", await serve(broken), ["#"]))
    deps = webhook_deps(config, redis_client, names)
    with pytest.raises(Retry) as info:
        await deliver(event, context(event, deps, 2, MemoryBroker(names)))
    assert info.value.delay is None  # no hint from 'c': the runtime's backoff decides
