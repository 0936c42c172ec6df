"""Issue 8 defects C (bus side), D and E under a real memory alarm on a private node:
a publish whose confirm does not come is PublishOutcomeUnknown with a message that says
so (and it is indeed delivered once the alarm clears), a publish that never left is
plain BrokerUnavailable, and readiness names the blocked connection."""

from __future__ import annotations

import asyncio

import pytest

from bus.errors import BrokerUnavailable, PublishOutcomeUnknown
from bus.rabbitmq import RabbitBroker
from schemas.envelope import new_event
from tests.chaos.services import PrivateRabbit

pytestmark = pytest.mark.timeout(180)


async def test_publish_under_memory_alarm_is_outcome_unknown_then_delivered(
    private_rabbit: PrivateRabbit, names
):
    broker = RabbitBroker(private_rabbit.url, names=names, publish_timeout=2.0)
    await broker.connect()
    queue = names.subscription_queue("alarm")
    try:
        await broker.declare_queue(queue, ["deployment.requested"])
        await broker.ping()
        await asyncio.to_thread(private_rabbit.set_memory_alarm, True)
        event = new_event("deployment.requested", {"app": "a", "version": "1"})
        with pytest.raises(PublishOutcomeUnknown) as err:
            await broker.publish(event)
        assert err.value.event_id == event.id
        assert "no confirm within 2s" in str(err.value) and "may have taken it" in str(err.value)
        with pytest.raises(BrokerUnavailable, match="blocked this connection"):
            await broker.ping()
        await asyncio.to_thread(private_rabbit.set_memory_alarm, False)
        # The "failed" publish was only late: it arrives once the alarm clears.
        for _ in range(100):
            if await broker.depth(queue) == 1:
                break
            await asyncio.sleep(0.1)
        delivery = await broker.get(queue)
        assert delivery is not None and delivery.message.message_id == event.id
        await delivery.ack()
        await broker.ping()
    finally:
        await broker.close()


async def test_publish_on_a_closed_connection_is_not_sent(private_rabbit: PrivateRabbit, names):
    broker = RabbitBroker(private_rabbit.url, names=names, reconnect_interval=30)
    await broker.connect()
    try:
        await asyncio.to_thread(private_rabbit.stop_app)
        await asyncio.sleep(0.5)
        with pytest.raises(BrokerUnavailable) as err:
            await broker.publish(new_event("deployment.requested", {"app": "a", "version": "1"}))
        assert not isinstance(err.value, PublishOutcomeUnknown), err.value
        assert "not sent" in str(err.value)
    finally:
        await asyncio.to_thread(private_rabbit.start_app)
        await broker.close()
