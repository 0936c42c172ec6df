"""``tools`` and ``breaker`` CLI groups, with click's CliRunner against the live Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import click
import pytest
import redis
import redis.asyncio as aioredis
from click.testing import CliRunner

from schemas.names import Names
from tests.tools.toolbox_helpers import HttpishServer, OtherServer, fast_config, make_toolbox
from tools.config import ToolboxConfig
from tools.errors import ToolTransientError
from tools.toolbox import Toolbox
from workers.cli_tools import breaker_group, tools_group


@click.group()
def root() -> None:
    """Stand-in for the main CLI, which wires the groups the same way."""


root.add_command(tools_group)
root.add_command(breaker_group)


@pytest.fixture
def cleanup(redis_url: str, names: Names) -> Iterator[None]:
    """Delete this test's keys afterwards (the tests here are synchronous)."""
    yield
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{names.prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _trip(redis_url: str, names: Names, failures: int, server_cls=HttpishServer) -> None:
    async def run() -> None:
        client = aioredis.Redis.from_url(redis_url)
        server = server_cls()
        config = fast_config(**{"*": {"retry": False, "breaker_reset_timeout": 60}})
        toolbox = make_toolbox(client, names, server, config=config)
        for _ in range(failures):
            server.plan.append(ToolTransientError("503"))
            try:
                await toolbox.call_tool(f"{server.name}.deploy", {"image_tag": "a"})
            except ToolTransientError:
                pass
        await client.aclose()

    asyncio.run(run())


def test_tools_list_prints_names_and_descriptions() -> None:
    def factory():
        # No Redis needed to list tools: cache and breaker off.
        config = ToolboxConfig.model_validate({"defaults": {"cache": False, "breaker": False}})
        return Toolbox([HttpishServer()], config=config)

    result = CliRunner().invoke(root, ["tools", "list"], obj={"toolbox_factory": factory})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "httpish.deploy",
        "rw",
        "Deploy",
        "an",
        "image",
        "(writes;",
        "never",
        "cached).",
    ]
    assert lines[1].startswith("httpish.get_status") and " ro " in lines[1]

    async def async_factory():
        return factory()

    result = CliRunner().invoke(
        root, ["tools", "list", "--json"], obj={"toolbox_factory": async_factory}
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert [t["name"] for t in payload] == [
        "httpish.deploy",
        "httpish.get_status",
        "httpish.get_version",
    ]
    assert payload[0]["args_schema"]["required"] == ["image_tag"]


def test_tools_list_without_factory_is_a_usage_error() -> None:
    result = CliRunner().invoke(root, ["tools", "list"], obj={})
    assert result.exit_code == 2
    assert "toolbox_factory" in result.output


def test_breaker_status_and_reset(redis_url, names, cleanup) -> None:
    obj = {"redis_url": redis_url, "names": names}
    result = CliRunner().invoke(root, ["breaker", "status"], obj=obj)
    assert result.exit_code == 0, result.output
    assert "no circuit-breaker state" in result.output

    _trip(redis_url, names, 3)  # threshold 3: open
    _trip(redis_url, names, 1, OtherServer)  # one failure: still closed
    result = CliRunner().invoke(root, ["breaker", "status"], obj=obj)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[1:]}
    assert rows["httpish"][1:3] == ["open", "3"]
    assert rows["other"][1:] == ["closed", "1", "-", "-"]
    opened_for = float(rows["httpish"][3].rstrip("s"))
    retry_after = float(rows["httpish"][4].rstrip("s"))
    assert 0 <= opened_for < 5 and 55 < retry_after <= 60

    as_json = CliRunner().invoke(root, ["breaker", "status", "--json"], obj=obj)
    states = {r["server"]: r["state"] for r in json.loads(as_json.output)}
    assert states == {"httpish": "open", "other": "closed"}

    result = CliRunner().invoke(root, ["breaker", "reset", "httpish"], obj=obj)
    assert result.exit_code == 0 and "reset" in result.output
    client = redis.Redis.from_url(redis_url)
    assert not client.exists(names.breaker_key("httpish"))
    client.close()
    result = CliRunner().invoke(root, ["breaker", "status"], obj=obj)
    assert "httpish" not in result.output and "other" in result.output
    result = CliRunner().invoke(root, ["breaker", "reset", "httpish"], obj=obj)
    assert "had no state" in result.output


def test_tools_invalidate_drops_only_the_named_tool(redis_url, names, cleanup) -> None:
    server = HttpishServer()

    async def fill() -> None:
        client = aioredis.Redis.from_url(redis_url)
        toolbox = make_toolbox(client, names, server)
        for tool_name in ("httpish.get_status", "httpish.get_version"):
            await toolbox.call_tool(tool_name, {"service": "a"})
            await toolbox.call_tool(tool_name, {"service": "b"})
        await client.aclose()

    asyncio.run(fill())

    def factory():
        config = ToolboxConfig.model_validate({"defaults": {"cache": False, "breaker": False}})
        return Toolbox([HttpishServer()], config=config)

    obj = {"redis_url": redis_url, "names": names, "toolbox_factory": factory}
    result = CliRunner().invoke(root, ["tools", "invalidate", "httpish.get_stat"], obj=obj)
    assert result.exit_code == 2 and "unknown tool(s): httpish.get_stat" in result.output
    result = CliRunner().invoke(root, ["tools", "invalidate"], obj=obj)
    assert result.exit_code == 2

    result = CliRunner().invoke(root, ["tools", "invalidate", "httpish.get_status"], obj=obj)
    assert result.exit_code == 0, result.output
    assert "httpish.get_status: 2 cached result(s) deleted" in result.output
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(match=names.cache_pattern("httpish.get_status"))) == []
    assert len(list(client.scan_iter(match=names.cache_pattern("httpish.get_version")))) == 2
    client.close()

    result = CliRunner().invoke(root, ["tools", "invalidate", "--all"], obj=obj)
    assert "all tools: 2 cached result(s) deleted" in result.output
