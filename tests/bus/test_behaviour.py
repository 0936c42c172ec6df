"""Behaviour of the messaging runtime, run on the in-memory broker AND live RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bus import deadletters
from bus.abc import Message
from bus.errors import Reject, Retry, Unroutable
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import Event, new_event
from schemas.events import DeploymentRequested, SecurityIssueFound
from schemas.names import HEADER_ATTEMPT
from tests.bus.conftest import eventually, running

pytestmark = pytest.mark.timeout(60)


def requested(app: str = "web", version: str = "1.0", **kw) -> Event:
    return new_event("deployment.requested", {"app": app, "version": version}, **kw)


async def ready_count(broker, queue: str) -> int:
    """Messages obtainable from ``queue`` now (fetched, then requeued in order).

    ``depth()`` cannot be used after a requeue: RabbitMQ 3.10's quorum queues leave
    returned messages out of queue.declare's message_count."""
    taken = []
    while (d := await broker.get(queue)) is not None:
        taken.append(d)
    for d in reversed(taken):
        await d.nack(requeue=True)
    return len(taken)


async def drain(broker, queue: str) -> list[Message]:
    out = []
    while (d := await broker.get(queue)) is not None:
        out.append(d.message)
        await d.ack()
    return out


async def test_topic_routing_wildcards(broker, names):
    patterns = {
        "exact": ["deployment.requested"],
        "star": ["deployment.*"],
        "hash": ["#"],
        "sec": ["security.#"],
        "zero": ["security.#.issue_found"],  # '#' matching zero words
        "suffix": ["*.issue_found"],
    }
    for name, pats in patterns.items():
        await broker.declare_queue(names.subscription_queue(name), pats)
    await broker.publish(requested())
    await broker.publish(new_event("security.issue_found", {"issue": "CVE-1"}))
    await broker.publish(
        new_event("security.scan_requested", {"image": "web:1", "severity": "high"})
    )
    got = {}
    for name in patterns:
        msgs = await drain(broker, names.subscription_queue(name))
        got[name] = sorted(m.routing_key for m in msgs)
    assert got == {
        "exact": ["deployment.requested"],
        "star": ["deployment.requested"],
        "hash": ["deployment.requested", "security.issue_found", "security.scan_requested"],
        "sec": ["security.issue_found", "security.scan_requested"],
        "zero": ["security.issue_found"],
        "suffix": ["security.issue_found"],
    }


async def test_unroutable_publish_is_an_error(broker, names):
    await broker.declare_queue(names.subscription_queue("only"), ["image.built"])
    with pytest.raises(Unroutable):
        await broker.publish(requested())


