"""Shared plumbing of the CLI commands: settings, async running, one-line errors."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable, Coroutine
from typing import IO, Any, TypeVar

import click

from bus.errors import BusError
from schemas.errors import SchemaError
from workers.exit_codes import EXIT_CONFIG, EXIT_SERVICE, EXIT_USAGE
from workers.settings import ConfigError, Settings, load_settings, unknown_variables

T = TypeVar("T")


class CliError(click.ClickException):
    """A bad argument or input the operator can fix: one line, exit status 2.

    With ``CODEBUS_LOG_FORMAT=json`` the line is a JSON log line (see workers.logs)."""

    exit_code = EXIT_USAGE

    def show(self, file: IO[Any] | None = None) -> None:
        from workers.logs import log_cli_error

        if file is None and log_cli_error(self.format_message(), self.exit_code):
            return
        super().show(file)


class CliConfigError(CliError):
    """The configuration is wrong: one line naming what to change, exit status 3."""

    exit_code = EXIT_CONFIG


class CliServiceError(CliError):
    """A service is unreachable or refuses (or a port is taken): one line, exit status 4."""

    exit_code = EXIT_SERVICE


def as_cli_error(exc: Exception) -> CliError:
    """The one-line CLI error (with its exit status) for an error codebus raises."""
    from workers.app import PortUnavailable, RedisUnavailable

    if isinstance(exc, ConfigError):
        return CliConfigError(str(exc))
    if isinstance(exc, BusError | RedisUnavailable | PortUnavailable):
        return CliServiceError(str(exc))
    return CliError(str(exc))


_LAZY = ("settings", "amqp_url", "redis_url", "names", "toolbox_factory", "config_path")


class LazyObj(dict[str, Any]):
    """The click context object. Settings are read from the environment on first use,
    so ``--help`` works even when the environment is wrong. Keys other command groups
    read: settings, amqp_url, redis_url, names, toolbox_factory, config_path."""

    def __missing__(self, key: str) -> Any:
        if key == "settings":
            from workers.logs import log_cli_warning

            for warning in unknown_variables(os.environ):
                if not log_cli_warning(warning):
                    click.echo(f"warning: {warning}", err=True)
            value: Any = load_settings()
        elif key in ("amqp_url", "redis_url"):
            value = getattr(self["settings"], key)
        elif key == "names":
            value = self["settings"].names
        elif key == "config_path":
            value = self["settings"].gateway_config
        elif key == "toolbox_factory":
            value = functools.partial(operator_toolbox, self["settings"])
        else:
            raise KeyError(key)
        self[key] = value
        return value

    def __bool__(self) -> bool:
        # Always truthy: command groups write ``ctx.find_root().obj or {}``.
        return True

    def __contains__(self, key: object) -> bool:
        return key in _LAZY or super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[key] if key in self else default  # noqa: SIM401 - self.get would recurse


async def operator_toolbox(settings: Settings) -> Any:
    """The toolbox an operator's CLI sees: the configured servers (fakes with
    CODEBUS_FAKE_TOOLS=true), with the guard chain off (nothing is called)."""
    from tools.config import ToolboxConfig
    from tools.toolbox import Toolbox
    from workers.toolbox import configured_servers, load_tools_file

    servers = configured_servers(settings.fake_tools, load_tools_file(settings.tools_config))
    off = ToolboxConfig.model_validate(
        {"defaults": {"cache": False, "breaker": False, "permission": False}}
    )
    return Toolbox(servers, config=off, names=settings.names)


def settings_of(ctx: click.Context) -> Settings:
    """Validated settings of this invocation."""
    obj = ctx.find_root().obj
    assert isinstance(obj, dict)
    return obj["settings"]


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; connection, configuration and validation errors become CliError."""
    from workers.app import PortUnavailable, RedisUnavailable

    try:
        return asyncio.run(coro)
    except (BusError, RedisUnavailable, PortUnavailable, ConfigError, SchemaError) as exc:
        raise as_cli_error(exc) from None


def friendly(func: Callable[..., T]) -> Callable[..., T]:
    """Decorator for commands: configuration and validation errors become CliError."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except (ConfigError, SchemaError) as exc:
            raise as_cli_error(exc) from None

    return wrapper


def dump(obj: Any) -> str:
    """Indented JSON for terminal output."""
    return json.dumps(obj, indent=2, default=str)
