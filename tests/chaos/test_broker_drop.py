"""Defect A of issue 8: events in flight when the broker connection drops must be
processed after the broker returns, by the same (live) worker process."""

from __future__ import annotations

import asyncio

import pytest

from bus.rabbitmq import RabbitBroker
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import new_event
from schemas.events import DeploymentRequested
from tests.bus.conftest import eventually
from tests.chaos.services import PrivateRabbit

pytestmark = pytest.mark.timeout(180)

IN_FLIGHT = 20


@pytest.mark.parametrize("fault", ["kill", "stop_app"])
async def test_in_flight_events_are_processed_after_a_broker_drop(
    fault, private_rabbit: PrivateRabbit, names, middleware_for
):
    broker = RabbitBroker(private_rabbit.url, names=names, reconnect_interval=0.5)
    await broker.connect()
    router = Router("drop")
    done: set[str] = set()
    broker_down = asyncio.Event()

    @router.subscribe("deployment.requested", name="drop")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        await broker_down.wait()  # still working when the connection dies
        done.add(payload.version)

    worker = Worker(broker, router.subscriptions, middleware=middleware_for(), concurrency=32)
    await worker.start()
    try:
        for i in range(IN_FLIGHT):
            await broker.publish(new_event("deployment.requested", {"app": "a", "version": str(i)}))
        await eventually(lambda: worker.in_flight() == IN_FLIGHT, 20, "all events in flight")
        if fault == "kill":
            await asyncio.to_thread(private_rabbit.kill)
            broker_down.set()
            await asyncio.to_thread(private_rabbit.start)
        else:
            await asyncio.to_thread(private_rabbit.stop_app)
            broker_down.set()
            await asyncio.to_thread(private_rabbit.start_app)
        await eventually(
            lambda: len(done) == IN_FLIGHT,
            30,
            f"every in-flight event processed after the broker returned ({len(done)})",
        )
    finally:
        await worker.stop()
        await broker.close()