async def test_message_carries_envelope_and_id(broker, names):
    q = names.subscription_queue("env")
    await broker.declare_queue(q, ["deployment.requested"])
    ev = requested(traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    await broker.publish(ev)
    d = await broker.get(q)
    assert d is not None
    assert d.message.message_id == ev.id
    assert Event.from_json(d.message.body) == ev
    assert d.message.headers["traceparent"] == ev.traceparent
    await d.ack()
    assert await ready_count(broker, q) == 0


async def test_nack_requeue_sets_redelivered(broker, names):
    q = names.subscription_queue("rq")
    await broker.declare_queue(q, ["deployment.requested"])
    await broker.publish(requested())
    d1 = await broker.get(q)
    assert d1 is not None and not d1.redelivered
    await d1.nack(requeue=True)
    d2 = await broker.get(q)
    assert d2 is not None and d2.redelivered
    await d2.ack()


async def test_delayed_send_returns_once_after_delay(broker, names):
    q = names.subscription_queue("delay")
    await broker.declare_queue(q, ["deployment.requested"])
    await broker.publish(requested())
    d = await broker.get(q)
    t0 = time.monotonic()
    await broker.send(q, d.message, delay=0.3)
    await d.ack()
    assert await ready_count(broker, q) == 0
    back = None
    while back is None and time.monotonic() - t0 < 5:
        back = await broker.get(q)
        await asyncio.sleep(0.02)
    assert back is not None, "delayed message never came back"
    assert time.monotonic() - t0 >= 0.28
    await back.ack()
    await asyncio.sleep(0.5)
    assert await ready_count(broker, q) == 0, "a delayed message came back more than once"


async def test_worker_handles_and_acks(broker, names, middleware_for):
    router = Router("t")
    seen: list[DeploymentRequested] = []

    @router.subscribe("deployment.requested", name="ok")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        seen.append(payload)

    async with running(
        Worker(broker, router.subscriptions, middleware=middleware_for(), concurrency=4)
    ) as w:
        for i in range(10):
            await broker.publish(requested(version=f"1.{i}"))
        await eventually(lambda: len(seen) == 10, what="10 handled")
        await eventually(lambda: w.in_flight() == 0)
    assert sorted(p.version for p in seen) == sorted(f"1.{i}" for i in range(10))
    assert await ready_count(broker, names.subscription_queue("ok")) == 0


async def test_out_of_order_completions_settle_each_delivery_once(broker, names):
    """Handlers finish in random order (acks are coalesced on RabbitMQ): every event
    runs exactly once, none comes back, and the queue ends empty. No inbox here, so a
    wrong multiple-ack (a channel error, then redeliveries) would show as a second run."""
    import random

    router = Router("t")
    runs: dict[str, int] = {}
    rng = random.Random(7)

    @router.subscribe("deployment.requested", name="shuffled")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        await asyncio.sleep(rng.random() * 0.02)
        runs[payload.version] = runs.get(payload.version, 0) + 1

    async with running(Worker(broker, router.subscriptions, concurrency=32)) as w:
        await asyncio.gather(*(broker.publish(requested(version=f"2.{i}")) for i in range(300)))
        await eventually(lambda: len(runs) == 300, timeout=30, what="300 handled")
        await eventually(lambda: w.in_flight() == 0)
        await asyncio.sleep(0.3)  # room for any redelivery to arrive
    assert runs == {f"2.{i}": 1 for i in range(300)}
    assert await ready_count(broker, names.subscription_queue("shuffled")) == 0


async def test_retry_with_backoff_then_success(broker, names, middleware_for):
    router = Router("t")
    attempts: list[tuple[int, float]] = []

    @router.subscribe("deployment.requested", name="flaky")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        attempts.append((ctx.attempt, time.monotonic()))
        if ctx.attempt < 3:
            raise ConnectionError("tool down")

    async with running(Worker(broker, router.subscriptions, middleware=middleware_for())):
        await broker.publish(requested())
        await eventually(lambda: len(attempts) == 3, what="3 attempts")
        await asyncio.sleep(0.3)
    assert [a for a, _ in attempts] == [1, 2, 3]
    gap1 = attempts[1][1] - attempts[0][1]
    gap2 = attempts[2][1] - attempts[1][1]
    assert gap1 >= 0.08, gap1  # base 0.1s - 10% jitter
    assert gap2 >= 0.17, gap2  # 0.2s - 10% jitter: exponential
    assert broker_dead(broker) == []


def broker_dead(broker) -> list:
    return getattr(broker, "dead_letters", [])


async def test_exhausted_retries_are_dead_lettered_with_reason(broker, names, middleware_for):
    router = Router("t")
    calls = []

    @router.subscribe("deployment.requested", name="broken")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        calls.append(ctx.attempt)
        raise Retry("kubernetes unavailable")

    async with running(Worker(broker, router.subscriptions, middleware=middleware_for())):
        ev = requested()
        await broker.publish(ev)
        await eventually(lambda: len(calls) == 3, what="3 attempts")
        await asyncio.sleep(0.3)
    dead = await deadletters.list_dead_letters(broker)
    assert len(dead) == 1
    d = dead[0]
    assert d.message_id == ev.id and d.kind == "exhausted"
    assert "kubernetes unavailable" in d.reason and "3 attempts" in d.reason
    assert d.queue == names.subscription_queue("broken") and d.attempts == 3
    # listing leaves it in place
    assert len(await deadletters.list_dead_letters(broker)) == 1


async def test_reject_dead_letters_at_once(broker, names, middleware_for):
    router = Router("t")
    calls = []

    @router.subscribe("deployment.requested", name="rejecting")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        calls.append(ctx.attempt)
        raise Reject("manifest is malformed")

    async with running(Worker(broker, router.subscriptions, middleware=middleware_for())):
        await broker.publish(requested())
        await eventually(lambda: len(calls) == 1)
        await asyncio.sleep(0.3)
    assert calls == [1]
    dead = await deadletters.list_dead_letters(broker)
    assert [(d.kind, d.reason, d.attempts) for d in dead] == [
        ("rejected", "Reject: manifest is malformed", 1)
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json at all", "invalid event envelope"),
        (
            json.dumps({"id": "x", "source": "s", "type": "deployment.requested"}).encode(),
            "data.app",
        ),
        (
            new_event("deployment.requested", {"app": "web", "version": "1"})
            .model_copy(update={"data": {"app": "web", "version": 3}})
            .to_json(),
            "data.version",
        ),
        (
            new_event("deployment.requested", {"app": "web", "version": "1"})
            .model_copy(update={"data": {"app": "web", "version": "1", "colour": "red"}})
            .to_json(),
            "data.colour",
        ),
    ],
)
async def test_invalid_events_dead_lettered_without_running(
    broker, names, middleware_for, body, field
):
    router = Router("t")
    calls = []

    @router.subscribe("deployment.requested", name="strict")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        calls.append(payload)

    async with running(Worker(broker, router.subscriptions, middleware=middleware_for())) as w:
        q = names.subscription_queue("strict")
        await broker.send(
            q, Message(body=body, routing_key="deployment.requested", message_id="bad-1")
        )
        await eventually(lambda: w.in_flight() == 0 and True, 2)
        await asyncio.sleep(0.3)
    assert calls == []
    dead = await deadletters.list_dead_letters(broker)
    assert len(dead) == 1 and dead[0].kind == "invalid"
    assert field in dead[0].reason
    assert dead[0].queue == q


