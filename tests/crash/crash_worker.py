"""A worker process for the crash test: it records each event in a ledger.

The ledger entry is written with ``ctx.on_commit`` - in the same Redis transaction
as the inbox done-mark - so if the inbox works, no event is ever counted twice however
often the process dies. ``runs`` counts handler executions (not transactional), to
show that kills really interrupted work and caused re-executions.

    python -m tests.crash.crash_worker AMQP_URL REDIS_URL PREFIX
"""

from __future__ import annotations

import asyncio
import random
import sys

import redis.asyncio as aioredis

from bus.inbox import Inbox
from bus.middleware import IdempotencyMiddleware, RetriesMiddleware
from bus.rabbitmq import RabbitBroker
from bus.retry import RetryPolicy
from bus.router import Router
from bus.runtime import Worker
from schemas.events import DeploymentRequested
from schemas.names import Names

router = Router("crash")


def ledger_key(names: Names) -> str:
    return f"{names.prefix}:crash:ledger"


def runs_key(names: Names) -> str:
    return f"{names.prefix}:crash:runs"


@router.subscribe("deployment.requested", name="crash.ledger")
async def record(payload: DeploymentRequested, ctx) -> None:
    names: Names = ctx.deps["names"]
    await ctx.deps["redis"].hincrby(runs_key(names), ctx.event.id, 1)
    await asyncio.sleep(random.uniform(0.001, 0.004))  # some work in flight to interrupt
    ctx.on_commit(lambda pipe: pipe.hincrby(ledger_key(names), ctx.event.id, 1))


async def main(amqp_url: str, redis_url: str, prefix: str) -> None:
    names = Names(prefix=prefix)
    redis = aioredis.Redis.from_url(redis_url)
    broker = RabbitBroker(amqp_url, names=names, connection_name=f"crash-{prefix}")
    await broker.connect()
    inbox = Inbox(redis, names, lease=2.0, retention=3600)
    middleware = [
        RetriesMiddleware(RetryPolicy(max_attempts=10, base_delay=0.1, max_delay=1.0)),
        IdempotencyMiddleware(inbox, max_backoff=0.5),
    ]
    worker = Worker(
        broker,
        router.subscriptions,
        middleware=middleware,
        concurrency=32,
        deps={"redis": redis, "names": names},
        grace_period=5,
    )
    print("ready", flush=True)
    await worker.run_until_signalled()
    await broker.close()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
