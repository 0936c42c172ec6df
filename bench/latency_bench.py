"""Latency at a steady publish rate: the production ``codebus worker`` against a raw
aio-pika consumer, both in processes of their own, on a private RabbitMQ and Redis.

    python -m bench.latency_bench [--rates 250,500,1000,1500] [--prefetch 16,64]
                                  [--rounds 2] [--seconds 10] [--probes]

An open-loop publisher (this process, publisher confirms, persistent messages, mandatory)
sends ``rate`` events per second for ``--seconds``, whatever the consumer does; the time
taken just before each publish travels in the message. Latency is publish -> handler done
for codebus (bench/latency_worker.py: ``codebus worker`` with its full middleware and a
no-op handler) and publish -> acked for raw (bench/raw_consumer.py); the first
``--warmup`` seconds of each run are left out. Every (prefetch, rate) pair runs raw and
codebus back to back, the order alternating by round, and the per-round ratio of the
adjacent pair is printed: on a shared machine that drifts, paired ratios mean more than
medians. ``--probes`` makes the codebus worker record loop lag, GC pauses and per-delivery
inbox and ack waits (bench/latency_worker.py) and prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiormq

from bench.private_services import Services, free_port, private_services
from bus.codec import encode
from bus.rabbitmq import RabbitBroker
from schemas.envelope import new_event
from schemas.names import MAX_DELAY_TIER, MIN_DELAY_TIER, Names

ROOT = Path(__file__).resolve().parents[1]
SENT_AT = "x-bench-sent"
PLACEHOLDER = "T" * 18  # replaced by the publish timestamp, same width in every body
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One consumer at one prefetch and rate."""

    kind: str
    prefetch: int
    rate: float
    latencies: list[float]
    published: int
    received: int
    cpu_us_per_msg: float
    behind: float = 0.0
    probes: dict[str, Any] = field(default_factory=dict)
    window: tuple[float, float] = (0.0, 0.0)

    def pct(self, q: float) -> float:
        v = self.latencies
        return v[min(len(v) - 1, int(len(v) * q / 100))] * 1000 if v else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def publish_steady(
    channel: Any, exchange: str, bodies: list[tuple[str, bytes]], rate: float
) -> float:
    """Open loop: message i is due at start + i / rate; sends what is due, then sleeps
    about a millisecond; never waits for a confirm before sending the next one. Straight
    on aiormq's channel (aio-pika's ``Message`` costs more than the consumers we
    measure). Returns how far behind its schedule the publisher fell at worst (s)."""
    pending: list[Any] = []
    start = time.monotonic()
    sent, behind = 0, 0.0
    marker = PLACEHOLDER.encode()
    while sent < len(bodies):
        now_m = time.monotonic()
        due = min(len(bodies), int((now_m - start) * rate) + 1)
        behind = max(behind, now_m - (start + sent / rate))
        while sent < due:
            event_id, body = bodies[sent]
            now = repr(time.time()).ljust(len(PLACEHOLDER), "0")
            props = aiormq.spec.Basic.Properties(
                message_id=event_id,
                content_type="application/cloudevents+json",
                headers={SENT_AT: now},
                delivery_mode=2,
            )
            publish = channel.basic_publish(
                body.replace(marker, now.encode()),
                exchange=exchange,
                routing_key="deployment.requested",
                properties=props,
                mandatory=True,
                wait=False,
            )
            pending.append(asyncio.ensure_future(publish))
            sent += 1
        await asyncio.sleep(0.001)
    await asyncio.gather(*pending)
    return behind


class Consumer:
    """A consumer subprocess (codebus worker or raw aio-pika)."""

    def __init__(self, kind: str, svc: Services, names: Names, prefetch: int, tmp: Path) -> None:
        self.kind, self.tmp = kind, tmp
        self.out = tmp / "consumer.lat"
        self.probe_out = tmp / "consumer.probes.json"
        # "codebus@DIR" runs the worker of another checkout (e.g. the code before a
        # change), so that before and after are measured in the same invocation.
        src = Path(kind.split("@", 1)[1]) if "@" in kind else ROOT
        env = {**os.environ, "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1"}
        if kind.startswith("codebus"):
            env.update(
                CODEBUS_AMQP_URL=svc.amqp_url,
                CODEBUS_REDIS_URL=svc.redis_url,
                CODEBUS_PREFIX=names.prefix,
                CODEBUS_HTTP_PORT=str(free_port()),
                CODEBUS_HTTP_HOST="127.0.0.1",
                CODEBUS_FAKE_TOOLS="true",
                CODEBUS_INBOX_RETENTION="600",
                BENCH_LATENCY_OUT=str(self.out),
                BENCH_PROBE_OUT=str(self.probe_out),
            )
            args = ["-m", "bench.latency_worker", "--concurrency", str(prefetch)]
        else:
            queue = names.subscription_queue("bench")
            args = ["-m", "bench.raw_consumer", svc.amqp_url, queue, str(prefetch), str(self.out)]
        self.log = (tmp / "consumer.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=src,
            env=env,
            stdout=self.log,
            stderr=self.log,
            text=True,
        )

    async def ready(self, conn: aio_pika.abc.AbstractConnection, queue: str) -> None:
        """Wait until the queue has a consumer (a codebus worker declares it first)."""
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.fail("exited")
            try:
                async with conn.channel() as probe:  # a missing queue closes the channel
                    q = await probe.declare_queue(queue, passive=True)
                    if q.declaration_result.consumer_count:
                        return
            except aiormq.exceptions.ChannelNotFoundEntity:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} consumer did not attach; see {self.log.name}")
            await asyncio.sleep(0.1)

    def fail(self, what: str) -> None:
        self.log.close()
        tail = Path(self.log.name).read_text()[-3000:]
        raise RuntimeError(f"{self.kind} consumer {what}:\n{tail}")

    def stop(self) -> tuple[array[float], float]:
        """SIGTERM, wait for the drain; the latencies it wrote and its CPU seconds."""
        cpu = cpu_seconds(self.proc.pid)
        self.proc.terminate()
        if self.proc.wait(60) != 0:
            self.fail("failed")
        self.log.close()
        lat = array("d")
        lat.frombytes(self.out.read_bytes())
        return lat, cpu


