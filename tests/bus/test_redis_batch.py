"""ScriptBatcher on a live Redis: batching across callers, errors, reconnects."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from bus.inbox import _OPS
from bus.redis_batch import ScriptBatcher


def counting(batcher: ScriptBatcher) -> list[int]:
    """Record the size of every batch sent."""
    sizes: list[int] = []
    real = batcher._execute

    async def execute(batch):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        await real(batch)

    batcher._execute = execute  # type: ignore[method-assign]
    return sizes


async def test_calls_of_one_turn_share_one_round_trip(redis_client, names):
    batcher = ScriptBatcher(redis_client, _OPS)
    sizes = counting(batcher)
    keys = [f"{names.prefix}:b{i}" for i in range(40)]
    results = await asyncio.gather(*(batcher.call("claim", k, "run:a", 5000) for k in keys))
    assert [int(r[0]) for r in results] == [1] * 40
    assert sizes == [40]
    # the second claim of a key sees the first (and the Lua ops run in call order)
    again = await asyncio.gather(*(batcher.call("claim", k, "run:b", 5000) for k in keys[:3]))
    assert [int(r[0]) for r in again] == [3, 3, 3]
    await batcher.aclose()


async def test_calls_made_while_a_batch_is_in_flight_go_in_the_next(redis_client, names):
    batcher = ScriptBatcher(redis_client, _OPS)
    sizes = counting(batcher)

    async def late(i: int):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)  # one turn later: the first batch is already in flight
        return await batcher.call("claim", f"{names.prefix}:late{i}", "run:a", 5000)

    first = [batcher.call("claim", f"{names.prefix}:early{i}", "run:a", 5000) for i in range(5)]
    await asyncio.gather(*first, *(late(i) for i in range(7)))
    assert sizes == [5, 7]
    await batcher.aclose()


async def test_an_error_reaches_every_caller_of_the_batch(redis_client, names):
    batcher = ScriptBatcher(redis_client, _OPS)

    async def broken(blob: str):  # type: ignore[no-untyped-def]
        raise RedisConnectionError("Connection reset by peer")

    batcher._evalsha = broken  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(batcher.call("claim", f"{names.prefix}:e{i}", "run:a", 5000) for i in range(4)),
        return_exceptions=True,
    )
    assert len(results) == 4 and all(isinstance(r, RedisConnectionError) for r in results)


async def test_a_killed_connection_is_replaced(redis_client, names):
    """The batcher's own connection dies (Redis restart, CLIENT KILL): the batch in
    flight fails, the next one connects again."""
    batcher = ScriptBatcher(redis_client, _OPS)
    assert int((await batcher.call("claim", f"{names.prefix}:k1", "run:a", 5000))[0]) == 1
    conn = batcher._conn
    await conn.send_command("CLIENT", "ID")
    old_id = await conn.read_response()
    assert await redis_client.client_kill_filter(_id=old_id) == 1
    outcome = None
    for _ in range(3):  # the first call after the kill may fail; a later one must not
        try:
            outcome = await batcher.call("claim", f"{names.prefix}:k2", "run:a", 5000)
            break
        except RedisConnectionError:
            continue
    assert outcome is not None and int(outcome[0]) == 1
    await batcher._conn.send_command("CLIENT", "ID")
    assert await batcher._conn.read_response() != old_id
    await batcher.aclose()


async def test_unit_separator_in_a_key_is_refused(redis_client):
    batcher = ScriptBatcher(redis_client, _OPS)
    with pytest.raises(ValueError, match="unit separator"):
        await batcher.call("claim", "bad\x1fkey", "run:a", 5000)
    with pytest.raises(TypeError, match="takes 2 arguments"):
        await batcher.call("claim", "k", "run:a")
