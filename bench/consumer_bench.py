"""Benchmark: the codebus worker (no-op handler, idempotency on) against a raw aio-pika
consumer (manual ack, same prefetch, same queue arguments) on the same RabbitMQ, runs
alternated in one invocation.

    python bench/consumer_bench.py [--messages 20000] [--rounds 3] [--prefetch 64]

Prints msgs/s of each, their ratio, and p50/p99 end-to-end latency (publish -> acked)
at a fixed publish rate (default 1,000 msg/s). Needs RabbitMQ and Redis
(``scripts/services.sh start``); URLs from CODEBUS_TEST_AMQP_URL / CODEBUS_TEST_REDIS_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
import redis.asyncio as aioredis

from bus.inbox import Inbox
from bus.middleware import IdempotencyMiddleware, Middleware, Processing, RetriesMiddleware
from bus.outcome import Outcome
from bus.rabbitmq import RabbitBroker
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import new_event
from schemas.events import DeploymentRequested
from schemas.names import Names

AMQP_URL = os.environ.get("CODEBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5682/")
REDIS_URL = os.environ.get("CODEBUS_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")
SENT_AT = "x-bench-sent"


class Recorder:
    """Counts settled messages and end-to-end latencies."""

    def __init__(self) -> None:
        self.count = 0
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self.target = 0

    def settled(self, sent_at: float | None) -> None:
        self.count += 1
        if sent_at is not None:
            self.latencies.append(time.time() - sent_at)
        if self.count >= self.target:
            self.done.set()


class LatencyMiddleware(Middleware):
    """Outermost middleware: its after-hook runs once the inbox has marked the event
    done, right before the ack - the same point the raw consumer measures after ack."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def after_process(self, p: Processing, outcome: Outcome) -> Outcome:
        sent = p.delivery.message.headers.get(SENT_AT)
        self.recorder.settled(float(sent) if sent is not None else None)
        return outcome


