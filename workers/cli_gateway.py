"""CLI commands of the webhook gateway: ``codebus gateway`` and ``codebus webhooks ...``.

The main CLI wires ``gateway_command`` and ``webhooks_group`` in and fills the click
context object with ``"amqp_url"``, ``"redis_url"``, ``"names"`` and, optionally,
``"config_path"`` (the gateway YAML/JSON configuration). Options and ``CODEBUS_GATEWAY_*``
environment variables override the context object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from datetime import UTC, datetime
from typing import Any

import click
import redis.asyncio as aioredis  # noqa: F401 (annotations)
from redis.exceptions import RedisError

from bus.abc import Broker
from bus.redis_conn import RedisUnavailable, redis_client, refuse_cluster
from gateway.app import create_app
from gateway.config import ConfigError, load_config
from gateway.server import GatewayServer
from schemas.gateway_config import GatewayConfig, SourceKind
from schemas.names import DEFAULT_NAMES, Names
from tools.webhooks.log import DeliveryLog, DeliveryRecord
from workers.cli_support import CliConfigError, CliError, run_async

log = logging.getLogger("codebus.gateway")

#: Seconds in-flight requests get to finish on SIGTERM.
SHUTDOWN_TIMEOUT = 10.0


def _obj(ctx: click.Context, key: str, default: Any = None) -> Any:
    return (ctx.find_root().obj or {}).get(key, default)


def _names(ctx: click.Context) -> Names:
    names = _obj(ctx, "names", DEFAULT_NAMES)
    if not isinstance(names, Names):
        raise click.UsageError("context object 'names' must be a schemas.names.Names")
    return names


def _required(value: str | None, what: str, option: str) -> str:
    if not value:
        raise click.UsageError(f"no {what}: pass {option} or set it in the CLI context")
    return value


async def serve_gateway(
    config: GatewayConfig,
    broker: Broker,
    redis: Any,
    names: Names,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
) -> list[Any]:
    """Serve the gateway until ``stop`` is set, then shut down gracefully.

    Returns the bound addresses (useful with ``port=0``) once stopped; ``started`` is set
    when the socket is listening. Connection limits and timeouts come from
    ``config.server`` (see :mod:`gateway.server`).
    """
    warn_about_open_sources(config)
    server = GatewayServer(
        create_app(config, broker, redis, names=names),
        host,
        port,
        config.server,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    try:
        await server.start()
        addresses = server.addresses
        log.info(
            "gateway listening on %s (max %d connections, idle timeout %gs)",
            addresses,
            config.server.max_connections,
            config.server.idle_timeout_seconds,
        )
        if started is not None:
            started.set()
        await stop.wait()
    finally:
        # Stops accepting, lets in-flight requests finish (each one either got its
        # broker confirm or answers 503), then closes.
        await server.stop()
    return addresses


def warn_about_open_sources(config: GatewayConfig) -> list[str]:
    """Warn about standard sources that may publish any event type because their
    ``allowed_types`` was left at the default ``["#"]``; returns their names."""
    open_sources = [
        s.name
        for s in config.sources
        if s.kind is SourceKind.STANDARD
        and not s.rules
        and "allowed_types" not in s.model_fields_set
    ]
    for name in open_sources:
        log.warning(
            "webhook source %r may publish ANY event type (allowed_types defaults to "
            "['#']); list the types it needs in allowed_types",
            name,
        )
    return open_sources


async def _run(
    config: GatewayConfig, amqp_url: str, redis_url: str, names: Names, host: str, port: int
) -> None:
    from bus.rabbitmq import RabbitBroker  # only the composition root picks the broker

    broker = RabbitBroker(amqp_url, names=names)
    # Bounded waits: a stalled Redis must turn into a 503, not a hung request.
    redis = redis_client(redis_url, socket_timeout=5, socket_connect_timeout=5)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        # A Redis that is down at start is served as 503s until it is back; a Redis
        # Cluster node never works (the replay keys' scripts), so it stops the start.
        try:
            await refuse_cluster(redis, redis_url)
        except RedisUnavailable:
            raise
        except (RedisError, OSError):
            pass  # down at start: served as 503s until it is back
        await broker.connect()
        await serve_gateway(config, broker, redis, names, host=host, port=port, stop=stop)
    finally:
        await broker.close()
        await redis.aclose()


@click.command("gateway")
@click.option(
    "--config",
    "config_path",
    envvar="CODEBUS_GATEWAY_CONFIG",
    help="Gateway configuration (YAML or JSON).",
)
@click.option("--host", envvar="CODEBUS_GATEWAY_HOST", default="0.0.0.0", show_default=True)
@click.option(
    "--port",
    envvar="CODEBUS_GATEWAY_PORT",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
)
@click.option("--amqp-url", envvar="CODEBUS_AMQP_URL", help="RabbitMQ URL.")
@click.option("--redis-url", envvar="CODEBUS_REDIS_URL", help="Redis URL.")
@click.pass_context
def gateway_command(
    ctx: click.Context,
    config_path: str | None,
    host: str,
    port: int,
    amqp_url: str | None,
    redis_url: str | None,
) -> None:
    """Run the webhook gateway: inbound webhooks and POST /events -> events."""
    from bus import tracing
    from workers.logs import configure

    try:
        tracing.setup("codebus-gateway")
    except ValueError as exc:
        raise CliConfigError(str(exc)) from None
    settings = _obj(ctx, "settings")
    if settings is not None:
        configure(settings.log_level, settings.log_format)
    path = _required(config_path or _obj(ctx, "config_path"), "gateway config", "--config")
    try:
        config = load_config(path)
        amqp = _required(amqp_url or _obj(ctx, "amqp_url"), "RabbitMQ URL", "--amqp-url")
        redis_url = _required(redis_url or _obj(ctx, "redis_url"), "Redis URL", "--redis-url")
        # run_async: an unreachable broker or Redis is one line with exit status 4.
        run_async(_run(config, amqp, redis_url, _names(ctx), host, port))
    except ConfigError as exc:
        raise CliConfigError(str(exc)) from exc
    except ValueError as exc:
        raise CliError(str(exc)) from exc


@click.group("webhooks")
def webhooks_group() -> None:
    """Inspect outbound webhook deliveries."""


@webhooks_group.command("deliveries")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--subscription", help="Only this outbound subscription.")
@click.option("--state", type=click.Choice(["succeeded", "retrying", "failed"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.option("--redis-url", envvar="CODEBUS_REDIS_URL", help="Redis URL.")
@click.pass_context
def deliveries(
    ctx: click.Context,
    limit: int,
    subscription: str | None,
    state: str | None,
    as_json: bool,
    redis_url: str | None,
) -> None:
    """Show the most recent outbound deliveries, newest first."""
    url = _required(redis_url or _obj(ctx, "redis_url"), "Redis URL", "--redis-url")
    records = asyncio.run(_recent(url, _names(ctx), limit, subscription, state))
    if as_json:
        for r in records:
            click.echo(r.model_dump_json())
        return
    if not records:
        click.echo("no deliveries recorded")
        return
    click.echo(f"{'LAST ATTEMPT':20} {'STATE':9} {'CODE':4} {'TRIES':5} {'SUBSCRIPTION':16} EVENT")
    for r in records:
        click.echo(_line(r))


def _line(r: DeliveryRecord) -> str:
    when = datetime.fromtimestamp(r.last_attempt_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    code = "-" if r.status_code is None else str(r.status_code)
    line = f"{when:20} {r.state:9} {code:4} {r.attempts:<5} {r.subscription:16} "
    line += f"{r.event_type} {r.event_id}"
    if r.last_error and r.state != "succeeded":
        line += "\n    " + json.dumps(r.last_error)[:300]
    return line


async def _recent(
    url: str, names: Names, limit: int, subscription: str | None, state: str | None
) -> list[DeliveryRecord]:
    redis = redis_client(url)
    try:
        return await DeliveryLog(redis, names).recent(limit, subscription=subscription, state=state)
    except (OSError, RedisError) as exc:
        raise click.ClickException(f"cannot read the delivery log from {url}: {exc}") from exc
    finally:
        await redis.aclose()
