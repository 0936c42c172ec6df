"""The Redis inbox on a live Redis: claims, leases, completion with effects."""

from __future__ import annotations

import asyncio

import pytest

from bus.inbox import AlreadyDone, Busy, Claimed, Inbox, LeaseLost


async def test_claim_is_exclusive_then_done(redis_client, names):
    inbox = Inbox(redis_client, names, lease=5)
    results = await asyncio.gather(*(inbox.claim("s", "e1") for _ in range(20)))
    claims = [r for r in results if isinstance(r, Claimed)]
    assert len(claims) == 1
    assert all(isinstance(r, Busy) and 0 < r.retry_after <= 5.1 for r in results if r not in claims)
    assert await inbox.complete(claims[0]) is True
    assert isinstance(await inbox.claim("s", "e1"), AlreadyDone)
    assert isinstance(await inbox.claim("other-sub", "e1"), Claimed)  # per subscription


async def test_effects_commit_exactly_once_despite_concurrent_extensions(redis_client, names):
    inbox = Inbox(redis_client, names, lease=5)
    key = f"{names.prefix}:effects"
    for i in range(30):
        claim = await inbox.claim("s", f"e{i}")
        assert isinstance(claim, Claimed)
        # Extensions racing with the WATCH/MULTI transaction must not abort it for good.
        ext = [asyncio.create_task(inbox.extend(claim)) for _ in range(5)]
        done = await inbox.complete(claim, [lambda p, i=i: p.hincrby(key, f"e{i}", 1)])
        await asyncio.gather(*ext)
        assert done is True
    counts = await redis_client.hgetall(key)
    assert len(counts) == 30 and set(counts.values()) == {b"1"}


async def test_expired_lease_nobody_else_still_completes(redis_client, names):
    inbox = Inbox(redis_client, names, lease=0.05)
    claim = await inbox.claim("s", "late")
    assert isinstance(claim, Claimed)
    inbox._drop(claim)  # stop the keeper so the lease really expires
    await asyncio.sleep(0.2)
    effects_key = f"{names.prefix}:late"
    assert await inbox.complete(claim, [lambda p: p.set(effects_key, 1)]) is True
    assert await redis_client.get(effects_key) == b"1"
    assert await inbox.is_done("s", "late")


async def test_completion_after_another_took_over_raises_lease_lost(redis_client, names):
    inbox = Inbox(redis_client, names, lease=0.05)
    mine = await inbox.claim("s", "stolen")
    inbox._drop(mine)
    await asyncio.sleep(0.2)
    theirs = await Inbox(redis_client, names, lease=5).claim("s", "stolen")
    assert isinstance(theirs, Claimed)
    with pytest.raises(LeaseLost):
        await inbox.complete(mine, [lambda p: p.set(f"{names.prefix}:x", 1)])
    with pytest.raises(LeaseLost):
        await inbox.complete(mine)
    assert await redis_client.get(f"{names.prefix}:x") is None


async def test_already_done_does_not_reapply_effects(redis_client, names):
    a, b = Inbox(redis_client, names, lease=0.05), Inbox(redis_client, names, lease=5)
    first = await a.claim("s", "twice")
    a._drop(first)
    await asyncio.sleep(0.2)
    second = await b.claim("s", "twice")
    assert await b.complete(second) is True
    key = f"{names.prefix}:twice"
    assert await a.complete(first, [lambda p: p.incr(key)]) is False
    assert await redis_client.get(key) is None


async def test_lease_is_kept_alive_while_held(redis_client, names):
    inbox = Inbox(redis_client, names, lease=0.3)
    claim = await inbox.claim("s", "long")
    await asyncio.sleep(1.0)  # > 3 leases: only the keeper keeps it
    assert isinstance(await Inbox(redis_client, names).claim("s", "long"), Busy)
    assert await inbox.complete(claim) is True


async def test_release_lets_the_next_delivery_claim(redis_client, names):
    inbox = Inbox(redis_client, names, lease=30)
    claim = await inbox.claim("s", "retry")
    await inbox.release(claim)
    assert isinstance(await inbox.claim("s", "retry"), Claimed)


async def test_a_failed_lease_extension_is_retried_not_given_up(redis_client, names):
    """One Redis error while extending (a restart, a blip) must not let the lease lapse
    under a running handler: the keeper tries again next round."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    inbox = Inbox(redis_client, names, lease=0.6)  # extended every 0.2 s
    claim = await inbox.claim("s", "blip")
    assert isinstance(claim, Claimed)
    real_call, failures = inbox._batch.call, []

    async def flaky(op, *args):
        if op == "swap" and len(failures) < 2:
            failures.append(op)
            raise RedisConnectionError("Connection reset by peer")
        return await real_call(op, *args)

    inbox._batch.call = flaky  # type: ignore[method-assign]
    await asyncio.sleep(1.5)  # over two lease periods
    assert len(failures) == 2
    assert await redis_client.get(claim.key) == claim.value.encode(), "the lease lapsed"
    assert await inbox.complete(claim) is True
    await inbox.aclose()
