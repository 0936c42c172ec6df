"""One consumer process of bench/scaleout_bench.py: the codebus worker (no-op handler,
retries and idempotency on, as workers.app builds it) or a raw aio-pika consumer
(manual ack), on one queue at a given prefetch.

    python -m bench.scaleout_worker codebus|raw AMQP_URL REDIS_URL PREFIX QUEUE PREFETCH

Prints ``ready`` once connected; starts consuming when a line arrives on stdin; on
SIGTERM prints ``COUNT FIRST LAST`` (messages settled, ``time.time()`` of the first and
last settlement) and exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

import aio_pika

from bus.inbox import Inbox
from bus.middleware import IdempotencyMiddleware, Middleware, Processing, RetriesMiddleware
from bus.outcome import Outcome
from bus.rabbitmq import RabbitBroker
from bus.redis_conn import redis_client
from bus.router import Router
from bus.runtime import Worker
from schemas.events import DeploymentRequested
from schemas.names import Names


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = 0.0

    def settled(self) -> None:
        now = time.time()
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now


class Counting(Middleware):
    """Outermost: its after-hook runs once the inbox marked the event done, before ack."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    async def after_process(self, p: Processing, outcome: Outcome) -> Outcome:
        self.counter.settled()
        return outcome


Start = Callable[[], Awaitable[None]]


async def codebus(amqp: str, redis_url: str, prefix: str, prefetch: int, c: Counter) -> Start:
    names = Names(prefix=prefix)
    redis = redis_client(redis_url)
    await redis.ping()
    broker = RabbitBroker(amqp, names=names, connection_name="scaleout-codebus")
    await broker.connect()
    router = Router("bench")

    @router.subscribe("deployment.requested", name="bench")
    async def noop(payload: DeploymentRequested, ctx: object) -> None:
        return None

    middleware = [
        Counting(c),
        RetriesMiddleware(),
        IdempotencyMiddleware(Inbox(redis, names, lease=30, retention=600)),
    ]
    worker = Worker(broker, router.subscriptions, middleware=middleware, concurrency=prefetch)
    return worker.start


async def raw(amqp: str, queue: str, args: dict[str, object], prefetch: int, c: Counter) -> Start:
    conn = await aio_pika.connect_robust(amqp)
    ch = await conn.channel()
    await ch.set_qos(prefetch_count=prefetch)
    q = await ch.declare_queue(queue, durable=True, arguments=args)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        c.settled()

    async def start() -> None:
        await q.consume(on_message)

    return start


async def main(kind: str, amqp: str, redis_url: str, prefix: str, queue: str, pf: str) -> None:
    counter, prefetch = Counter(), int(pf)
    if kind == "codebus":
        start = await codebus(amqp, redis_url, prefix, prefetch, counter)
    else:
        args = RabbitBroker(amqp, names=Names(prefix=prefix)).subscription_queue_args()
        start = await raw(amqp, queue, args, prefetch, counter)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    await start()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print(f"{counter.count} {counter.first!r} {counter.last!r}", flush=True)
    os._exit(0)  # a benchmark process: no orderly teardown of the connections needed


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
