"""CPU per message of the production worker's delivery path, before/after a change.

    python -m bench.cpu_per_message --prefetch 16 --messages 5000 --pairs 4 \\
        --kinds before=/path/to/old/checkout,after=.
    python -m bench.cpu_per_message --kinds after=. --pairs 1 --profile /tmp/w.prof

Each run is a fresh process (``--child``) that imports the checkout given for its kind
(PYTHONPATH), builds the middleware exactly as ``codebus worker`` does
(``workers.app.make_middleware``: lag monitor, heap freeze, logging, metrics, retries,
idempotency inbox), pre-fills a quorum queue with N events, then drains it with a no-op
handler typed with a payload model. It reports the process CPU time (user + system) per
message of the drain only: CPU time counts what the process itself executed, so it is
far steadier than wall-clock throughput on a shared machine. Kinds are alternated,
the order reversed every pair, against one private RabbitMQ and Redis
(bench/private_services.py); the summary gives each kind's median and the median of
the per-pair ratios. ``--profile FILE`` runs the drain under cProfile (one kind).
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def instrument(switch: str) -> None:
    """Switch callgrind's counting on or off for this process. Blocking on purpose:
    nothing else of the event loop runs while it switches."""
    cmd = ["callgrind_control", "-i", switch, str(os.getpid())]
    subprocess.run(cmd, check=True, capture_output=True)


async def child(args: argparse.Namespace) -> dict[str, Any]:
    import redis.asyncio as aioredis
    from prometheus_client import CollectorRegistry

    from bus.rabbitmq import RabbitBroker
    from bus.router import Router
    from bus.runtime import Worker
    from schemas.envelope import new_event
    from schemas.events import DeploymentRequested
    from workers.app import make_middleware
    from workers.settings import Settings

    prefix = args.prefix or f"cpu{uuid.uuid4().hex[:8]}"
    settings = Settings(
        amqp_url=args.amqp, redis_url=args.redis, prefix=prefix, concurrency=args.prefetch
    )
    names = settings.names
    broker = RabbitBroker(args.amqp, names=names)
    await broker.connect()
    queue = names.subscription_queue("bench")
    await broker.declare_queue(queue, ["deployment.requested"])
    done = asyncio.Event()
    count = 0

    router = Router("bench")

    @router.subscribe("deployment.requested", name="bench")
    async def noop(payload: DeploymentRequested, ctx: Any) -> None:
        nonlocal count
        count += 1
        if count >= args.messages:
            done.set()

    batch = []
    for i in range(args.messages if not args.rate else 0):
        ev = new_event("deployment.requested", {"app": "bench", "version": str(i)})
        batch.append(broker.publish(ev))
        if len(batch) >= 500:
            await asyncio.gather(*batch)
            batch = []
    await asyncio.gather(*batch)

    redis = aioredis.Redis.from_url(args.redis)
    await redis.ping()
    middleware = make_middleware(settings, redis, CollectorRegistry())
    worker = Worker(broker, router.subscriptions, middleware=middleware, concurrency=args.prefetch)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    if args.callgrind:  # count instructions from here (valgrind's callgrind)
        instrument("on")
    t0, c0 = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    await worker.start()
    if args.rate:  # the driver publishes at a steady rate once it reads this line
        print("ready", flush=True)
    await asyncio.wait_for(done.wait(), 600)
    # the last done-marks and acks
    while worker.in_flight():
        await asyncio.sleep(0.001)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    c1, t1 = time.process_time(), time.perf_counter()
    if args.callgrind:
        instrument("off")
    await worker.stop()
    await broker.delete_topology([queue])
    await broker.close()
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 1000):
        await redis.delete(*keys[i : i + 1000])
    await redis.aclose()
    n = args.messages
    return {"cpu_us": (c1 - c0) / n * 1e6, "msg_s": n / (t1 - t0)}


async def publish_steadily(amqp: str, prefix: str, n: int, rate: float) -> None:
    """Open loop: ``n`` events at ``rate`` per second, confirms awaited in the background."""
    from bus.rabbitmq import RabbitBroker
    from schemas.envelope import new_event
    from schemas.names import Names

    broker = RabbitBroker(amqp, names=Names(prefix=prefix))
    await broker.connect()
    start = time.monotonic()
    pending: set[asyncio.Task[None]] = set()
    for i in range(n):
        ev = new_event("deployment.requested", {"app": "bench", "version": str(i)})
        task = asyncio.ensure_future(broker.publish(ev))
        pending.add(task)
        task.add_done_callback(pending.discard)
        delay = start + (i + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*pending)
    await broker.close()


def run_child(path: str, args: argparse.Namespace, amqp: str, redis: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(Path(path).resolve())}
    prefix = f"cpu{uuid.uuid4().hex[:8]}"
    cmd = [
        *(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
            if (out := callgrind_file(args))
            else []
        ),
        sys.executable,
        str(HERE / "cpu_per_message.py"),
        "--child",
        "--amqp",
        amqp,
        "--redis",
        redis,
        "--messages",
        str(args.messages),
        "--prefetch",
        str(args.prefetch),
        "--prefix",
        prefix,
        "--rate",
        str(args.rate),
    ]
    if args.profile:
        cmd += ["--profile", args.profile]
    if out:
        cmd += ["--callgrind"]
    env["PYTHONHASHSEED"] = "0"
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        if args.rate:
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"worker did not start: {line!r}")
            asyncio.run(publish_steadily(amqp, prefix, args.messages, args.rate))
        text = proc.stdout.read()
        if proc.wait() != 0:
            raise RuntimeError(f"the run failed (exit {proc.returncode})")
    res = dict(json.loads(text.strip().splitlines()[-1]))
    if out:
        totals = Path(out).read_text().split("\ntotals: ")[1].split()[0]
        res["instructions"] = int(totals) / args.messages
        Path(out).unlink()
    return res


def callgrind_file(args: argparse.Namespace) -> str | None:
    """Where a run under callgrind writes its counts (None: not under callgrind)."""
    return f"/tmp/cpu_per_message.{os.getpid()}.callgrind" if args.callgrind else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--amqp")
    ap.add_argument("--redis")
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--prefetch", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--kinds", default="current=.")
    ap.add_argument("--profile")
    ap.add_argument("--prefix")
    ap.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions per message under valgrind (slow: use few messages, a low --rate)",
    )
    ap.add_argument(
        "--rate", type=float, default=0.0, help="publish at this steady rate (0: pre-fill, drain)"
    )
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args))), flush=True)
        return
    sys.path.insert(0, str(HERE.parent))
    from bench.private_services import private_services

    kinds = [tuple(k.split("=", 1)) for k in args.kinds.split(",")]
    cpu: dict[str, list[float]] = {name: [] for name, _ in kinds}
    rate: dict[str, list[float]] = {name: [] for name, _ in kinds}
    instr: dict[str, list[float]] = {name: [] for name, _ in kinds}
    with private_services() as svc:
        for r in range(args.pairs):
            for name, path in kinds if r % 2 == 0 else kinds[::-1]:
                res = run_child(path, args, svc.amqp_url, svc.redis_url)
                cpu[name].append(res["cpu_us"])
                rate[name].append(res["msg_s"])
                if "instructions" in res:
                    instr[name].append(res["instructions"])
                print(
                    f"pair {r + 1} prefetch {args.prefetch} {name:<10} cpu {res['cpu_us']:6.1f} "
                    f"us/msg  {res['msg_s']:7.0f} msg/s"
                    + (f"  {res['instructions']:9.0f} instructions/msg" if args.callgrind else ""),
                    flush=True,
                )
    med = statistics.median
    first = kinds[0][0]
    mode = f"steady {args.rate:.0f}/s" if args.rate else "drain of a pre-filled queue"
    print(
        f"\n{args.messages} messages per run ({mode}), prefetch {args.prefetch}, {args.pairs} pairs"
    )
    for name, _ in kinds:
        line = f"{name:<10} cpu median {med(cpu[name]):6.1f} us/msg  {med(rate[name]):7.0f} msg/s"
        if name != first:
            ratios = [b / a for a, b in zip(cpu[first], cpu[name], strict=True)]
            line += (
                f"  cpu vs {first} per pair: {', '.join(f'{x:.2f}' for x in ratios)} "
                f"(median {med(ratios):.2f}x)"
            )
        if instr[name]:
            line += f"\n{'':<10} instructions median {med(instr[name]):9.0f}/msg"
            if name != first:
                ratios = [b / a for a, b in zip(instr[first], instr[name], strict=True)]
                line += f" ({med(ratios):.3f}x {first})"
        print(line)


if __name__ == "__main__":
    main()