async def test_unexpected_payload_type_dead_lettered(broker, names, middleware_for):
    router = Router("t")

    @router.subscribe("#", name="typed")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        pass

    async with running(Worker(broker, router.subscriptions, middleware=middleware_for())):
        await broker.publish(new_event("security.issue_found", {"issue": "x"}))
        await asyncio.sleep(0.5)
    dead = await deadletters.list_dead_letters(broker)
    assert [d.kind for d in dead] == ["unexpected_type"]
    assert "SecurityIssueFound" in dead[0].reason


async def test_duplicate_delivery_runs_once(broker, names, middleware_for):
    router = Router("t")
    runs = []

    @router.subscribe("deployment.requested", name="dup")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        runs.append(ctx.event.id)

    async with running(Worker(broker, router.subscriptions, middleware=middleware_for())):
        ev = requested()
        await broker.publish(ev)
        await eventually(lambda: len(runs) == 1)
        await broker.publish(ev)  # the same event again, e.g. an upstream retry
        await broker.publish(ev)
        await asyncio.sleep(0.5)
    assert runs == [ev.id]
    assert await ready_count(broker, names.subscription_queue("dup")) == 0


async def test_concurrent_deliveries_never_both_run(make_broker, names, middleware_for):
    """Two workers (separate connections) receive the same event at the same time."""
    b1, b2 = await make_broker(), await make_broker()
    running = 0
    overlap = 0
    runs = []

    def make_router() -> Router:
        router = Router("t")

        @router.subscribe("deployment.requested", name="race")
        async def handle(payload: DeploymentRequested, ctx) -> None:
            nonlocal running, overlap
            running += 1
            overlap = max(overlap, running)
            await asyncio.sleep(0.4)
            runs.append(ctx.event.id)
            running -= 1

        return router

    w1 = Worker(b1, make_router().subscriptions, middleware=middleware_for(), concurrency=1)
    w2 = Worker(b2, make_router().subscriptions, middleware=middleware_for(), concurrency=1)
    await w1.start()
    await w2.start()
    events = [requested(version=str(i)) for i in range(3)]
    try:
        for ev in events:
            await b1.publish(ev)
            await b1.publish(ev)
        await eventually(lambda: len(runs) == 3, 15, "3 distinct runs")
        await asyncio.sleep(1.0)
    finally:
        await w1.stop()
        await w2.stop()
    assert sorted(runs) == sorted(e.id for e in events)
    assert await ready_count(b1, names.subscription_queue("race")) == 0


