"""Events flowing through chaos worker processes while a fault is injected; the ledger
check afterwards (lost, applied twice, re-runs, runs without a claim) and the longest
stall of processing. Shared by the cluster and Sentinel scenarios."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from bus.errors import BrokerUnavailable, PublishNacked, PublishOutcomeUnknown
from bus.rabbitmq import RabbitBroker
from schemas.envelope import new_event
from schemas.names import Names
from tests.chaos.chaos_worker import key
from tests.chaos.services import ChaosWorker


@dataclass
class Outcome:
    """What a run under a fault came to."""

    confirmed: list[str] = field(default_factory=list)
    unknown: int = 0  # publishes whose confirm never came (retried with the same id)
    not_sent: int = 0
    nacked: int = 0  # the broker refused it (a quorum queue without a leader): resent
    lost: int = 0
    twice: int = 0
    reruns: int = 0  # handler ran again for an event (not applied again)
    noclaim: int = 0
    max_stall: float = 0.0  # longest time processing made no progress with work pending
    drained_after: float = 0.0  # from the fault until every confirmed event was applied
    workers_ready: bool = False
    publisher_error: str = ""  # the publisher gave up (a bug: it retries every error)

    def line(self) -> str:
        return (
            f"confirmed={len(self.confirmed)} lost={self.lost} applied_twice={self.twice} "
            f"reruns={self.reruns} runs_without_claim={self.noclaim} "
            f"outcome_unknown={self.unknown} not_sent={self.not_sent} nacked={self.nacked} "
            f"max_stall={self.max_stall:.1f}s drained_after_fault={self.drained_after:.1f}s "
            f"workers_ready={self.workers_ready}"
            + (f" publisher_error={self.publisher_error}" if self.publisher_error else "")
        )


async def _publish_all(broker: RabbitBroker, total: int, out: Outcome, pace: float) -> None:
    for n in range(total):
        event = new_event("deployment.requested", {"app": "cluster", "version": str(n)})
        while True:  # the same event (same id) until confirmed
            try:
                await broker.publish(event)
                out.confirmed.append(event.id)
                break
            except PublishOutcomeUnknown:
                out.unknown += 1  # may be queued already: the inbox drops a second copy
            except BrokerUnavailable:
                out.not_sent += 1
            except PublishNacked:
                out.nacked += 1
            await asyncio.sleep(0.2)
        await asyncio.sleep(pace)


async def run_under_fault(
    broker: RabbitBroker,
    redis: Any,
    names: Names,
    workers: Sequence[ChaosWorker],
    fault: Callable[[], Coroutine[Any, Any, None]],
    *,
    total: int,
    fault_after: int,
    pace: float = 0.002,
    catch_up: float = 90.0,
) -> Outcome:
    """Publish ``total`` events; after ``fault_after`` are confirmed run ``fault``; wait
    until every confirmed event is in the ledger (``catch_up`` s after the fault at
    most, then the figures show what is missing)."""
    out = Outcome()
    ledger = key(names, "ledger")
    publisher = asyncio.create_task(_publish_all(broker, total, out, pace))
    while len(out.confirmed) < fault_after and not publisher.done():
        await asyncio.sleep(0.05)
    t0 = time.monotonic()
    faulting = asyncio.create_task(fault())
    last_count, last_progress = -1, time.monotonic()
    while True:
        try:
            count = int(await redis.hlen(ledger))
        except (RedisError, OSError):
            count = last_count  # Redis itself is the fault: no progress seen
        now = time.monotonic()
        if count != last_count:
            last_count, last_progress = count, now
        elif count < len(out.confirmed):
            out.max_stall = max(out.max_stall, now - last_progress)
        if faulting.done() and publisher.done() and count >= len(out.confirmed):
            break
        if now - t0 > catch_up:
            break
        await asyncio.sleep(0.1)
    await faulting  # its own failure (a check inside it) fails the test
    out.drained_after = time.monotonic() - t0
    if not publisher.done():
        publisher.cancel()
    (result,) = await asyncio.gather(publisher, return_exceptions=True)
    if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
        out.publisher_error = f"{type(result).__name__}: {result}"
    await asyncio.sleep(1.0)  # late duplicates would land now
    counts = {k.decode(): int(v) for k, v in (await redis.hgetall(ledger)).items()}
    runs = {k.decode(): int(v) for k, v in (await redis.hgetall(key(names, "runs"))).items()}
    out.lost = len(set(out.confirmed) - counts.keys())
    out.twice = sum(1 for v in counts.values() if v > 1)
    out.reruns = sum(v - 1 for v in runs.values() if v > 1)
    out.noclaim = int(await redis.hlen(key(names, "noclaim")))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = await asyncio.gather(*(asyncio.to_thread(w.ready) for w in workers))
        if all(status == 200 for status, _ in states):
            out.workers_ready = all(w.proc is not None and w.proc.poll() is None for w in workers)
            break
        await asyncio.sleep(0.5)
    return out
