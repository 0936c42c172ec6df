"""Defect G of issue 8: retries scheduled before a broker restart come back on time
after it (they sat in the delay queues about three minutes past their TTL)."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest

from bus.codec import encode
from bus.rabbitmq import RabbitBroker
from schemas.envelope import new_event
from tests import reports
from tests.chaos.services import PrivateRabbit

pytestmark = pytest.mark.timeout(240)

DELAYS = (1.0, 3.0, 6.0, 12.0, 20.0)
LATE_AFTER = 15.0  # seconds past max(due time, broker back) that count as late


WARM_UP = 6.0


@pytest.mark.parametrize("fault", ["kill", "stop_app"])
async def test_retries_scheduled_before_a_restart_come_back_on_time(
    fault, private_rabbit: PrivateRabbit, names
):
    node = private_rabbit
    broker = RabbitBroker(node.url, names=names, reconnect_interval=0.5)
    await broker.connect()
    queue = names.subscription_queue("retried")
    await broker.declare_queue(queue, ["deployment.requested"])
    # A queue in service: one message through it, and time for the node to persist
    # its state (a quorum queue declared just before a crash can come back without a
    # leader on RabbitMQ 3.10: see docs/reliability.md).
    await broker.publish(new_event("deployment.requested", {"app": "a", "version": "w"}))
    warm = None
    while warm is None:
        warm = await broker.get(queue)
    await warm.ack()
    await asyncio.sleep(WARM_UP)
    due: dict[str, float] = {}
    for delay in DELAYS:
        event = new_event("deployment.requested", {"app": "a", "version": str(delay)})
        await broker.send(queue, encode(event), delay=delay)
        due[event.id] = time.monotonic() + delay
    if fault == "kill":
        await asyncio.to_thread(node.kill)
        await asyncio.to_thread(node.start)
    else:
        await asyncio.to_thread(node.stop_app)
        await asyncio.to_thread(node.start_app)
    back = time.monotonic()
    late: dict[str, float] = {}
    arrived: dict[str, float] = {}
    deadline = back + max(DELAYS) + 2 * LATE_AFTER
    try:
        while len(arrived) < len(due) and time.monotonic() < deadline:
            try:
                delivery = await broker.get(queue)
            except Exception:  # still reconnecting
                delivery = None
            if delivery is None:
                await asyncio.sleep(0.2)
                continue
            mid = delivery.message.message_id
            arrived[mid] = time.monotonic()
            await delivery.ack()
            expected = max(due[mid], back)
            if arrived[mid] - expected > LATE_AFTER:
                late[mid] = arrived[mid] - expected
    finally:
        await broker.close()
    lateness = [arrived[m] - max(due[m], back) for m in arrived]
    figures = (
        f"fault={fault} retries={len(due)} back_on_time={len(arrived) - len(late)} "
        f"missing_after_{deadline - back:.0f}s={len(due) - len(arrived)} "
        f"max_lateness={max(lateness, default=0):.1f}s"
    )
    reports.report(f"retry after restart {fault}", figures)
    assert len(arrived) == len(due) and not late, figures


async def test_retries_do_not_depend_on_a_declared_exchange(private_rabbit: PrivateRabbit, names):
    """The root cause of G: after a kill -9, RabbitMQ 3.10 came back without the retry
    exchange declared seconds before (the quorum delay queues survived) and parked the
    expired copies for 3 minutes. Losing that exchange must not delay a retry."""
    broker = RabbitBroker(private_rabbit.url, names=names)
    await broker.connect()
    queue = names.subscription_queue("retried")
    await broker.declare_queue(queue, ["deployment.requested"])
    due: dict[str, float] = {}
    for delay in (1.0, 2.0, 3.0):
        event = new_event("deployment.requested", {"app": "a", "version": str(delay)})
        await broker.send(queue, encode(event), delay=delay)
        due[event.id] = time.monotonic() + delay
    conn = await aio_pika.connect(private_rabbit.url)
    try:
        channel = await conn.channel()
        await channel.exchange_delete(names.retry_exchange)  # as the crash did
    finally:
        await conn.close()
    arrived: dict[str, float] = {}
    deadline = time.monotonic() + 3.0 + LATE_AFTER
    try:
        while len(arrived) < len(due) and time.monotonic() < deadline:
            delivery = await broker.get(queue)
            if delivery is None:
                await asyncio.sleep(0.1)
                continue
            arrived[delivery.message.message_id] = time.monotonic()
            await delivery.ack()
    finally:
        await broker.close()
    late = [arrived[m] - due[m] for m in arrived]
    assert len(arrived) == len(due), f"{len(due) - len(arrived)} retries parked"
    assert max(late) < LATE_AFTER, late