async def test_child_events_get_deterministic_ids(broker, names, middleware_for):
    router = Router("t")
    sink = Router("sink")
    children: list[Event] = []
    runs = 0

    @router.subscribe("deployment.requested", name="parent")
    async def parent(payload: DeploymentRequested, ctx) -> None:
        nonlocal runs
        runs += 1
        await ctx.publish("security.issue_found", SecurityIssueFound(issue="a", app=payload.app))
        await ctx.publish("security.issue_found", SecurityIssueFound(issue="b", app=payload.app))
        if runs == 1:
            raise Retry("fail after publishing, to force a republish", delay=0.05)

    @sink.subscribe("security.issue_found", name="child-sink")
    async def collect(event: Event, ctx) -> None:
        children.append(event)

    async with running(
        Worker(broker, router.subscriptions + sink.subscriptions, middleware=middleware_for())
    ):
        ev = requested(traceparent="00-" + "c" * 32 + "-" + "d" * 16 + "-01")
        await broker.publish(ev)
        await eventually(lambda: runs == 2, what="parent retried")
        await asyncio.sleep(0.5)
    # 4 publishes (2 per run) but the sink's inbox keeps 2: same ids on the retry.
    assert len(children) == 2
    assert len({c.id for c in children}) == 2
    for c in children:
        assert c.causationid == ev.id and c.correlationid == ev.correlationid
        assert c.traceparent.split("-")[1] == "c" * 32
        assert c.traceparent.split("-")[2] != "d" * 16


async def test_graceful_stop_drains_in_flight(broker, names, middleware_for):
    router = Router("t")
    finished = []
    started = []

    @router.subscribe("deployment.requested", name="slow")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        started.append(1)
        await asyncio.sleep(0.5)
        finished.append(payload.version)

    w = Worker(
        broker, router.subscriptions, middleware=middleware_for(), concurrency=5, grace_period=5
    )
    await w.start()
    for i in range(5):
        await broker.publish(requested(version=str(i)))
    await eventually(lambda: len(started) == 5)
    await w.stop()
    assert sorted(finished) == [str(i) for i in range(5)]
    assert await ready_count(broker, names.subscription_queue("slow")) == 0


async def test_grace_period_over_requeues(broker, names, middleware_for):
    router = Router("t")
    started = []

    @router.subscribe("deployment.requested", name="stuck")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        started.append(1)
        await asyncio.sleep(30)

    w = Worker(broker, router.subscriptions, middleware=middleware_for(), grace_period=0.2)
    await w.start()
    await broker.publish(requested())
    await eventually(lambda: len(started) == 1)
    await w.stop()
    q = names.subscription_queue("stuck")
    deadline = time.monotonic() + 5
    while await ready_count(broker, q) != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await ready_count(broker, q) == 1, "the cancelled message was not requeued"


async def test_redis_down_fails_closed(broker, names, middleware_for):
    import redis.asyncio as aioredis

    dead_redis = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    router = Router("t")
    runs = []

    @router.subscribe("deployment.requested", name="closed")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        runs.append(1)

    w = Worker(
        broker, router.subscriptions, middleware=middleware_for(client=dead_redis), grace_period=0.5
    )
    await w.start()
    await broker.publish(requested())
    await asyncio.sleep(1.0)
    await w.stop()
    await dead_redis.aclose()
    assert runs == [], "handler ran without its idempotency check"
    q = names.subscription_queue("closed")
    deadline = time.monotonic() + 5
    while await ready_count(broker, q) != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await ready_count(broker, q) == 1, "message lost while Redis was down"
    assert broker_dead(broker) == []

    # Redis back: the same message is processed.
    w2 = Worker(broker, router.subscriptions, middleware=middleware_for())
    await w2.start()
    try:
        await eventually(lambda: runs == [1])
    finally:
        await w2.stop()


