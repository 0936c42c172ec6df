"""Benchmark: the codebus worker (no-op handler, idempotency on) against a raw aio-pika
consumer (manual ack, same prefetch, same queue arguments) on the same RabbitMQ, runs
alternated in one invocation.

    python bench/consumer_bench.py [--messages 20000] [--rounds 3] [--prefetch 64]
        [--tracing off|noop|otlp]

Prints msgs/s of each, their ratio, and p50/p99 end-to-end latency (publish -> acked)
at a fixed publish rate (default 1,000 msg/s). Starts a private RabbitMQ node and Redis
(bench/private_services.py) unless ``--shared`` is given (then CODEBUS_TEST_AMQP_URL /
CODEBUS_TEST_REDIS_URL, the test services other people's tests use).

``--tracing`` (default off: the production path when no OTEL_* variable is set) adds
what a worker with tracing on runs: the consumer-span middleware, producer spans on
publish, an SDK provider with a batch processor whose exporter is a no-op (``noop``:
spans built, batched and dropped) or OTLP/HTTP to a local receiver (``otlp``: spans
encoded and sent to a sink process on loopback, bench/otlp_sink.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aio_pika
import redis.asyncio as aioredis

from bench.private_services import private_services
from bus import tracing
from bus.inbox import Inbox
from bus.middleware import IdempotencyMiddleware, Middleware, Processing, RetriesMiddleware
from bus.middleware.tracing import TracingMiddleware
from bus.outcome import Outcome
from bus.rabbitmq import RabbitBroker
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import new_event
from schemas.events import DeploymentRequested
from schemas.names import Names

AMQP_URL = os.environ.get("CODEBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5682/")
REDIS_URL = os.environ.get("CODEBUS_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")
# (replaced by the private services' URLs in main() unless --shared)
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


class Runner:
    """A prepared consumer: ``start()`` is timed, connection set-up is not."""

    def __init__(
        self, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
    ) -> None:
        self.start, self.stop = start, stop


async def run_codebus(setup: Setup, recorder: Recorder, prefetch: int) -> Runner:
    redis = aioredis.Redis.from_url(REDIS_URL)
    await redis.ping()
    router = Router("bench")

    @router.subscribe("deployment.requested", name="bench")
    async def noop(payload: DeploymentRequested, ctx: object) -> None:
        return None

    middleware = [
        LatencyMiddleware(recorder),
        *([TracingMiddleware()] if tracing.enabled() else []),
        RetriesMiddleware(),  # the production order (workers.app.make_middleware)
        IdempotencyMiddleware(Inbox(redis, setup.names, lease=30, retention=600)),
    ]
    worker = Worker(
        tracing.traced(setup.broker),
        router.subscriptions,
        middleware=middleware,
        concurrency=prefetch,
    )

    async def stop() -> None:
        await worker.stop()
        keys = [k async for k in redis.scan_iter(match=f"{setup.names.prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i : i + 1000])
        await redis.aclose()

    return Runner(worker.start, stop)


async def run_raw(setup: Setup, recorder: Recorder, prefetch: int) -> Runner:
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

    tags: list[str] = []

    async def start() -> None:
        tags.append(await q.consume(on_message))

    async def stop() -> None:
        await q.cancel(tags[0])
        await conn.close()

    return Runner(start, stop)


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
        runner = await RUNNERS[kind](setup, recorder, prefetch)
        rss0 = rss_mib()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        await runner.start()
        await asyncio.wait_for(recorder.done.wait(), 600)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        growth = rss_mib() - rss0
        await runner.stop()
    return n / elapsed, cpu / n * 1000, growth


async def latency(kind: str, n: int, rate: float, prefetch: int) -> tuple[float, float]:
    """p50 and p99 publish -> acked latency, in ms, at a fixed publish rate."""
    async with Setup() as setup:
        recorder = Recorder()
        recorder.target = n
        runner = await RUNNERS[kind](setup, recorder, prefetch)
        await runner.start()
        await publish(setup, n, rate=rate)
        await asyncio.wait_for(recorder.done.wait(), 600)
        await runner.stop()
    lat = sorted(recorder.latencies)
    return (
        statistics.median(lat) * 1000,
        lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
    )


def order(r: int) -> list[str]:
    """raw first in odd rounds, codebus first in even ones: drift hits both alike."""
    kinds = list(RUNNERS)
    return kinds if r % 2 == 0 else kinds[::-1]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prefetch", type=int, default=64)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--latency-messages", type=int, default=5_000)
    ap.add_argument("--shared", action="store_true", help="use the shared test services")
    ap.add_argument("--tracing", choices=["off", "noop", "otlp"], default="off")
    args = ap.parse_args()
    global AMQP_URL, REDIS_URL
    with contextlib.ExitStack() as stack:
        if not args.shared:
            svc = stack.enter_context(private_services())
            AMQP_URL, REDIS_URL = svc.amqp_url, svc.redis_url
        if args.tracing != "off":
            stack.enter_context(tracing_on(args.tracing))
        print(f"tracing {args.tracing}", flush=True)
        await measure(args)


@contextlib.contextmanager
def tracing_on(kind: str) -> Iterator[None]:
    """Install a tracer provider as a worker with OTEL_* set would (see module doc)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    sink = None
    exporter: SpanExporter
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from bench.otlp_sink import sink_process

        sink = sink_process()
        exporter = OTLPSpanExporter(endpoint=f"{sink.endpoint}/v1/traces")
    else:

        class Noop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        exporter = Noop()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield
    finally:
        provider.shutdown()
        if sink is not None:
            print(f"otlp sink received {sink.stop()} spans", flush=True)


