"""A worker process for the chaos suite: it records each event in a ledger.

The ledger entry is a ``ctx.on_commit`` effect (applied with the inbox done-mark), so
an event counted twice means the inbox failed. The handler also records:

- ``runs``: handler executions (not transactional: re-executions after faults);
- ``noclaim``: executions that found no claim of their own in the inbox (must stay 0:
  no handler runs without its idempotency claim).

Events with ``app`` set to ``wrongtype``, ``dataerror`` or ``raises`` register a
failing commit effect of that kind (issue 8, B); ``hang`` never finishes.

    python -m tests.chaos.chaos_worker AMQP_URL REDIS_URL PREFIX HTTP_PORT CONCURRENCY
"""

from __future__ import annotations

import asyncio
import random
import sys

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from bus.inbox import Inbox
from bus.middleware import IdempotencyMiddleware, RetriesMiddleware
from bus.rabbitmq import RabbitBroker
from bus.redis_conn import redis_client
from bus.retry import RetryPolicy
from bus.router import Router
from bus.runtime import Worker
from schemas.events import DeploymentRequested
from schemas.names import Names
from workers import http

SUBSCRIPTION = "chaos.ledger"
router = Router("chaos")


def key(names: Names, what: str) -> str:
    """Redis key of one of the worker's records (ledger, runs, noclaim, string)."""
    return f"{names.prefix}:chaos:{what}"


@router.subscribe("deployment.requested", name=SUBSCRIPTION)
async def record(payload: DeploymentRequested, ctx) -> None:
    names: Names = ctx.deps["names"]
    redis: aioredis.Redis = ctx.deps["redis"]
    event_id = ctx.event.id
    claim: bytes | None = await redis.get(names.inbox_key(SUBSCRIPTION, event_id))
    if claim is None or not claim.startswith(b"run:"):
        await redis.hincrby(key(names, "noclaim"), event_id, 1)
    await redis.hincrby(key(names, "runs"), event_id, 1)
    if payload.app == "hang":
        await asyncio.Event().wait()
    await asyncio.sleep(random.uniform(0.001, 0.004))  # some work in flight to interrupt
    ledger = key(names, "ledger")
    ctx.on_commit(lambda pipe: pipe.hincrby(ledger, event_id, 1))
    if payload.app == "wrongtype":
        ctx.on_commit(lambda pipe: pipe.hset(key(names, "string"), "f", "v"))
    elif payload.app == "dataerror":
        ctx.on_commit(lambda pipe: pipe.hset(ledger, "x", None))
    elif payload.app == "raises":
        ctx.on_commit(lambda pipe: pipe.hset(ledger, "x", str(1 / 0)))


async def main(amqp_url: str, redis_url: str, prefix: str, port: str, concurrency: str) -> None:
    names = Names(prefix=prefix)
    # Short socket timeouts: a hung (SIGSTOPped) Redis fails commands, and the inbox
    # holds its deliveries, instead of waiting for ever.
    redis = redis_client(redis_url, socket_timeout=2, socket_connect_timeout=2)
    broker = RabbitBroker(
        amqp_url, names=names, connection_name=f"chaos-{prefix}", reconnect_interval=0.5
    )
    await broker.connect()
    inbox = Inbox(redis, names, lease=2.0, retention=3600)
    middleware = [
        RetriesMiddleware(RetryPolicy(max_attempts=3, base_delay=0.2, max_delay=1.0)),
        IdempotencyMiddleware(inbox, max_backoff=0.5),
    ]
    worker = Worker(
        broker,
        router.subscriptions,
        middleware=middleware,
        concurrency=int(concurrency),
        deps={"redis": redis, "names": names},
        grace_period=5,
        stall_after=3.0,
    )
    checks: dict[str, http.Check] = {
        "broker": broker.ping,
        "redis": redis.ping,
        "worker": worker.check,
    }
    app = http.health_app(CollectorRegistry(), checks)
    runner = await http.serve(app, "127.0.0.1", int(port))
    print("ready", flush=True)
    try:
        await worker.run_until_signalled()
    finally:
        await runner.cleanup()
        await broker.close()
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
