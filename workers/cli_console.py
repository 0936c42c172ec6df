"""``codebus console``: serve the web console (see docs/console.md).

Sign-in uses the gateway's hashed API keys (``CODEBUS_GATEWAY_CONFIG`` or
``--gateway-config``) and the bearer tokens of the console configuration
(``--config``, ``CODEBUS_CONSOLE_CONFIG``), which also gives keys their scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from gateway.config import load_config
from gateway.console.app import create_console_app
from gateway.console.config import ConsoleConfig, load_console_config
from schemas.errors import ConfigError
from schemas.gateway_config import ApiKey
from workers.cli_support import CliConfigError, run_async, settings_of
from workers.settings import Settings

log = logging.getLogger("codebus.console")

#: Seconds open requests get to finish on SIGTERM (event streams are told to end).
SHUTDOWN_TIMEOUT = 5.0


def signers(config: ConsoleConfig, api_keys: Sequence[ApiKey]) -> list[str]:
    """Names of the credentials that can sign in; an empty console is a config error."""
    names = [k.name for k in api_keys if config.scope_of_key(k.name) is not None]
    names += [t.name for t in config.tokens]
    if not names:
        raise ConfigError(
            "console: nobody can sign in: configure tokens in --config or api_keys in the "
            "gateway config (--gateway-config / CODEBUS_GATEWAY_CONFIG)"
        )
    return names


async def serve_console(
    settings: Settings,
    config: ConsoleConfig,
    api_keys: Sequence[ApiKey],
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
) -> None:
    """Connect to RabbitMQ and Redis, serve until ``stop`` is set, then shut down."""
    from workers.app import connect_redis, make_broker

    broker = make_broker(settings, connection_name="codebus-console")
    await broker.connect()
    try:
        redis = await connect_redis(settings.redis_url)
        try:
            app = create_console_app(
                config,
                broker,
                redis,
                api_keys=api_keys,
                names=settings.names,
                source=settings.source,
            )
            runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT, access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(runner, host, port)
                await site.start()
                log.info("console listening on http://%s:%d/", host, port)
                if started is not None:
                    started.set()
                await stop.wait()
            finally:
                await runner.cleanup()
        finally:
            await redis.aclose()
    finally:
        await broker.close()


async def _run(
    settings: Settings, config: ConsoleConfig, keys: list[ApiKey], host: str, port: int
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await serve_console(settings, config, keys, host=host, port=port, stop=stop)


@click.command("console")
@click.option(
    "--config",
    "config_path",
    envvar="CODEBUS_CONSOLE_CONFIG",
    type=click.Path(dir_okay=False),
    help="Console configuration (YAML or JSON).",
)
@click.option(
    "--gateway-config",
    "gateway_path",
    type=click.Path(dir_okay=False),
    help="Gateway configuration whose api_keys may sign in (default: CODEBUS_GATEWAY_CONFIG).",
)
@click.option("--host", envvar="CODEBUS_CONSOLE_HOST", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    envvar="CODEBUS_CONSOLE_PORT",
    type=click.IntRange(1, 65535),
    default=8470,
    show_default=True,
)
@click.pass_context
def console(
    ctx: click.Context, config_path: str | None, gateway_path: str | None, host: str, port: int
) -> None:
    """Serve the web console: live events, correlation view, dead letters, breakers,
    rollouts."""
    from workers.logs import configure

    settings = settings_of(ctx)
    configure(settings.log_level, settings.log_format)
    try:
        config = load_console_config(config_path)
        path: Any = gateway_path or settings.gateway_config
        keys = list(load_config(Path(path)).api_keys) if path else []
        signers(config, keys)
    except ConfigError as exc:
        raise CliConfigError(str(exc)) from None
    run_async(_run(settings, config, keys, host, port))