async def measure(args: argparse.Namespace) -> None:
    """Alternated throughput and latency rounds; prints the table."""

    tput: dict[str, list[float]] = {k: [] for k in RUNNERS}
    cpu_per_k: dict[str, list[float]] = {k: [] for k in RUNNERS}
    rss: dict[str, list[float]] = {k: [] for k in RUNNERS}
    lat: dict[str, list[tuple[float, float]]] = {k: [] for k in RUNNERS}
    for r in range(args.rounds):
        for kind in order(r):
            rate, cpu, growth = await throughput(kind, args.messages, args.prefetch)
            tput[kind].append(rate)
            cpu_per_k[kind].append(cpu)
            rss[kind].append(growth)
            print(
                f"round {r + 1} {kind:<13} throughput {rate:8.0f} msg/s  "
                f"cpu {cpu * 1000:5.0f} us/msg  rss +{growth:5.1f} MiB",
                flush=True,
            )
        for kind in order(r):
            p50, p99 = await latency(kind, args.latency_messages, args.rate, args.prefetch)
            lat[kind].append((p50, p99))
            print(
                f"round {r + 1} {kind:<13} latency p50 {p50:6.2f} ms  p99 {p99:6.2f} ms", flush=True
            )
    raw, cb = "raw aio-pika", "codebus"
    med = statistics.median
    t_raw, t_cb = med(tput[raw]), med(tput[cb])
    p50_raw, p99_raw = med(x[0] for x in lat[raw]), med(x[1] for x in lat[raw])
    p50_cb, p99_cb = med(x[0] for x in lat[cb]), med(x[1] for x in lat[cb])
    c_raw, c_cb = med(cpu_per_k[raw]), med(cpu_per_k[cb])
    m_raw, m_cb = max(rss[raw]), max(rss[cb])
    paired = sorted(c / r for c, r in zip(tput[cb], tput[raw], strict=True))
    paired_p99 = sorted(c[1] / r[1] for c, r in zip(lat[cb], lat[raw], strict=True))
    print()
    print(
        f"messages={args.messages} rounds={args.rounds} prefetch={args.prefetch} "
        f"queue=quorum, persistent, publisher confirms; latency at {args.rate:.0f} msg/s"
    )
    print(f"{'':<14}{'msg/s':>10}{'cpu us/msg':>12}{'p50 ms':>10}{'p99 ms':>10}{'rss +MiB':>10}")
    for name, t, c, p50, p99, m in (
        (raw, t_raw, c_raw, p50_raw, p99_raw, m_raw),
        (cb, t_cb, c_cb, p50_cb, p99_cb, m_cb),
    ):
        print(f"{name:<14}{t:>10.0f}{c * 1000:>12.0f}{p50:>10.2f}{p99:>10.2f}{m:>10.1f}")
    print(
        f"ratio codebus/raw (medians): throughput {t_cb / t_raw:.2f}x, "
        f"p50 {p50_cb / p50_raw:.2f}x, p99 {p99_cb / p99_raw:.2f}x"
    )
    print(
        f"per-round throughput ratios: {', '.join(f'{x:.2f}' for x in paired)} "
        f"(median {med(paired):.2f}x); per-round p99 ratios: "
        f"{', '.join(f'{x:.2f}' for x in paired_p99)} (median {med(paired_p99):.2f}x)"
    )


if __name__ == "__main__":
    asyncio.run(main())
