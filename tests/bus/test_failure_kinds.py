"""Issue 8 defects D and F on both brokers: readiness reflects a stalled worker, and an
unroutable follow-up event is dead-lettered at once with its routing key."""

from __future__ import annotations

import asyncio

import pytest

from bus import deadletters
from bus.errors import BrokerUnavailable, PublishOutcomeUnknown, describe
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import new_event
from schemas.events import DeploymentRequested
from tests.bus.conftest import eventually, running

pytestmark = pytest.mark.timeout(60)


async def test_unroutable_follow_up_is_dead_lettered_at_once(broker, names, middleware_for):
    router = Router("t")
    calls: list[int] = []

    @router.subscribe("deployment.requested", name="publisher")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        calls.append(ctx.attempt)
        # Nobody subscribes to deployment.started in this test: unroutable.
        await ctx.publish("deployment.started", {"app": payload.app, "version": "1"})

    async with running(Worker(broker, router.subscriptions, middleware=middleware_for())):
        ev = new_event("deployment.requested", {"app": "a", "version": "1"})
        await broker.publish(ev)
        await eventually(lambda: len(calls) == 1)
        await asyncio.sleep(0.5)  # a retry would have come back by now (base delay 0.1 s)
    assert calls == [1]
    dead = await deadletters.list_dead_letters(broker)
    assert [(d.message_id, d.kind, d.attempts) for d in dead] == [(ev.id, "rejected", 1)]
    assert "Unroutable" in dead[0].reason and "deployment.started" in dead[0].reason


async def test_readiness_reports_a_full_prefetch_window_that_does_not_move(
    broker, names, middleware_for
):
    router = Router("t")
    hang = asyncio.Event()

    @router.subscribe("deployment.requested", name="stuck")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        if payload.app == "hang":
            await hang.wait()

    worker = Worker(
        broker, router.subscriptions, middleware=middleware_for(), concurrency=2, stall_after=0.3
    )
    with pytest.raises(RuntimeError, match="not started"):
        await worker.check()
    async with running(worker):
        await worker.check()
        # One slow delivery leaves the window open: still ready.
        await broker.publish(new_event("deployment.requested", {"app": "hang", "version": "0"}))
        await eventually(lambda: worker.in_flight() == 1)
        await asyncio.sleep(0.5)
        await worker.check()
        # A full window with nothing settling for stall_after: not ready, and why.
        await broker.publish(new_event("deployment.requested", {"app": "hang", "version": "1"}))
        await eventually(lambda: worker.in_flight() == 2)
        await asyncio.sleep(0.5)
        with pytest.raises(RuntimeError, match=r"2 deliveries in flight, none settled"):
            await worker.check()
        hang.set()
        await eventually(lambda: worker.in_flight() == 0)
        await worker.check()


def test_error_messages_are_never_empty():
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(ValueError("bad")) == "bad"
    assert issubclass(PublishOutcomeUnknown, BrokerUnavailable)
