"""Result cache of read-only tools, against the live Redis."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from tests.tools.toolbox_helpers import (
    HttpishServer,
    OtherServer,
    StatusArgs,
    fast_config,
    make_toolbox,
)
from tools.errors import ToolTransientError
from tools.guards.cache import args_digest


async def test_read_only_results_are_cached_and_writes_are_not(redis_client, names) -> None:
    server = HttpishServer()
    toolbox = make_toolbox(redis_client, names, server)
    first = await toolbox.call_tool("httpish.get_status", {"service": "api"})
    again = await toolbox.call_tool("httpish.get_status", {"verbose": False, "service": "api"})
    other_args = await toolbox.call_tool("httpish.get_status", {"service": "web"})
    assert (first.n, again.n, other_args.n) == (1, 1, 2)
    assert server.calls["get_status"] == 2
    assert type(again).__name__ == "StatusResult"

    await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    assert server.calls["deploy"] == 2


async def test_cache_key_keeps_tool_name_readable(redis_client, names) -> None:
    toolbox = make_toolbox(redis_client, names)
    await toolbox.call_tool("httpish.get_status", {"service": "api"})
    canonical = json.dumps({"service": "api", "verbose": False}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    assert digest == args_digest(StatusArgs(service="api"))
    key = names.cache_key("httpish.get_status", f"g0-{digest}")  # server generation 0
    assert key.startswith(f"{names.prefix}:cache:httpish.get_status:")
    ttl_ms = await redis_client.pttl(key)
    assert 29_000 < ttl_ms <= 30_000


async def test_entries_expire_after_their_ttl(redis_client, names) -> None:
    server = HttpishServer()
    config = fast_config(**{"httpish.get_status": {"cache_ttl": 0.15}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    await toolbox.call_tool("httpish.get_status", {"service": "api"})
    await toolbox.call_tool("httpish.get_status", {"service": "api"})
    assert server.calls["get_status"] == 1
    await asyncio.sleep(0.25)
    result = await toolbox.call_tool("httpish.get_status", {"service": "api"})
    assert result.n == 2


async def test_invalidate_one_tool_keeps_the_others_cached(redis_client, names) -> None:
    server = HttpishServer()
    toolbox = make_toolbox(redis_client, names, server)
    for service in ("api", "web"):
        await toolbox.call_tool("httpish.get_status", {"service": service})
        await toolbox.call_tool("httpish.get_version", {"service": service})
    assert server.calls == {"get_status": 2, "get_version": 2}

    deleted = await toolbox.invalidate("httpish.get_status")
    assert deleted == 2
    await toolbox.call_tool("httpish.get_status", {"service": "api"})
    await toolbox.call_tool("httpish.get_version", {"service": "api"})
    # The invalidated tool hit the adapter again; the other tool stayed cached.
    assert server.calls == {"get_status": 3, "get_version": 2}

    assert await toolbox.invalidate_all() == 3
    keys = [k async for k in redis_client.scan_iter(match=names.cache_pattern("*"))]
    assert keys == []
    await toolbox.call_tool("httpish.get_version", {"service": "web"})
    assert server.calls["get_version"] == 3


async def test_cache_can_be_switched_off_per_tool(redis_client, names) -> None:
    server = HttpishServer()
    config = fast_config(**{"httpish.get_v*": {"cache": False}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    for _ in range(2):
        await toolbox.call_tool("httpish.get_version", {"service": "api"})
        await toolbox.call_tool("httpish.get_status", {"service": "api"})
    assert server.calls == {"get_version": 2, "get_status": 1}


async def test_failures_are_not_cached(redis_client, names) -> None:
    from tools.errors import ToolFailed

    server = HttpishServer()
    server.plan.append(ToolFailed("404 not found", status=404))
    toolbox = make_toolbox(redis_client, names, server)
    try:
        await toolbox.call_tool("httpish.get_status", {"service": "api"})
    except ToolFailed:
        pass
    result = await toolbox.call_tool("httpish.get_status", {"service": "api"})
    assert result.n == 2


async def test_a_write_invalidates_cached_reads_of_its_server_only(redis_client, names) -> None:
    server, other = HttpishServer(), OtherServer()
    toolbox = make_toolbox(redis_client, names, server, other)
    for _ in range(2):
        await toolbox.call_tool("httpish.get_status", {"service": "api"})
        await toolbox.call_tool("other.get_status", {"service": "api"})
    assert (server.calls["get_status"], other.calls["get_status"]) == (1, 1)
    await toolbox.call_tool("httpish.deploy", {"image_tag": "web:2"})
    fresh = await toolbox.call_tool("httpish.get_status", {"service": "api"})
    await toolbox.call_tool("other.get_status", {"service": "api"})
    assert fresh.n == 2, "a read after a write was served from the stale cache"
    assert (server.calls["get_status"], other.calls["get_status"]) == (2, 1)


async def test_a_read_racing_a_write_does_not_cache_stale_data(redis_client, names) -> None:
    server = HttpishServer()
    toolbox = make_toolbox(redis_client, names, server)
    server.plan.append(0.3)  # the read answers slowly: it saw the state before the write
    read = asyncio.create_task(toolbox.call_tool("httpish.get_status", {"service": "api"}))
    await asyncio.sleep(0.05)
    await toolbox.call_tool("httpish.deploy", {"image_tag": "web:2"})
    await read
    again = await toolbox.call_tool("httpish.get_status", {"service": "api"})
    assert server.calls["get_status"] == 2 and again.n == 2


async def test_failed_writes_invalidate_only_when_they_may_have_written(redis_client, names):
    server = HttpishServer()
    toolbox = make_toolbox(
        redis_client, names, server, config=fast_config(**{"httpish.deploy": {"retry": False}})
    )

    async def reads() -> int:
        await toolbox.call_tool("httpish.get_status", {"service": "api"})
        return server.calls["get_status"]

    assert await reads() == 1
    server.plan.append(ToolTransientError("503 from the server", status=503))
    with pytest.raises(ToolTransientError):
        await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    assert await reads() == 1  # the server answered with an error: nothing changed
    server.plan.append(ToolTransientError("connection reset"))  # no answer: ambiguous
    with pytest.raises(ToolTransientError):
        await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    assert await reads() == 2
