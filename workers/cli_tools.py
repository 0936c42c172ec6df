"""CLI commands of the tool layer: ``codebus tools ...`` and ``codebus breaker ...``.

The main CLI wires these groups in and fills the click context object with:

* ``"toolbox_factory"``: a callable returning a :class:`~tools.toolbox.Toolbox` (or an
  awaitable of one), used by ``tools list`` (and to check names in ``tools invalidate``);
* ``"redis_url"``: the Redis URL of the cache and breaker state, used by
  ``tools invalidate`` and ``breaker ...``;
* ``"names"``: the :class:`~schemas.names.Names` of the installation (default names if
  absent).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from schemas.names import DEFAULT_NAMES, Names
from tools.guards.breaker import BreakerStatus, BreakerStore
from tools.guards.cache import ResultCache
from tools.registry import ToolInfo
from workers.cli_support import run_async

T = TypeVar("T")


def _obj(ctx: click.Context, key: str) -> Any:
    obj = ctx.find_root().obj or {}
    if key not in obj:
        raise click.UsageError(f"the CLI was not set up with {key!r}")
    return obj[key]


def _names(ctx: click.Context) -> Names:
    obj = ctx.find_root().obj or {}
    names = obj.get("names", DEFAULT_NAMES)
    if not isinstance(names, Names):
        raise click.UsageError("context object 'names' must be a schemas.names.Names")
    return names


@click.group("tools")
def tools_group() -> None:
    """Inspect the registered tools."""


@tools_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON with argument schemas.")
@click.pass_context
def list_tools(ctx: click.Context, as_json: bool) -> None:
    """List every tool with its description."""
    factory = _obj(ctx, "toolbox_factory")
    infos = run_async(_load_tools(factory))
    if as_json:
        payload = [
            {
                "name": i.name,
                "description": i.description,
                "read_only": i.read_only,
                "args_schema": i.args_schema,
                "result_schema": i.result_schema,
            }
            for i in infos
        ]
        click.echo(json.dumps(payload, indent=2))
        return
    if not infos:
        click.echo("no tools registered")
        return
    width = max(len(i.name) for i in infos)
    for info in infos:
        flag = "ro" if info.read_only else "rw"
        click.echo(f"{info.name:<{width}}  {flag}  {info.description}")


async def _load_tools(factory: Callable[[], Any]) -> list[ToolInfo]:
    toolbox = factory()
    if inspect.isawaitable(toolbox):
        toolbox = await toolbox
    try:
        return list(toolbox.list_tools())
    finally:
        close = getattr(toolbox, "close", None)
        if close is not None:
            await close()


@tools_group.command("invalidate")
@click.argument("tool_names", metavar="[TOOL]...", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Drop every cached result.")
@click.pass_context
def invalidate(ctx: click.Context, tool_names: tuple[str, ...], everything: bool) -> None:
    """Drop the cached results of the named read-only tools (or of all tools)."""
    if bool(tool_names) == everything:
        raise click.UsageError("name one or more tools, or pass --all")
    obj = ctx.find_root().obj or {}
    if tool_names and "toolbox_factory" in obj:
        # Check the names first, so that a typo is an error and not "0 deleted".
        known = {info.name for info in run_async(_load_tools(obj["toolbox_factory"]))}
        unknown = [name for name in tool_names if name not in known]
        if unknown:
            raise click.UsageError(f"unknown tool(s): {', '.join(unknown)}")

    async def drop(client: Any) -> list[tuple[str, int]]:
        cache = ResultCache(client, _names(ctx))
        if everything:
            return [("all tools", await cache.invalidate_all())]
        return [(name, await cache.invalidate(name)) for name in tool_names]

    for name, count in run_async(_with_redis(ctx, drop)):
        click.echo(f"{name}: {count} cached result(s) deleted")


@click.group("breaker")
def breaker_group() -> None:
    """Inspect and reset the circuit breakers of the tool servers (state in Redis)."""


async def _with_redis(ctx: click.Context, action: Callable[[Any], Awaitable[T]]) -> T:
    from workers.app import connect_redis

    # connect_redis pings first: an unreachable Redis is RedisUnavailable (one line,
    # credentials removed) instead of a redis-py traceback from the first command.
    client = await connect_redis(_obj(ctx, "redis_url"))
    try:
        return await action(client)
    finally:
        await client.aclose()


async def _with_store(ctx: click.Context, action: Callable[[BreakerStore], Awaitable[T]]) -> T:
    return await _with_redis(ctx, lambda client: action(BreakerStore(client, _names(ctx))))


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


@breaker_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def breaker_status(ctx: click.Context, as_json: bool) -> None:
    """Show state, consecutive failures and time open of every server's breaker."""
    rows: list[BreakerStatus] = run_async(_with_store(ctx, lambda s: s.status_all()))
    if as_json:
        click.echo(json.dumps([row.__dict__ for row in rows], indent=2))
        return
    if not rows:
        click.echo("no circuit-breaker state in Redis (every breaker is closed)")
        return
    width = max(len("SERVER"), *(len(r.server) for r in rows))
    click.echo(f"{'SERVER':<{width}}  {'STATE':<9}  FAILURES  OPEN-FOR  RETRY-AFTER")
    for r in rows:
        state = r.state + ("*" if r.probing else "")
        click.echo(
            f"{r.server:<{width}}  {state:<9}  {r.failures:>8}  "
            f"{_fmt_seconds(r.opened_for):>8}  {_fmt_seconds(r.retry_after or None):>11}"
        )
    if any(r.probing for r in rows):
        click.echo("* a half-open probe is in flight")


@breaker_group.command("reset")
@click.argument("server")
@click.pass_context
def breaker_reset(ctx: click.Context, server: str) -> None:
    """Close SERVER's breaker and clear its failure count."""
    existed = run_async(_with_store(ctx, lambda s: s.reset(server)))
    if existed:
        click.echo(f"breaker of {server} reset (closed)")
    else:
        click.echo(f"breaker of {server} had no state; it is closed")