async def test_replay_and_purge_dead_letters(broker, names, middleware_for):
    router = Router("t")
    fail = True
    ok = []

    @router.subscribe("deployment.requested", name="replayable")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        if fail:
            raise Reject("not yet")
        ok.append((payload.version, ctx.attempt))

    async with running(Worker(broker, router.subscriptions, middleware=middleware_for())):
        for v in ("1", "2"):
            await broker.publish(requested(version=v))
        await eventually(lambda: len(broker_dead(broker)) == 2 or broker_kind_is_rabbit(broker))
        await asyncio.sleep(0.5)
        assert len(await deadletters.list_dead_letters(broker)) == 2
        fail = False
        replayed = await deadletters.replay(broker, select=lambda d: True)
        assert len(replayed) == 2
        await eventually(lambda: len(ok) == 2, what="replayed events handled")
    assert sorted(ok) == [("1", 1), ("2", 1)]
    assert await deadletters.list_dead_letters(broker) == []
    await broker.publish(requested(version="3"))  # goes to the queue; no worker now
    dl_msg = Message(body=b"{}", routing_key="x.y", message_id="m")
    await broker.dead_letter(dl_msg)
    await asyncio.sleep(0.2)
    assert await deadletters.purge(broker) == 1
    assert await deadletters.list_dead_letters(broker) == []


def broker_kind_is_rabbit(broker) -> bool:
    return not hasattr(broker, "dead_letters")


async def test_attempt_header_counts_up(broker, names, middleware_for):
    router = Router("t")
    headers_seen = []

    @router.subscribe("deployment.requested", name="hdr")
    async def handle(event: Event, ctx) -> None:
        headers_seen.append(ctx.attempt)
        if ctx.attempt < 2:
            raise RuntimeError("once")

    async with running(Worker(broker, router.subscriptions, middleware=middleware_for())):
        await broker.publish(requested())
        await eventually(lambda: headers_seen == [1, 2])
    assert HEADER_ATTEMPT == "x-codebus-attempt"


async def test_tap_sees_matching_events_without_touching_queues(broker, names):
    q = names.subscription_queue("owner")
    await broker.declare_queue(q, ["#"])
    seen = []

    async def on(d):
        seen.append(d.message.routing_key)
        await d.ack()

    tap = await broker.tap(["deployment.*"], on)
    await broker.publish(requested())
    await broker.publish(new_event("security.issue_found", {"issue": "x"}))
    await eventually(lambda: seen == ["deployment.requested"])
    await tap.cancel()
    await tap.close()
    got = sorted(m.routing_key for m in await drain(broker, q))
    assert got == ["deployment.requested", "security.issue_found"]
    await asyncio.sleep(0.1)
    assert seen == ["deployment.requested"]


async def test_memory_broker_close_returns_unsettled_without_redelivering(names):
    from bus.memory import MemoryBroker

    broker = MemoryBroker(names)
    await broker.connect()
    q = names.subscription_queue("closing")
    await broker.declare_queue(q, ["#"])
    calls = []

    async def on(delivery) -> None:
        calls.append(delivery.message.message_id)
        await asyncio.sleep(10)

    await broker.consume(q, on, prefetch=1)
    await broker.send(q, Message(body=b"{}", routing_key="x.y", message_id="m1"))
    await eventually(lambda: calls == ["m1"])
    await broker.close()
    await asyncio.sleep(0.05)
    assert calls == ["m1"], "close() handed the message to a consumer being closed"
    assert await broker.depth(q) == 1