async def run_one(
    svc: Services, kind: str, prefetch: int, rate: float, args: argparse.Namespace
) -> Run:
    names = Names(prefix=f"lb{uuid.uuid4().hex[:8]}")
    queue = names.subscription_queue("bench")
    if kind == "raw":
        # codebus workers declare their topology themselves (a worker of another
        # checkout may declare it with other arguments than this one would)
        broker = RabbitBroker(svc.amqp_url, names=names)
        await broker.connect()
        await broker.declare_queue(queue, ["deployment.requested"])
        await broker.close()
    conn = await aio_pika.connect(svc.amqp_url)
    ch = await conn.channel(publisher_confirms=True)
    n = int(rate * args.seconds)
    bodies = []
    for i in range(n):
        ev = new_event("deployment.requested", {"app": "bench", "version": str(i)})
        ev = ev.model_copy(update={"subject": PLACEHOLDER})
        bodies.append((ev.id, encode(ev).body))
    with tempfile.TemporaryDirectory(prefix="lb-") as tmp:
        consumer = Consumer(kind, svc, names, prefetch, Path(tmp))
        try:
            await consumer.ready(conn, queue)
            cpu0 = cpu_seconds(consumer.proc.pid)
            t0 = time.time() + args.warmup
            behind = await publish_steady(
                await ch.get_underlay_channel(), names.events_exchange, bodies, rate
            )
            t1 = time.time()
            deadline = time.monotonic() + 120
            while (await ch.declare_queue(queue, passive=True)).declaration_result.message_count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind}: the queue did not drain")
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # the last deliveries finish
        finally:
            lat, cpu1 = consumer.stop()
        probes: dict[str, Any] = {}
        if consumer.probe_out.exists():
            probes = json.loads(consumer.probe_out.read_text())
    await delete_topology(ch, names)
    await conn.close()
    warm = int(rate * args.warmup)
    kept = sorted(lat[warm:])
    cpu = (cpu1 - cpu0) / max(1, len(lat)) * 1e6
    return Run(kind, prefetch, rate, kept, n, len(lat), cpu, behind, probes, (t0, t1))


async def delete_topology(ch: aio_pika.abc.AbstractChannel, names: Names) -> None:
    """Delete a run's queues and exchanges by name (declaring nothing: the topology may
    come from another checkout's worker)."""
    tiers = range(MIN_DELAY_TIER, MAX_DELAY_TIER + 1)
    for q in [names.subscription_queue("bench"), names.dead_letter_queue] + [
        names.delay_queue(t) for t in tiers
    ]:
        await ch.queue_delete(q)
    for ex in (names.events_exchange, names.retry_exchange, names.delay_exchange):
        await ch.exchange_delete(ex)
    await ch.exchange_delete(names.dead_exchange)


def describe(run: Run) -> str:
    missing = "" if run.received == run.published else f"  RECEIVED {run.received}/{run.published}"
    return (
        f"p50 {run.pct(50):7.2f}  p99 {run.pct(99):7.2f}  p99.9 {run.pct(99.9):7.2f} ms  "
        f"cpu {run.cpu_us_per_msg:4.0f} us/msg  publisher behind <= {run.behind * 1000:.0f} ms"
        f"{missing}"
    )


def window(pairs: list[float], t0: float, t1: float) -> list[float]:
    """Values of a [time, value, ...] series observed between t0 and t1."""
    return [pairs[i + 1] for i in range(0, len(pairs), 2) if t0 <= pairs[i] <= t1]


