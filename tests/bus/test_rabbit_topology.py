"""What the RabbitMQ broker declares, read back from the node itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bus import deadletters
from bus.codec import encode
from bus.rabbitmq import DEAD_LETTER_DELIVERY_LIMIT, RabbitBroker
from schemas.envelope import new_event
from schemas.names import HEADER_DEAD_KIND
from tests.bus.conftest import delete_rabbit_topology
from tests.conftest import AMQP_URL, require_service

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"

pytestmark = pytest.mark.timeout(60)


def queue_arguments(name: str) -> str:
    """The arguments column of ``rabbitmqctl list_queues`` for queue ``name``."""
    out = subprocess.run(
        ["bash", str(SERVICES), "rabbitmqctl", "-q", "list_queues", "name", "arguments"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        queue, _, arguments = line.partition("\t")
        if queue == name:
            return arguments
    raise AssertionError(f"queue {name} is not on the node")


async def test_dead_letter_queue_carries_an_unreachable_delivery_limit(names):
    """RabbitMQ 4.x would otherwise give it the quorum default of 20 and drop dead letters
    after 20 listings (each listing requeues them); 3.10 here has no default, so the
    declared argument is what can be checked, and that listing loses nothing."""
    broker = RabbitBroker(require_service("RabbitMQ", AMQP_URL), names=names)
    await broker.connect()
    try:
        args = queue_arguments(names.dead_letter_queue)
        assert f'{{"x-delivery-limit",{DEAD_LETTER_DELIVERY_LIMIT}}}' in args, args
        assert '{"x-queue-type","quorum"}' in args, args
        event = new_event("deployment.requested", {"app": "web", "version": "1"})
        await broker.dead_letter(encode(event).with_headers(**{HEADER_DEAD_KIND: "test"}))
        for _ in range(25):
            listed = await deadletters.list_dead_letters(broker)
            assert [d.message_id for d in listed] == [event.id]
    finally:
        await broker.close()
        await delete_rabbit_topology(AMQP_URL, names, [])
