"""ScriptBatcher on a live Redis: batching across callers, errors, reconnects."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bus.inbox import _OPS
from bus.redis_batch import LuaOp, ScriptBatcher, _Pipe


def counting(batcher: ScriptBatcher) -> list[int]:
    """Record the size of every batch sent (by the writer task or the direct write)."""
    sizes: list[int] = []
    real = batcher._packed

    def packed(batch):  # type: ignore[no-untyped-def]
        sizes.append(len(batch.calls))
        return real(batch)

    batcher._packed = packed  # type: ignore[method-assign]
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
    good = [batcher.call("claim", f"{names.prefix}:e{i}", "run:a", 5000) for i in range(3)]
    bad = batcher.call("claim", f"{names.prefix}:e9", "run:a", "not-a-number")
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert len(results) == 4 and all(isinstance(r, ResponseError) for r in results)
    # an error reply leaves the connection usable
    assert int((await batcher.call("claim", f"{names.prefix}:f0", "run:b", 5000))[0]) == 1
    await batcher.aclose()


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


class GatedReads:
    """A real connection whose replies are held back until ``gate`` opens: batches
    stay in flight for as long as the test wants."""

    def __init__(self, conn) -> None:  # type: ignore[no-untyped-def]
        self._conn = conn
        self.gate = asyncio.Event()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._conn, name)

    async def read_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        await self.gate.wait()
        return await self._conn.read_response(*args, **kwargs)


async def settled(condition) -> None:  # type: ignore[no-untyped-def]
    """Wait (bounded) until ``condition()`` holds: connecting takes real I/O."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


def gated(batcher: ScriptBatcher, redis_client) -> GatedReads:  # type: ignore[no-untyped-def]
    conn = GatedReads(redis_client.connection_pool.make_connection())
    batcher._pipe = _Pipe(conn)
    return conn


async def test_a_call_never_waits_for_the_batch_in_flight(redis_client, names):
    """Pipelining: while a batch (say, of done-marks) waits for its reply, a new call
    (a claim) is written at the end of its own turn, not after that reply."""
    batcher = ScriptBatcher(redis_client, _OPS)
    sizes = counting(batcher)
    conn = gated(batcher, redis_client)
    first = asyncio.ensure_future(batcher.call("claim", f"{names.prefix}:p1", "run:a", 5000))
    while not sizes:
        await asyncio.sleep(0)
    second = asyncio.ensure_future(batcher.call("claim", f"{names.prefix}:p2", "run:a", 5000))
    await settled(lambda: len(batcher._pipe.in_flight) == 3)  # SCRIPT LOAD + 2 batches
    assert sizes == [1, 1]
    assert not first.done() and not second.done()
    conn.gate.set()
    assert [int(r[0]) for r in await asyncio.gather(first, second)] == [1, 1]
    await batcher.aclose()


async def test_calls_coalesce_while_the_pipeline_is_full(redis_client, names):
    batcher = ScriptBatcher(redis_client, _OPS, max_in_flight=2)
    sizes = counting(batcher)
    conn = gated(batcher, redis_client)
    calls = [asyncio.ensure_future(batcher.call("claim", f"{names.prefix}:c0", "a", 9))]
    await settled(lambda: len(batcher._pipe.in_flight) == 2)
    for i in range(1, 6):  # one call per turn
        calls.append(asyncio.ensure_future(batcher.call("claim", f"{names.prefix}:c{i}", "a", 9)))
        await asyncio.sleep(0)
    # SCRIPT LOAD and the first batch fill the pipeline; the rest wait, together
    assert sizes == [1]
    conn.gate.set()
    assert [int(r[0]) for r in await asyncio.gather(*calls)] == [1] * 6
    assert sizes == [1, 5]
    await batcher.aclose()


async def test_a_script_redis_does_not_know_is_loaded_and_the_batch_resent(redis_client, names):
    """NOSCRIPT (Redis restarted or its script cache was flushed while the connection
    stayed up): the batch is sent again after a SCRIPT LOAD, once."""
    ops = {**_OPS, "nop": LuaOp(f"function(key, a) return '{names.prefix}' end", 0)}
    batcher = ScriptBatcher(redis_client, ops)  # a script Redis has never seen
    batcher._pipe = _Pipe(redis_client.connection_pool.make_connection())
    batcher._pipe.load_script = False  # as if it had been loaded on this connection
    sizes = counting(batcher)
    assert await batcher.call("nop", f"{names.prefix}:n") == names.prefix.encode()
    assert sizes == [1, 1]
    # a script that can never be found fails after one reload instead of looping
    batcher.sha = "0" * 40
    with pytest.raises(NoScriptError):
        await batcher.call("nop", f"{names.prefix}:n")
    await batcher.aclose()


async def test_a_redis_that_stops_answering_fails_the_batches_in_flight(redis_url, names):
    """A hung Redis (SIGSTOP, half-open connection): the client's socket timeout bounds
    the wait for a reply; the calls fail (the inbox then holds its deliveries)."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=0.3)
    batcher = ScriptBatcher(client, _OPS)
    gated(batcher, client)  # replies never read
    with pytest.raises(RedisTimeoutError, match="no reply"):
        await batcher.call("claim", f"{names.prefix}:hung", "run:a", 5000)
    assert batcher._pipe is None  # the next call connects again
    assert int((await batcher.call("claim", f"{names.prefix}:ok", "run:a", 5000))[0]) == 1
    await batcher.aclose()
    await client.delete(f"{names.prefix}:hung", f"{names.prefix}:ok")
    await client.aclose()


async def test_a_reply_of_the_wrong_shape_fails_its_callers_instead_of_hanging(redis_client, names):
    batcher = ScriptBatcher(redis_client, _OPS)
    conn = gated(batcher, redis_client)
    real = conn.read_response
    replies = 0

    async def short_reply(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal replies
        reply = await real(*args, **kwargs)
        replies += 1
        return reply[:1] if replies == 2 else reply  # the batch's reply lost a result

    conn.read_response = short_reply  # type: ignore[method-assign]
    conn.gate.set()
    results = await asyncio.gather(
        *(batcher.call("claim", f"{names.prefix}:w{i}", "run:a", 5000) for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, ValueError) for r in results), results
    assert int((await batcher.call("claim", f"{names.prefix}:w9", "run:a", 5000))[0]) == 1
    await batcher.aclose()
