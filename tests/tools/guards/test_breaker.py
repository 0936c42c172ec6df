"""Circuit breaker per tool server, state shared in the live Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from tests.tools.toolbox_helpers import HttpishServer, OtherServer, fast_config, make_toolbox
from tools.errors import CircuitOpen, ToolFailed, ToolTimeout, ToolTransientError
from tools.guards.breaker import BreakerStore

# One failure = one call: retries would multiply the adapter calls per verdict.
NO_RETRY = {"httpish.*": {"retry": False}}
DEPLOY = {"image_tag": "app:1"}


async def _fail_times(toolbox, server: HttpishServer, n: int, error=None) -> None:
    for i in range(n):
        server.plan.append(error or ToolTransientError(f"503 #{i}", status=503))
        with pytest.raises(type(error) if error else ToolTransientError):
            await toolbox.call_tool("httpish.deploy", DEPLOY)


async def _redis_now_ms(client) -> int:
    seconds, micros = await client.time()
    return seconds * 1000 + micros // 1000


async def test_opens_after_consecutive_failures_and_rejects_without_calling(
    redis_client, names, monkeypatch
) -> None:
    server, other = HttpishServer(), OtherServer()
    config = fast_config(**{"httpish.*": {"retry": False, "breaker_reset_timeout": 5}})
    toolbox = make_toolbox(redis_client, names, server, other, config=config)
    await _fail_times(toolbox, server, 2)
    state = await BreakerStore(redis_client, names).status("httpish")
    assert (state.state, state.failures) == ("closed", 2)
    await _fail_times(toolbox, server, 1)

    # Local clocks are irrelevant: the breaker reads Redis TIME only.
    monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)
    with pytest.raises(CircuitOpen) as err:
        await toolbox.call_tool("httpish.get_status", {"service": "a"})
    assert server.total == 3  # rejected without reaching the adapter
    assert err.value.tool == "httpish.get_status"
    raw = await redis_client.hgetall(names.breaker_key("httpish"))
    assert raw[b"state"] == b"open" and raw[b"failures"] == b"3"
    remaining_ms = int(raw[b"open_until"]) - await _redis_now_ms(redis_client)
    assert 0 < err.value.retry_after <= 5.0
    assert abs(err.value.retry_after * 1000 - remaining_ms) < 100

    # Another server's breaker is independent.
    assert (await toolbox.call_tool("other.deploy", DEPLOY)).deployed == "app:1"


async def test_success_resets_the_consecutive_count(redis_client, names) -> None:
    server = HttpishServer()
    toolbox = make_toolbox(redis_client, names, server, config=fast_config(**NO_RETRY))
    for _ in range(3):
        await _fail_times(toolbox, server, 2)
        await toolbox.call_tool("httpish.deploy", DEPLOY)
    state = await BreakerStore(redis_client, names).status("httpish")
    assert (state.state, state.failures) == ("closed", 0)


async def test_permanent_failures_do_not_count(redis_client, names) -> None:
    server = HttpishServer()
    toolbox = make_toolbox(redis_client, names, server, config=fast_config(**NO_RETRY))
    await _fail_times(toolbox, server, 2)
    await _fail_times(toolbox, server, 5, ToolFailed("404", status=404))
    await _fail_times(toolbox, server, 2)
    state = await BreakerStore(redis_client, names).status("httpish")
    # A 4xx proves the server is up: it resets the streak instead of extending it.
    assert (state.state, state.failures) == ("closed", 2)


async def test_timeouts_count_as_failures(redis_client, names) -> None:
    server = HttpishServer()
    server.delay = 1.0
    config = fast_config(**{"httpish.*": {"retry": False, "timeout": 0.02}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    for _ in range(3):
        with pytest.raises(ToolTimeout):
            await toolbox.call_tool("httpish.deploy", DEPLOY)
    with pytest.raises(CircuitOpen):
        await toolbox.call_tool("httpish.deploy", DEPLOY)


async def test_failures_outside_the_window_restart_the_count(redis_client, names) -> None:
    server = HttpishServer()
    config = fast_config(**{"httpish.*": {"retry": False, "breaker_window": 0.25}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    for _ in range(3):
        await _fail_times(toolbox, server, 1)
        await asyncio.sleep(0.3)
    state = await BreakerStore(redis_client, names).status("httpish")
    assert (state.state, state.failures) == ("closed", 1)
    await _fail_times(toolbox, server, 3)  # a fresh streak, close together
    assert (await BreakerStore(redis_client, names).status("httpish")).state == "open"


async def _open_and_wait(redis_client, names) -> None:
    toolbox = make_toolbox(redis_client, names, config=fast_config(**NO_RETRY))
    server = toolbox.registry.servers[0]
    await _fail_times(toolbox, server, 3)
    with pytest.raises(CircuitOpen):
        await toolbox.call_tool("httpish.deploy", DEPLOY)
    await asyncio.sleep(0.35)  # reset_timeout is 0.3 s


@pytest.mark.parametrize("probe_succeeds", [True, False])
async def test_half_open_lets_exactly_one_probe_through_across_workers(
    redis_client, redis_url, names, probe_succeeds
) -> None:
    await _open_and_wait(redis_client, names)
    # Five workers: separate Toolbox instances, adapters and Redis connections.
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(5)]
    servers = [HttpishServer() for _ in range(5)]
    for server in servers:
        # A slow probe: every other caller arrives while it is still in flight.
        server.plan.append(0.5 if probe_succeeds else ToolTransientError("still down"))
    # A failed probe re-opens for this (long) reset timeout, so late callers still see it.
    config = fast_config(**{"httpish.*": {"retry": False, "breaker_reset_timeout": 5}})
    workers = [
        make_toolbox(client, names, server, config=config)
        for client, server in zip(clients, servers, strict=True)
    ]
    try:
        outcomes = await asyncio.gather(
            *(workers[i % 5].call_tool("httpish.deploy", DEPLOY) for i in range(20)),
            return_exceptions=True,
        )
        probes = [o for o in outcomes if not isinstance(o, CircuitOpen)]
        rejected = [o for o in outcomes if isinstance(o, CircuitOpen)]
        assert sum(s.total for s in servers) == 1
        assert len(probes) == 1 and len(rejected) == 19
        status = await BreakerStore(redis_client, names).status("httpish")
        if probe_succeeds:
            assert probes[0].deployed == "app:1"
            assert (status.state, status.failures) == ("closed", 0)
            results = await asyncio.gather(
                *(w.call_tool("httpish.deploy", DEPLOY) for w in workers)
            )
            assert [r.deployed for r in results] == ["app:1"] * 5
        else:
            assert isinstance(probes[0], ToolTransientError)
            assert status.state == "open"
            assert 4 < status.retry_after <= 5  # a fresh reset_timeout from the probe
            with pytest.raises(CircuitOpen):
                await workers[0].call_tool("httpish.deploy", DEPLOY)
            assert sum(s.total for s in servers) == 1
    finally:
        for client in clients:
            await client.aclose()


async def test_a_probe_that_never_reports_back_loses_its_lease(redis_client, names) -> None:
    await _open_and_wait(redis_client, names)
    config = fast_config(
        **{"httpish.*": {"retry": False, "timeout": None, "breaker_probe_lease": 0.3}}
    )
    stuck, fresh = HttpishServer(), HttpishServer()
    stuck.delay = 30.0  # a worker that hangs (or died) in the middle of its probe
    hung = asyncio.create_task(
        make_toolbox(redis_client, names, stuck, config=config).call_tool("httpish.deploy", DEPLOY)
    )
    while not stuck.in_flight:  # until the stuck worker holds the probe lease
        await asyncio.sleep(0.005)
    other = make_toolbox(redis_client, names, fresh, config=config)
    with pytest.raises(CircuitOpen) as err:
        await other.call_tool("httpish.deploy", DEPLOY)
    assert 0 < err.value.retry_after <= 0.3
    await asyncio.sleep(err.value.retry_after + 0.02)
    assert (await other.call_tool("httpish.deploy", DEPLOY)).deployed == "app:1"
    assert (await BreakerStore(redis_client, names).status("httpish")).state == "closed"
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung


async def test_a_cancelled_probe_gives_its_lease_back(redis_client, names) -> None:
    await _open_and_wait(redis_client, names)
    slow = HttpishServer()
    slow.delay = 30.0
    toolbox = make_toolbox(redis_client, names, slow, config=fast_config(**NO_RETRY))
    probe = asyncio.create_task(toolbox.call_tool("httpish.deploy", DEPLOY))
    while not slow.in_flight:
        await asyncio.sleep(0.005)
    assert await redis_client.exists(names.breaker_probe_key("httpish"))
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert not await redis_client.exists(names.breaker_probe_key("httpish"))
    status = await BreakerStore(redis_client, names).status("httpish")
    assert status.state == "half-open" and not status.probing


async def test_breaker_can_be_switched_off(redis_client, names) -> None:
    server = HttpishServer()
    config = fast_config(**{"httpish.*": {"retry": False, "breaker": False}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    await _fail_times(toolbox, server, 6)
    assert (await toolbox.call_tool("httpish.deploy", DEPLOY)).deployed == "app:1"
    assert not await redis_client.exists(names.breaker_key("httpish"))


async def test_cache_sits_outside_the_breaker_and_retry_inside(redis_client, names) -> None:
    server = HttpishServer()
    config = fast_config(**{"httpish.*": {"retry_attempts": 3, "breaker_reset_timeout": 5}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    cached = await toolbox.call_tool("httpish.get_status", {"service": "a"})
    # One call = three attempts (retry is inside) = one breaker failure (of three).
    server.plan.extend([ToolTransientError("503", status=503)] * 3)
    with pytest.raises(ToolTransientError):
        await toolbox.call_tool("httpish.deploy", DEPLOY)
    assert server.calls["deploy"] == 3
    assert (await BreakerStore(redis_client, names).status("httpish")).failures == 1
    server.plan.extend([ToolTransientError("503", status=503)] * 6)
    for _ in range(2):
        with pytest.raises(ToolTransientError):
            await toolbox.call_tool("httpish.deploy", DEPLOY)
    with pytest.raises(CircuitOpen):
        await toolbox.call_tool("httpish.get_status", {"service": "b"})
    # A cached read is still served while the server's circuit is open.
    assert await toolbox.call_tool("httpish.get_status", {"service": "a"}) == cached
