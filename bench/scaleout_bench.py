"""Scale-out benchmark: 1, 2 and 4 consumer processes draining one quorum queue, the
codebus worker (no-op handler, idempotency on) against raw aio-pika consumers at the
same prefetch, in one invocation, with the CPU each party used.

    python -m bench.scaleout_bench [--messages 20000] [--prefetch 64] [--counts 1,2,4]

For each process count and kind: a fresh queue is pre-filled with ``--messages``
events, the processes connect, then start together; throughput is messages / (last
settlement - start). CPU seconds of the broker (beam.smp), Redis and the consumer
processes are read from /proc over the drain, and shown as cores used (CPU s / wall s).
Starts a private RabbitMQ node and Redis (bench/private_services.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aio_pika

from bench.private_services import private_services
from bus.rabbitmq import RabbitBroker
from bus.redis_conn import redis_client
from schemas.envelope import new_event
from schemas.names import Names

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def listening_pid(port: int) -> int:
    """The pid of the process listening on loopback TCP ``port`` (from /proc)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inode = fields[9]
    if inode is None:
        raise RuntimeError(f"nothing listens on {port}")
    target = f"socket:[{inode}]"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) == target for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    raise RuntimeError(f"no process owns the listener on {port}")


@dataclass
class Result:
    kind: str
    procs: int
    rate: float
    broker_cores: float
    redis_cores: float
    worker_cores: float
    broker_us: float  # CPU microseconds per message
    redis_us: float
    worker_us: float


async def prefill(amqp: str, names: Names, queue: str, n: int) -> None:
    broker = RabbitBroker(amqp, names=names)
    await broker.connect()
    await broker.declare_queue(queue, ["deployment.requested"])
    for start in range(0, n, 500):
        await asyncio.gather(
            *(
                broker.publish(new_event("deployment.requested", {"app": "b", "version": str(i)}))
                for i in range(start, min(n, start + 500))
            )
        )
    await broker.close()


async def drop(amqp: str, names: Names, queue: str, redis_url: str) -> None:
    broker = RabbitBroker(amqp, names=names)
    await broker.connect()
    await broker.delete_topology([queue])
    await broker.close()
    redis = redis_client(redis_url)
    keys = [k async for k in redis.scan_iter(match=f"{names.prefix}:*", count=1000)]
    for i in range(0, len(keys), 1000):
        await redis.delete(*keys[i : i + 1000])
    await redis.aclose()


async def depth(amqp: str, queue: str) -> int:
    """Ready messages of ``queue``, from a fresh connection: a passive declare repeated
    on one long-lived channel kept answering the first count (aio-pika 10.2)."""
    conn = await aio_pika.connect(amqp)
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, passive=True)
        return int(q.declaration_result.message_count or 0)
    finally:
        await conn.close()


def step(what: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def spawn(kind: str, *args: object) -> subprocess.Popen[str]:
    """One bench.scaleout_worker process (it prints ``ready`` once connected)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.scaleout_worker", kind, *map(str, args)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def one_run(
    kind: str, procs: int, n: int, prefetch: int, amqp: str, redis_url: str, pids: dict[str, int]
) -> Result:
    names = Names(prefix=f"scale{uuid.uuid4().hex[:8]}")
    queue = names.subscription_queue("bench")
    await prefill(amqp, names, queue, n)
    step(f"{kind} x{procs}: {n} messages queued")
    workers = [spawn(kind, amqp, redis_url, names.prefix, queue, prefetch) for _ in range(procs)]
    for w in workers:
        assert w.stdout is not None and w.stdout.readline().strip() == "ready"
    watched = {"broker": [pids["broker"]], "redis": [pids["redis"]], "workers": []}
    watched["workers"] = [w.pid for w in workers]
    cpu0 = {k: sum(cpu_seconds(p) for p in v) for k, v in watched.items()}
    t0 = time.time()
    for w in workers:
        assert w.stdin is not None
        w.stdin.write("go\n")
        w.stdin.flush()
    step(f"{kind} x{procs}: started")
    while (left := await asyncio.wait_for(depth(amqp, queue), 10)) > 0:
        if os.environ.get("SCALEOUT_DEBUG"):
            step(f"{left} left")
        await asyncio.sleep(0.1)
    step(f"{kind} x{procs}: queue empty")
    await asyncio.sleep(0.3)  # the last prefetched deliveries settle
    cpu1 = {k: sum(cpu_seconds(p) for p in v) for k, v in watched.items()}
    total, last = 0, t0
    for w in workers:
        w.terminate()
        out, _ = w.communicate(timeout=30)
        count, _first, end = out.split()[-3:]
        total, last = total + int(count), max(last, float(end))
    await drop(amqp, names, queue, redis_url)
    if total != n:
        raise RuntimeError(f"{kind} x{procs}: settled {total} of {n}")
    used = {k: cpu1[k] - cpu0[k] for k in watched}
    cores = {k: used[k] / (last - t0) for k in watched}  # over the drain
    us = {k: used[k] / n * 1e6 for k in watched}
    return Result(
        kind,
        procs,
        n / (last - t0),
        cores["broker"],
        cores["redis"],
        cores["workers"],
        us["broker"],
        us["redis"],
        us["workers"],
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--prefetch", type=int, default=64)
    ap.add_argument("--counts", default="1,2,4")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with private_services() as svc:
        port = svc.amqp_url.rsplit(":", 1)[1].strip("/")
        pids = {
            "broker": listening_pid(int(port)),
            "redis": listening_pid(int(svc.redis_url.rsplit(":", 1)[1].split("/")[0])),
        }
        print(f"# private RabbitMQ (:{port}) and Redis; {os.cpu_count()} CPUs; "
              f"{args.messages} messages per run, prefetch {args.prefetch}; "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        results: list[Result] = []
        for procs in counts:
            for kind in ("raw", "codebus"):
                r = await one_run(
                    kind, procs, args.messages, args.prefetch, svc.amqp_url, svc.redis_url, pids
                )
                results.append(r)
                print(
                    f"{kind:8s} x{procs}: {r.rate:8.0f} msg/s  cores: broker {r.broker_cores:.2f}"
                    f"  redis {r.redis_cores:.2f}  workers {r.worker_cores:.2f}"
                    f"  | CPU us/msg: broker {r.broker_us:.0f}  redis {r.redis_us:.0f}"
                    f"  workers {r.worker_us:.0f}",
                    flush=True,
                )
        print("\nprocs | raw msg/s | codebus msg/s | codebus/raw | codebus scaling vs x1")
        base = next(r.rate for r in results if r.kind == "codebus" and r.procs == counts[0])
        for procs in counts:
            raw = next(r for r in results if r.kind == "raw" and r.procs == procs)
            cb = next(r for r in results if r.kind == "codebus" and r.procs == procs)
            print(
                f"{procs:5d} | {raw.rate:9.0f} | {cb.rate:13.0f} | {cb.rate / raw.rate:10.2f}x"
                f" | {cb.rate / base:.2f}x"
            )


if __name__ == "__main__":
    asyncio.run(main())
