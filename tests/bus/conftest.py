"""The behavioural suite runs every case on both brokers: the in-memory one and a live
RabbitMQ node (FastStream-style), so the stub cannot drift from the real thing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from bus.inbox import Inbox
from bus.memory import MemoryBroker
from bus.middleware import IdempotencyMiddleware, RetriesMiddleware
from bus.rabbitmq import RabbitBroker
from bus.retry import RetryPolicy
from bus.runtime import Worker
from schemas.names import Names
from tests.conftest import AMQP_URL, require_service


async def delete_rabbit_topology(url: str, names: Names, queues: list[str]) -> None:
    """Remove everything a test declared so quorum queues do not pile up."""
    broker = RabbitBroker(url, names=names)
    await broker.connect()
    try:
        await broker.delete_topology(queues)
    finally:
        await broker.close()


@pytest.fixture(params=["memory", "rabbitmq"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Which broker implementation the case runs on."""
    return request.param


@pytest.fixture
async def make_broker(
    broker_kind: str, names: Names
) -> AsyncIterator[Callable[[], Awaitable[MemoryBroker | RabbitBroker]]]:
    """Factory of connected brokers of this case's kind (several = several processes)."""
    made: list[MemoryBroker | RabbitBroker] = []
    shared_memory = MemoryBroker(names)
    url = require_service("RabbitMQ", AMQP_URL) if broker_kind == "rabbitmq" else ""

    async def factory() -> MemoryBroker | RabbitBroker:
        if broker_kind == "memory":
            b: MemoryBroker | RabbitBroker = shared_memory
            if b not in made:
                await b.connect()
        else:
            b = RabbitBroker(url, names=names, delivery_limit=20)
            await b.connect()
        made.append(b)
        return b

    yield factory
    declared: list[str] = []
    for b in made:
        if isinstance(b, RabbitBroker):
            declared += list(b._queue_args)
        await b.close()
    if broker_kind == "rabbitmq":
        await delete_rabbit_topology(url, names, sorted(set(declared)))


@pytest.fixture
async def broker(make_broker: Callable[[], Awaitable[MemoryBroker | RabbitBroker]]):
    """One connected broker of this case's kind."""
    return await make_broker()


@pytest.fixture
def fast_policy() -> RetryPolicy:
    """Short backoff so retry tests finish in well under a second per attempt."""
    return RetryPolicy(max_attempts=3, base_delay=0.1, multiplier=2.0, max_delay=1.0, jitter=0.1)


@pytest.fixture
def middleware_for(redis_client: aioredis.Redis, names: Names, fast_policy: RetryPolicy):
    """Build the standard middleware stack (idempotency + retries) on the live Redis."""

    def build(lease: float = 5.0, client: aioredis.Redis | None = None) -> list:
        inbox = Inbox(client or redis_client, names, lease=lease, retention=600)
        return [RetriesMiddleware(fast_policy), IdempotencyMiddleware(inbox, max_backoff=0.2)]

    return build


async def eventually(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``cond()`` holds; fail with ``what`` otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Start ``worker`` for the block and stop it (draining) afterwards."""
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()
