"""Benchmark: how late flow wake-ups arrive through the delay tiers on RabbitMQ.

    python bench/timer_lateness.py [--timers 400] [--max-delay 8] [--workers 16]

Sends ``--timers`` wake-up events (``deployment.flow_timer``) through the delay tiers -
``broker.send(queue, message, delay=d)`` into the delay tier of ``d``, dead-lettered back
into the flows queue when the per-message TTL expires - with delays drawn uniformly from
[0.05, max-delay] s in random order, and a consumer receiving them. Lateness = arrival -
(send + delay). Two runs: ``single`` (one message with the whole delay) and ``hops``
(what the flow engine does, ``flows.engine.hop_delay``: power-of-two hops, an early
arrival re-sent for the rest). Prints p50/p99/max overall and per tier of the delay.

Why it can be late: RabbitMQ expires per-message TTLs only at the head of a queue, so
within one tier (delays in [2^n, 2^(n+1)) ms) a message waits behind a longer one sent
before it: the worst case is about the width of the tier. The flow engine's state is the
authority (an early wake-up re-arms, a late one acts at once); the sweeper bounds
lateness for lost wake-ups at sweep interval + grace.

Needs RabbitMQ (``scripts/services.sh start``); URL from CODEBUS_TEST_AMQP_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections import defaultdict

from bus.abc import Delivery
from bus.codec import encode
from bus.rabbitmq import RabbitBroker
from flows.engine import hop_delay
from schemas.envelope import Event, new_event
from schemas.names import Names, delay_tier

AMQP_URL = os.environ.get("CODEBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5682/")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(
    timers: int, max_delay: float, prefetch: int, seed: int, hops: bool
) -> dict[str, object]:
    names = Names(prefix=f"bench{uuid.uuid4().hex[:8]}")
    broker = RabbitBroker(AMQP_URL, names=names, connection_name="codebus-bench-timers")
    await broker.connect()
    queue = names.subscription_queue(Names.FLOW_WAKE_SUBSCRIPTION)
    await broker.declare_queue(queue, ["deployment.flow_timer"])
    rng = random.Random(seed)
    due: dict[str, tuple[float, float]] = {}
    late: dict[str, float] = {}
    done = asyncio.Event()

    async def on_delivery(d: Delivery) -> None:
        now = time.time()
        event = Event.from_json(d.message.body)
        sent, delay = due[event.id]
        if hops and now < sent + delay - 0.001:  # early: re-arm for the rest
            await broker.send(queue, d.message, delay=hop_delay(sent + delay - now))
            await d.ack()
            return
        late[event.id] = now - (sent + delay)
        await d.ack()
        if len(late) == timers:
            done.set()

    consumer = await broker.consume(queue, on_delivery, prefetch=prefetch)
    try:
        for i in range(timers):
            delay = rng.uniform(0.05, max_delay)
            event = new_event(
                "deployment.flow_timer", {"flow_id": f"d-bench-{i}", "timer": "step", "token": i}
            )
            due[event.id] = (time.time(), delay)
            await broker.send(queue, encode(event), delay=hop_delay(delay) if hops else delay)
        await asyncio.wait_for(done.wait(), timeout=max_delay * 3 + 30)
    finally:
        await consumer.close()
        await broker.delete_topology([queue])
        await broker.close()
    by_tier: dict[int, list[float]] = defaultdict(list)
    for event_id, lateness in late.items():
        by_tier[delay_tier(int(due[event_id][1] * 1000))].append(lateness)
    values = list(late.values())
    return {
        "timers": timers,
        "p50": statistics.median(values),
        "p99": pct(values, 99),
        "max": max(values),
        "early": sum(1 for v in values if v < -0.001),
        "tiers": {
            t: (len(v), statistics.median(v), pct(v, 99), max(v))
            for t, v in sorted(by_tier.items())
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timers", type=int, default=400)
    parser.add_argument("--max-delay", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=16, help="consumer prefetch")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for mode in ("single", "hops"):
        report(
            mode,
            args,
            asyncio.run(run(args.timers, args.max_delay, args.workers, args.seed, mode == "hops")),
        )


def report(mode: str, args: argparse.Namespace, result: dict[str, object]) -> None:
    print(
        f"{mode}: timers={result['timers']} delays=U(0.05, {args.max_delay}) s  lateness "
        f"p50={result['p50'] * 1000:.0f} ms p99={result['p99'] * 1000:.0f} ms "
        f"max={result['max'] * 1000:.0f} ms early={result['early']}"
    )
    for tier, (n, p50, p99, worst) in result["tiers"].items():  # type: ignore[attr-defined]
        width = 2**tier / 1000
        print(
            f"  tier {tier:>2} [{width:7.3f} s, {2 * width:7.3f} s): n={n:<4} "
            f"p50={p50 * 1000:6.0f} ms "
            f"p99={p99 * 1000:6.0f} ms max={worst * 1000:6.0f} ms"
        )


if __name__ == "__main__":
    main()