class Setup:
    """One fresh topology (unique prefix) per run, torn down afterwards."""

    def __init__(self) -> None:
        self.names = Names(prefix=f"bench{uuid.uuid4().hex[:8]}")
        self.queue = self.names.subscription_queue("bench")
        self.broker = RabbitBroker(AMQP_URL, names=self.names)

    async def __aenter__(self) -> Setup:
        await self.broker.connect()
        await self.broker.declare_queue(self.queue, ["deployment.requested"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.delete_topology([self.queue])
        await self.broker.close()


async def publish(setup: Setup, n: int, rate: float | None) -> None:
    """Publish ``n`` events (confirmed); paced at ``rate`` msg/s when given."""
    start = time.monotonic()
    batch: list[Awaitable[None]] = []
    for i in range(n):
        ev = new_event("deployment.requested", {"app": "bench", "version": str(i)})
        batch.append(setup.broker.publish(ev, headers={SENT_AT: repr(time.time())}))
        if rate is None and len(batch) >= 500:
            await asyncio.gather(*batch)
            batch = []
        elif rate is not None:
            await asyncio.gather(*batch)
            batch = []
            delay = start + (i + 1) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    await asyncio.gather(*batch)


async def run_codebus(
    setup: Setup, recorder: Recorder, prefetch: int
) -> Callable[[], Awaitable[None]]:
    redis = aioredis.Redis.from_url(REDIS_URL)
    router = Router("bench")

    @router.subscribe("deployment.requested", name="bench")
    async def noop(payload: DeploymentRequested, ctx: object) -> None:
        return None

    middleware = [
        LatencyMiddleware(recorder),
        IdempotencyMiddleware(Inbox(redis, setup.names, lease=30, retention=600)),
        RetriesMiddleware(),
    ]
    worker = Worker(setup.broker, router.subscriptions, middleware=middleware, concurrency=prefetch)
    await worker.start()

    async def stop() -> None:
        await worker.stop()
        keys = [k async for k in redis.scan_iter(match=f"{setup.names.prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i : i + 1000])
        await redis.aclose()

    return stop


async def run_raw(setup: Setup, recorder: Recorder, prefetch: int) -> Callable[[], Awaitable[None]]:
    conn = await aio_pika.connect_robust(AMQP_URL)
    ch = await conn.channel()
    await ch.set_qos(prefetch_count=prefetch)
    q = await ch.declare_queue(
        setup.queue, durable=True, arguments=setup.broker.subscription_queue_args()
    )

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        sent = (message.headers or {}).get(SENT_AT)
        recorder.settled(float(sent) if sent is not None else None)

    tag = await q.consume(on_message)

    async def stop() -> None:
        await q.cancel(tag)
        await conn.close()

    return stop


RUNNERS = {"raw aio-pika": run_raw, "codebus": run_codebus}


def rss_mib() -> float:
    """Resident set size of this process, MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def throughput(kind: str, n: int, prefetch: int) -> tuple[float, float, float]:
    """Pre-fill the queue with ``n`` events, then time draining it. Returns msg/s, process
    CPU seconds per 1,000 messages, and RSS growth (MiB) while consuming."""
    async with Setup() as setup:
        await publish(setup, n, rate=None)
        recorder = Recorder()
        recorder.target = n
        rss0 = rss_mib()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        stop = await RUNNERS[kind](setup, recorder, prefetch)
        await asyncio.wait_for(recorder.done.wait(), 600)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        growth = rss_mib() - rss0
        await stop()
    return n / elapsed, cpu / n * 1000, growth


async def latency(kind: str, n: int, rate: float, prefetch: int) -> tuple[float, float]:
    """p50 and p99 publish -> acked latency, in ms, at a fixed publish rate."""
    async with Setup() as setup:
        recorder = Recorder()
        recorder.target = n
        stop = await RUNNERS[kind](setup, recorder, prefetch)
        await publish(setup, n, rate=rate)
        await asyncio.wait_for(recorder.done.wait(), 600)
        await stop()
    lat = sorted(recorder.latencies)
    return (
        statistics.median(lat) * 1000,
        lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prefetch", type=int, default=64)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--latency-messages", type=int, default=5_000)
    args = ap.parse_args()

    tput: dict[str, list[float]] = {k: [] for k in RUNNERS}
    cpu_per_k: dict[str, list[float]] = {k: [] for k in RUNNERS}
    rss: dict[str, list[float]] = {k: [] for k in RUNNERS}
    lat: dict[str, list[tuple[float, float]]] = {k: [] for k in RUNNERS}
    for r in range(args.rounds):
        for kind in RUNNERS:  # alternated: raw, codebus, raw, codebus, ...
            rate, cpu, growth = await throughput(kind, args.messages, args.prefetch)
            tput[kind].append(rate)
            cpu_per_k[kind].append(cpu)
            rss[kind].append(growth)
            print(
                f"round {r + 1} {kind:<13} throughput {rate:8.0f} msg/s  "
                f"cpu {cpu * 1000:5.0f} us/msg  rss +{growth:5.1f} MiB",
                flush=True,
            )
        for kind in RUNNERS:
            p50, p99 = await latency(kind, args.latency_messages, args.rate, args.prefetch)
            lat[kind].append((p50, p99))
            print(
                f"round {r + 1} {kind:<13} latency p50 {p50:6.2f} ms  p99 {p99:6.2f} ms", flush=True
            )
    raw, cb = "raw aio-pika", "codebus"
    t_raw, t_cb = statistics.median(tput[raw]), statistics.median(tput[cb])
    p50_raw = statistics.median(x[0] for x in lat[raw])
    p99_raw = statistics.median(x[1] for x in lat[raw])
    p50_cb = statistics.median(x[0] for x in lat[cb])
    p99_cb = statistics.median(x[1] for x in lat[cb])
    print()
    print(
        f"messages={args.messages} rounds={args.rounds} prefetch={args.prefetch} "
        f"queue=quorum, persistent, publisher confirms; latency at {args.rate:.0f} msg/s"
    )
    c_raw, c_cb = statistics.median(cpu_per_k[raw]), statistics.median(cpu_per_k[cb])
    m_raw, m_cb = max(rss[raw]), max(rss[cb])
    print(f"{'':<14}{'msg/s':>10}{'cpu us/msg':>12}{'p50 ms':>10}{'p99 ms':>10}{'rss +MiB':>10}")
    for name, t, c, p50, p99, m in (
        (raw, t_raw, c_raw, p50_raw, p99_raw, m_raw),
        (cb, t_cb, c_cb, p50_cb, p99_cb, m_cb),
    ):
        print(f"{name:<14}{t:>10.0f}{c * 1000:>12.0f}{p50:>10.2f}{p99:>10.2f}{m:>10.1f}")
    print(
        f"ratio codebus/raw: throughput {t_cb / t_raw:.2f}x, p50 {p50_cb / p50_raw:.2f}x, "
        f"p99 {p99_cb / p99_raw:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
