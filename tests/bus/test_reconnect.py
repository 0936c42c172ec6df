"""Reconnect after the broker closes the connection: consumers come back, nothing is
lost, and the in-flight event is not applied twice."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest

from bus.memory import MemoryBroker
from bus.rabbitmq import RabbitBroker
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import new_event
from schemas.events import DeploymentRequested
from tests.bus.conftest import delete_rabbit_topology, eventually
from tests.conftest import AMQP_URL, require_service

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"

pytestmark = pytest.mark.timeout(90)


def close_rabbit_connections(connection_name: str) -> int:
    """Ask the node to close our connections (by name), as a broker restart would."""
    out = subprocess.run(
        [
            "bash",
            str(SERVICES),
            "rabbitmqctl",
            "-q",
            "list_connections",
            "pid",
            "client_properties",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    closed = 0
    for line in out.splitlines():
        if connection_name in line:
            pid = line.split("\t", 1)[0]
            subprocess.run(
                ["bash", str(SERVICES), "rabbitmqctl", "-q", "close_connection", pid, "test"],
                capture_output=True,
                check=True,
            )
            closed += 1
    return closed


@pytest.mark.parametrize("kind", ["memory", "rabbitmq"])
async def test_consumers_resume_after_connection_loss(kind, names, middleware_for):
    conn_name = f"codebus-test-{uuid.uuid4().hex[:8]}"
    if kind == "rabbitmq":
        url = require_service("RabbitMQ", AMQP_URL)
        broker = RabbitBroker(url, names=names, connection_name=conn_name, reconnect_interval=0.5)
    else:
        broker = MemoryBroker(names)
    await broker.connect()
    router = Router("t")
    runs: list[str] = []
    release = asyncio.Event()

    @router.subscribe("deployment.requested", name="resilient")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        if payload.version == "slow":
            await release.wait()
        runs.append(payload.version)

    w = Worker(broker, router.subscriptions, middleware=middleware_for(), concurrency=4)
    await w.start()
    try:
        await broker.publish(new_event("deployment.requested", {"app": "a", "version": "slow"}))
        await eventually(lambda: w.in_flight() == 1, what="slow event in flight")
        if kind == "rabbitmq":
            assert close_rabbit_connections(conn_name) >= 1
        else:
            broker.disconnect()
        release.set()  # the handler finishes; its ack dies with the old channel
        await eventually(lambda: runs == ["slow"], what="slow event handled")

        # After the reconnect the consumer is back: new events flow.
        async def publish_when_back() -> None:
            for _ in range(100):
                try:
                    await broker.publish(
                        new_event("deployment.requested", {"app": "a", "version": "after"})
                    )
                    return
                except Exception:
                    await asyncio.sleep(0.2)
            pytest.fail("could not publish after reconnect")

        await publish_when_back()
        await eventually(lambda: "after" in runs, 30, "event after reconnect handled")
        await asyncio.sleep(1.0)  # time for the redelivered 'slow' copy to be dropped
    finally:
        await w.stop()
        if isinstance(broker, RabbitBroker):
            queues = list(broker._queue_args)
            await broker.close()
            await delete_rabbit_topology(url, names, queues)
    assert sorted(runs) == ["after", "slow"], "an event was lost or applied twice"
