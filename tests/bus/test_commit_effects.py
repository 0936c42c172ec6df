"""Defect B of issue 8: a ``ctx.on_commit`` effect that cannot be applied is a failed
attempt (retry policy, then dead letter with the reason), never partially committed,
never acked without its effects, never mistaken for "Redis unavailable", and never
leaves a delivery unsettled."""

from __future__ import annotations

import asyncio

import pytest

from bus import deadletters
from bus.effects import COMMITTED, CommitScript, stage
from bus.errors import EffectFailed
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import new_event
from schemas.events import DeploymentRequested
from tests.bus.conftest import eventually, running

pytestmark = pytest.mark.timeout(90)

GOOD = 40


def ledger(names) -> str:
    return f"{names.prefix}:ledger"


def wrong(names) -> str:
    return f"{names.prefix}:a-string"


@pytest.mark.parametrize("bad", ["wrongtype", "dataerror", "raises"])
async def test_failing_effects_are_dead_lettered_and_good_events_flow(
    bad, broker, names, middleware_for, redis_client
):
    await redis_client.set(wrong(names), "not a hash")
    router = Router("t")
    runs: dict[str, int] = {}

    @router.subscribe("deployment.requested", name="effects")
    async def handle(payload: DeploymentRequested, ctx) -> None:
        runs[payload.version] = runs.get(payload.version, 0) + 1
        ctx.on_commit(lambda pipe: pipe.hincrby(ledger(names), payload.version, 1))
        if payload.app == "bad":
            if bad == "wrongtype":  # fails inside Redis, after the first command ran
                ctx.on_commit(lambda pipe: pipe.hset(wrong(names), "f", "v"))
            elif bad == "dataerror":  # redis-py cannot encode None
                ctx.on_commit(lambda pipe: pipe.hset(ledger(names), "x", None))
            else:  # a bug in the code building the effect
                ctx.on_commit(lambda pipe: pipe.hset(ledger(names), "x", 1 / 0))

    # concurrency 4 with 4 bad events: a leaked prefetch slot per bad event would stall
    # the worker before the good events are through.
    worker = Worker(broker, router.subscriptions, middleware=middleware_for(), concurrency=4)
    bad_events = [
        new_event("deployment.requested", {"app": "bad", "version": f"b{i}"}) for i in range(4)
    ]
    good_events = [
        new_event("deployment.requested", {"app": "good", "version": f"g{i}"}) for i in range(GOOD)
    ]
    async with running(worker):
        for e in bad_events + good_events:
            await broker.publish(e)

        async def settled() -> int:
            return len(await deadletters.list_dead_letters(broker))

        deadline = asyncio.get_running_loop().time() + 30
        while True:
            got = await redis_client.hgetall(ledger(names))
            dead = await settled()
            if (len(got) >= GOOD and dead == len(bad_events)) or (
                asyncio.get_running_loop().time() > deadline
            ):
                break
            await asyncio.sleep(0.1)
        await eventually(lambda: worker.in_flight() == 0, what="nothing in flight")
    got = {k.decode(): int(v) for k, v in (await redis_client.hgetall(ledger(names))).items()}
    # Good events applied exactly once; nothing of a bad event's commit was written.
    assert got == {f"g{i}": 1 for i in range(GOOD)}
    assert await redis_client.get(wrong(names)) == b"not a hash"
    for e in bad_events:
        key = names.inbox_key("effects", e.id)
        assert await redis_client.get(key) is None, "a failed commit left a claim or done-mark"
    dead = await deadletters.list_dead_letters(broker)
    assert sorted(d.message_id for d in dead) == sorted(e.id for e in bad_events)
    for d in dead:
        if bad == "wrongtype":  # may succeed once the data is repaired: retried first
            assert d.kind == "exhausted" and d.attempts == 3, d
            assert "WRONGTYPE" in d.reason and "HSET" in d.reason, d.reason
        else:  # the effect itself is broken: dead-lettered at once
            assert d.kind == "rejected" and d.attempts == 1, d
            assert "EffectFailed" in d.reason, d.reason
            assert ("NoneType" if bad == "dataerror" else "ZeroDivisionError") in d.reason


async def test_commit_is_all_or_nothing_when_a_later_command_fails(redis_client, names):
    script = CommitScript(redis_client)
    key, claim = names.inbox_key("s", "e"), "run:me"
    await redis_client.set(key, claim)
    await redis_client.hset(ledger(names), mapping={"kept": 5})
    await redis_client.set(f"{names.prefix}:n", 7, px=60_000)
    await redis_client.set(wrong(names), "x")
    effects = [
        lambda p: p.hincrby(ledger(names), "kept", 1),
        lambda p: p.hset(ledger(names), "new", 1),
        lambda p: p.incr(f"{names.prefix}:n"),
        lambda p: p.set(f"{names.prefix}:created", 1),
        lambda p: p.lpush(wrong(names), "boom"),
    ]
    with pytest.raises(EffectFailed) as err:
        await script.apply(key, claim, 60_000, stage(redis_client, effects, "e"), "e")
    assert not err.value.permanent and "command 5 (LPUSH)" in str(err.value)
    assert await redis_client.hgetall(ledger(names)) == {b"kept": b"5"}
    assert await redis_client.get(f"{names.prefix}:n") == b"7"
    assert 0 < await redis_client.pttl(f"{names.prefix}:n") <= 60_000
    assert await redis_client.exists(f"{names.prefix}:created") == 0
    assert await redis_client.get(key) == claim.encode()  # not done, still claimed
    # The same commands without the failing one commit together with the done-mark.
    ok = await script.apply(key, claim, 60_000, stage(redis_client, effects[:4], "e"), "e")
    assert ok == COMMITTED
    assert await redis_client.get(key) == b"done"
    assert await redis_client.hgetall(ledger(names)) == {b"kept": b"6", b"new": b"1"}