def describe_probes(p: dict[str, Any], t0: float, t1: float) -> str:
    """Probe figures within the measured window (t0..t1, wall clock)."""
    lines = []
    for name in ("loop_lag", "claim_wait", "complete_wait", "ack_write_wait", "redis_round_trip"):
        v = sorted(window(p.get(name, []), t0, t1))
        if v:
            q = {x: v[min(len(v) - 1, int(len(v) * x / 100))] * 1000 for x in (50, 99, 99.9)}
            lines.append(
                f"    {name:<17} p50 {q[50]:7.2f}  p99 {q[99]:7.2f}  p99.9 {q[99.9]:7.2f}  "
                f"max {v[-1] * 1000:7.2f} ms  (n={len(v)})"
            )
    for gen in (0, 1, 2):
        v = window(p.get(f"gc_gen{gen}", []), t0, t1)
        if v:
            lines.append(
                f"    gc gen{gen}          {len(v)} pauses, total {sum(v) * 1000:.1f} ms, "
                f"max {max(v) * 1000:.2f} ms"
            )
    sizes = window(p.get("batch_size", []), t0, t1)
    if sizes:
        lines.append(
            f"    inbox Redis calls {len(sizes) / (t1 - t0):.0f}/s, "
            f"{sum(sizes) / len(sizes):.1f} operations each"
        )
    stalls = [
        (p["loop_lag"][i] - t0, p["loop_lag"][i + 1] * 1000)
        for i in range(0, len(p.get("loop_lag", [])), 2)
        if t0 <= p["loop_lag"][i] <= t1 and p["loop_lag"][i + 1] > 0.02
    ]
    if stalls:
        lines.append(
            "    loop stalls > 20 ms at (s, ms): "
            + ", ".join(f"({t:.1f}, {ms:.0f})" for t, ms in stalls[:12])
        )
    if "heap_objects" in p:
        lines.append(f"    objects tracked by the GC at exit: {p['heap_objects'][1]:.0f}")
    return "\n".join(lines)


def order(kinds: list[str], r: int) -> list[str]:
    """As given in odd rounds, reversed in even ones: drift hits every kind alike."""
    return kinds if r % 2 == 0 else kinds[::-1]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="250,500,1000,1500")
    ap.add_argument("--prefetch", default="16,64")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds left out at the start")
    ap.add_argument("--kinds", default="raw,codebus")
    ap.add_argument("--probes", action="store_true")
    args = ap.parse_args()
    if args.probes:
        os.environ["BENCH_PROBES"] = "1"
    rates = [float(x) for x in args.rates.split(",")]
    prefetches = [int(x) for x in args.prefetch.split(",")]
    kinds = args.kinds.split(",")
    runs: dict[tuple[int, float], dict[str, list[Run]]] = {}
    # Ctrl-C / SIGTERM: stop after the current run, so the private services are stopped
    # (cancelling mid-run can be swallowed inside the AMQP client).
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    with private_services() as svc:
        print(f"private RabbitMQ {svc.amqp_url}, Redis {svc.redis_url}", flush=True)
        for r in range(args.rounds):
            for prefetch in prefetches:
                for rate in rates:
                    if stop.is_set():
                        break
                    slot = runs.setdefault((prefetch, rate), {k: [] for k in kinds})
                    for kind in order(kinds, r):
                        run = await run_one(svc, kind, prefetch, rate, args)
                        slot[kind].append(run)
                        print(
                            f"round {r + 1} prefetch {prefetch:3d} {rate:6.0f}/s {kind:<8} "
                            f"{describe(run)}",
                            flush=True,
                        )
                        if run.probes:
                            print(describe_probes(run.probes, *run.window), flush=True)
    if "raw" not in kinds:
        return
    med = statistics.median
    print(
        f"\n{args.seconds:.0f} s per run, first {args.warmup:.0f} s left out, {args.rounds} "
        "rounds alternated; quorum queue, persistent, confirms; medians over rounds (ms); "
        "p99 ratio = this kind's p99 / raw's p99 in the same round"
    )
    print(
        f"{'prefetch':>8} {'rate/s':>7} {'kind':<12} | {'p50':>7} {'p99':>7} {'p99.9':>7} | "
        "per-round p99 ratios"
    )
    for (prefetch, rate), slot in runs.items():
        for kind in kinds:
            got = slot[kind]
            ratios = [c.pct(99) / w.pct(99) for c, w in zip(got, slot["raw"], strict=True)]
            line = (
                f"{prefetch:>8} {rate:>7.0f} {kind[:12]:<12} | {med(x.pct(50) for x in got):7.2f} "
                f"{med(x.pct(99) for x in got):7.2f} {med(x.pct(99.9) for x in got):7.2f} |"
            )
            if kind != "raw":
                line += f" {', '.join(f'{x:.2f}' for x in ratios)} (median {med(ratios):.2f}x)"
            print(line)


if __name__ == "__main__":
    asyncio.run(main())
