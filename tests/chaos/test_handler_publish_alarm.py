"""Issue 13 (e), handler side: a 20 s memory alarm on a private node while handlers
publish follow-up events with ``HandlerContext.publish``. The gateway side of the same
fault is tests/gateway/test_chaos_memory_alarm.py (issue 8).

Expected: no ``ctx.publish`` call hangs past the broker's confirm timeout (it returns or
raises ``PublishOutcomeUnknown`` within ``publish_timeout`` + 1 s); the failed attempt
is retried; every source event's follow-up arrives, and downstream (idempotent by the
follow-up's derived id) applies it exactly once."""

from __future__ import annotations

import asyncio
import collections
import time

import pytest

from bus.context import HandlerContext
from bus.errors import BrokerUnavailable
from bus.inbox import Inbox
from bus.middleware import IdempotencyMiddleware, RetriesMiddleware
from bus.rabbitmq import RabbitBroker
from bus.retry import RetryPolicy
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import Event, new_event
from tests import reports
from tests.chaos.services import PrivateRabbit

pytestmark = pytest.mark.timeout(240)

EVENTS = 60
ALARM_SECONDS = 20
PUBLISH_TIMEOUT = 2.0


async def test_e_handler_publishes_under_a_20s_memory_alarm(
    private_rabbit: PrivateRabbit, names, redis_client
):
    broker = RabbitBroker(
        private_rabbit.url, names=names, publish_timeout=PUBLISH_TIMEOUT, reconnect_interval=0.5
    )
    source = RabbitBroker(private_rabbit.url, names=names, publish_timeout=30)
    await broker.connect()
    await source.connect()
    router = Router("alarm")
    calls: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    applied: collections.Counter[str] = collections.Counter()
    alarm_on = asyncio.Event()  # the first events' handlers publish only once it holds

    @router.subscribe("deployment.requested", name="alarm.source")
    async def follow_up(event: Event, ctx: HandlerContext) -> None:
        await alarm_on.wait()
        started = time.monotonic()
        try:
            await ctx.publish("deployment.started", {**event.data, "strategy": "rolling"})
        except BrokerUnavailable as exc:
            errors[type(exc).__name__] += 1
            raise
        finally:
            calls.append(time.monotonic() - started)

    @router.subscribe("deployment.started", name="alarm.sink")
    async def sink(event: Event, ctx: HandlerContext) -> None:
        applied[event.data["version"]] += 1

    worker = Worker(
        broker,
        router.subscriptions,
        middleware=[
            RetriesMiddleware(RetryPolicy(max_attempts=50, base_delay=0.5, max_delay=2, jitter=0)),
            IdempotencyMiddleware(Inbox(redis_client, names, lease=10, retention=600)),
        ],
        concurrency=8,
        grace_period=5,
    )
    await worker.start()
    alarm_at = 0.0
    try:
        for n in range(EVENTS // 2):
            await source.publish(new_event("deployment.requested", {"app": "a", "version": str(n)}))
        await asyncio.to_thread(private_rabbit.set_memory_alarm, True)
        alarm_at = time.monotonic()
        alarm_on.set()
        pending = [
            asyncio.create_task(
                source.publish(new_event("deployment.requested", {"app": "a", "version": str(n)}))
            )
            for n in range(EVENTS // 2, EVENTS)
        ]  # blocked publishers: they wait for the alarm to clear (30 s confirm timeout)
        await asyncio.sleep(ALARM_SECONDS - (time.monotonic() - alarm_at))
        await asyncio.to_thread(private_rabbit.set_memory_alarm, False)
        alarm_for = time.monotonic() - alarm_at
        await asyncio.gather(*pending)
        deadline = time.monotonic() + 60
        while len(applied) < EVENTS and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # late duplicates would land now
    finally:
        await worker.stop()
        await source.close()
        await broker.close()
    lost = EVENTS - len(applied)
    twice = sum(1 for c in applied.values() if c > 1)
    figures = (
        f"events={EVENTS} alarm={alarm_for:.0f}s lost={lost} applied_twice={twice} "
        f"publish_calls={len(calls)} longest_publish_call={max(calls):.1f}s "
        f"(confirm timeout {PUBLISH_TIMEOUT:g}s) errors={dict(errors)}"
    )
    reports.report("chaos e handler publish under memory alarm", figures)
    assert lost == 0 and twice == 0, figures
    assert max(calls) <= PUBLISH_TIMEOUT + 1.0, figures
    assert errors.get("PublishOutcomeUnknown", 0) > 0, f"the alarm blocked nothing: {figures}"
