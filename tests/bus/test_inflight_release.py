"""Defect A of issue 8: a delivery given up in the middle (its channel closed, its task
cancelled) releases its inbox claim, so the redelivery runs instead of being deferred
for as long as the worker lives."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bus.inbox import Busy, Claimed, Inbox
from bus.memory import MemoryBroker
from bus.rabbitmq import RabbitBroker
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import new_event
from schemas.events import DeploymentRequested
from tests.bus.conftest import delete_rabbit_topology, eventually
from tests.bus.test_reconnect import close_rabbit_connections
from tests.conftest import AMQP_URL, require_service

pytestmark = pytest.mark.timeout(90)

EVENTS = 8


@pytest.mark.parametrize("kind", ["memory", "rabbitmq"])
async def test_events_cancelled_by_a_connection_drop_are_processed_by_the_same_worker(
    kind, names, middleware_for, redis_client
):
    conn_name = f"codebus-test-{uuid.uuid4().hex[:8]}"
    if kind == "rabbitmq":
        url = require_service("RabbitMQ", AMQP_URL)
        broker: MemoryBroker | RabbitBroker = RabbitBroker(
            url, names=names, connection_name=conn_name, reconnect_interval=0.5
        )
    else:
        broker = MemoryBroker(names)
    await broker.connect()
    router = Router("t")
    started: list[str] = []
    finished: set[str] = set()
    hang = asyncio.Event()  # never set: first deliveries hang until cancelled

    @router.subscribe("deployment.requested", name="inflight")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        started.append(payload.version)
        if started.count(payload.version) == 1:
            await hang.wait()
        finished.add(payload.version)

    # A long lease: without a release the redeliveries would wait for it to expire.
    w = Worker(broker, router.subscriptions, middleware=middleware_for(lease=60.0), concurrency=16)
    await w.start()
    events = [
        new_event("deployment.requested", {"app": "a", "version": str(i)}) for i in range(EVENTS)
    ]
    try:
        for e in events:
            await broker.publish(e)
        await eventually(lambda: len(started) == EVENTS, what="every handler running")
        if isinstance(broker, RabbitBroker):
            assert close_rabbit_connections(conn_name) >= 1
        else:
            broker.disconnect()
        await eventually(lambda: len(finished) == EVENTS, 30, "redeliveries processed")
    finally:
        await w.stop()
        if isinstance(broker, RabbitBroker):
            queues = list(broker._queue_args)
            await broker.close()
            await delete_rabbit_topology(url, names, queues)
    for e in events:
        assert await redis_client.get(names.inbox_key("inflight", e.id)) == b"done"


async def test_a_claim_whose_delivery_ended_is_released_not_extended(redis_client, names):
    inbox = Inbox(redis_client, names, lease=0.6, retention=60)
    try:

        async def delivery_that_dies() -> Claimed:
            result = await inbox.claim("sub", "e1")
            assert isinstance(result, Claimed)
            return result  # ends without completing or releasing its claim

        await asyncio.create_task(delivery_that_dies())
        assert isinstance(await inbox.claim("sub", "e1"), Busy)
        key = names.inbox_key("sub", "e1")
        # Released by the lease keeper within one round, not extended again.
        for _ in range(100):
            if await redis_client.get(key) is None:
                break
            await asyncio.sleep(0.05)
        assert await redis_client.get(key) is None
        assert isinstance(await inbox.claim("sub", "e1"), Claimed)
    finally:
        await inbox.aclose()


async def test_a_claim_cancelled_while_redis_answers_is_given_back(redis_client, names):
    inbox = Inbox(redis_client, names, lease=60, retention=60)
    try:
        claiming = asyncio.create_task(inbox.claim("sub", "e2"))
        await asyncio.sleep(0)  # the claim is queued; the batch goes out regardless
        claiming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await claiming
        key = names.inbox_key("sub", "e2")
        for _ in range(100):
            if await redis_client.get(key) is None:
                break
            await asyncio.sleep(0.02)
        assert await redis_client.get(key) is None
        assert isinstance(await inbox.claim("sub", "e2"), Claimed)
    finally:
        await inbox.aclose()
