"""Dead-letter order: listing and replaying keep the queue's order (oldest first) on the
in-memory broker and on RabbitMQ quorum and classic queues. A quorum queue requeues a
nacked message at its tail, the others at its head (``bus.deadletters.requeues_at_tail``);
before the fix every ``codebus dlq list`` reversed a quorum dead-letter queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bus import deadletters
from bus.abc import Message
from bus.memory import MemoryBroker
from bus.rabbitmq import RabbitBroker
from schemas.names import HEADER_DEAD_KIND, HEADER_ORIGIN_QUEUE, Names
from tests.conftest import AMQP_URL, require_service

pytestmark = pytest.mark.timeout(60)

IDS = [f"m{i}" for i in range(6)]


@pytest.fixture(params=["memory", "quorum", "classic"])
async def dl_broker(
    request: pytest.FixtureRequest, names: Names
) -> AsyncIterator[MemoryBroker | RabbitBroker]:
    if request.param == "memory":
        broker: MemoryBroker | RabbitBroker = MemoryBroker(names)
    else:
        url = require_service("RabbitMQ", AMQP_URL)
        broker = RabbitBroker(url, names=names, queue_type=request.param)
    await broker.connect()
    await broker.declare_queue(names.subscription_queue("target"), ["order.never"])
    try:
        yield broker
    finally:
        if isinstance(broker, RabbitBroker):
            await broker.delete_topology([names.subscription_queue("target")])
        await broker.close()


async def _seed(broker: MemoryBroker | RabbitBroker, names: Names) -> None:
    for mid in IDS:
        await broker.dead_letter(
            Message(
                body=b"{}",
                routing_key="order.test",
                message_id=mid,
                headers={
                    HEADER_DEAD_KIND: "rejected",
                    HEADER_ORIGIN_QUEUE: names.subscription_queue("target"),
                },
            )
        )
    for _ in range(100):  # publishes to the dead-letter exchange are routed asynchronously
        if await broker.depth(names.dead_letter_queue) == len(IDS):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the dead letters did not arrive")


async def _ids(broker: MemoryBroker | RabbitBroker, limit: int = 100) -> list[str | None]:
    return [d.message_id for d in await deadletters.list_dead_letters(broker, limit)]


async def test_listing_keeps_the_queue_order(dl_broker, names):
    await _seed(dl_broker, names)
    orders = [await _ids(dl_broker) for _ in range(3)]
    assert orders == [IDS] * 3
    # A partial listing shows the oldest and does not move them behind the rest.
    assert await _ids(dl_broker, limit=2) == IDS[:2]
    assert await _ids(dl_broker) == IDS


async def test_replay_is_in_queue_order_and_keeps_the_rest_in_order(dl_broker, names):
    await _seed(dl_broker, names)
    chosen = {"m1", "m3", "m4"}
    replayed = await deadletters.replay(dl_broker, select=lambda d: d.message_id in chosen)
    assert [d.message_id for d in replayed] == ["m1", "m3", "m4"]
    assert await _ids(dl_broker) == ["m0", "m2", "m5"]
    arrived = []
    for _ in range(100):
        d = await dl_broker.get(names.subscription_queue("target"))
        if d is None:
            if len(arrived) == len(chosen):
                break
            await asyncio.sleep(0.05)
            continue
        arrived.append(d.message.message_id)
        await d.ack()
    assert arrived == ["m1", "m3", "m4"]
    # The limit counts from the oldest: only m0 is considered, and it stays first.
    assert await deadletters.replay(dl_broker, select=lambda d: False, limit=1) == []
    assert await _ids(dl_broker) == ["m0", "m2", "m5"]
