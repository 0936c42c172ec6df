"""Composition root of worker processes: picks the concrete broker, Redis and
middleware, runs a unit, serves health and metrics, drains on SIGTERM."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)

from bus import redis_conn
from bus.inbox_metrics import CountingInbox, InboxOutcomes
from bus.middleware import (
    IdempotencyMiddleware,
    LoggingMiddleware,
    MetricsMiddleware,
    Middleware,
    RetriesMiddleware,
)
from bus.middleware.loop_lag import FreezeStartupHeap, LoopLagMonitor
from bus.middleware.metrics import InboxWaits
from bus.middleware.tracing import TracingMiddleware
from bus.rabbitmq import RabbitBroker
from bus.retry import RetryPolicy
from bus.runtime import Worker
from bus.tracing import enabled as tracing_enabled
from bus.tracing import traced
from flows.metrics import default_flow_metrics
from tools.guards.metrics import default_metrics
from workers import http
from workers.settings import Settings
from workers.units import Unit

log = logging.getLogger("codebus.worker")


class PortUnavailable(OSError):
    """The health/metrics port cannot be bound (taken, or not allowed)."""


RedisUnavailable = redis_conn.RedisUnavailable

#: See bus.redis_conn (module-level here so tests can shorten it).
REDIS_SOCKET_TIMEOUT = redis_conn.REDIS_SOCKET_TIMEOUT


async def connect_redis(url: str) -> aioredis.Redis:
    """A client (plain or Sentinel, through :mod:`bus.redis_conn`) that has answered
    PING; :class:`RedisUnavailable` otherwise."""
    return await redis_conn.connect_redis(url, socket_timeout=REDIS_SOCKET_TIMEOUT)


def make_broker(settings: Settings, connection_name: str = "codebus") -> RabbitBroker:
    """The RabbitMQ broker configured by ``settings``."""
    return RabbitBroker(
        settings.amqp_url,
        names=settings.names,
        queue_type=settings.queue_type,
        delivery_limit=settings.delivery_limit,
        connection_name=connection_name,
        shuffle_urls=settings.amqp_shuffle,
        quorum_initial_group_size=settings.quorum_initial_group_size,
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    """The retry policy configured by ``settings``."""
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        base_delay=settings.retry_base_delay,
        max_delay=settings.retry_max_delay,
    )


def make_middleware(
    settings: Settings, redis: aioredis.Redis, registry: CollectorRegistry
) -> list[Middleware]:
    """Logging, metrics, retries, idempotency (Redis inbox) - in that order: after-hooks
    run in reverse, so a commit the inbox cannot apply still goes to the retry policy.
    Before them, lifecycle-only hooks: the event-loop lag monitor and the start-up heap
    freeze."""
    inbox = CountingInbox(
        redis,
        settings.names,
        lease=settings.inbox_lease,
        retention=settings.inbox_retention,
        outcomes=InboxOutcomes(registry),
    )
    tracing: list[Middleware] = [TracingMiddleware()] if tracing_enabled() else []
    return [
        LoopLagMonitor(registry),
        FreezeStartupHeap(),
        *tracing,
        LoggingMiddleware(),
        MetricsMiddleware(registry),
        RetriesMiddleware(retry_policy(settings)),
        IdempotencyMiddleware(inbox, waits=InboxWaits(registry).observe),
    ]


def worker_registry() -> CollectorRegistry:
    """The registry a worker serves on ``/metrics``: its consumer series (added by the
    middleware), the process's tool-layer series, and the process and Python runtime
    collectors (CPU, memory, file descriptors, GC, version)."""
    registry = CollectorRegistry()
    registry.register(default_metrics().registry)
    registry.register(default_flow_metrics().registry)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


async def run_unit(
    unit: Unit,
    settings: Settings,
    redis: aioredis.Redis,
    deps: Mapping[str, Any] | None = None,
) -> None:
    """Run ``unit`` against RabbitMQ and ``redis`` (the caller's client, from
    :func:`connect_redis`) until SIGTERM/SIGINT, then drain."""
    registry = worker_registry()
    broker = traced(make_broker(settings, connection_name=f"codebus-{unit.name}"))
    try:
        await broker.connect()
        worker = Worker(
            broker,
            unit.subscriptions(),
            middleware=make_middleware(settings, redis, registry),
            concurrency=settings.concurrency,
            deps={
                "redis": redis,
                "names": settings.names,
                # Handlers that export their own metrics (codebus_deployment_info).
                "metrics_registry": registry,
                **(deps or {}),
            },
            grace_period=settings.grace_period,
            source=settings.source,
            stall_after=settings.stall_after,
        )
        runner = None
        if settings.http_port:
            # Ready = the dependencies answer AND the worker makes progress (consumers
            # attached, deliveries settling, connection not blocked by an alarm).
            checks: dict[str, http.Check] = {
                "broker": broker.ping,
                "redis": redis.ping,
                "worker": worker.check,
            }
            app = http.health_app(registry, checks)
            try:
                runner = await http.serve(app, settings.http_host, settings.http_port)
            except OSError as exc:
                where = f"{settings.http_host}:{settings.http_port}"
                raise PortUnavailable(
                    f"cannot serve health/metrics on {where}: {exc.strerror or exc}"
                    " (set CODEBUS_HTTP_PORT to a free port, or 0 for none)"
                ) from exc
        log.info("unit %s started (concurrency %d)", unit.name, settings.concurrency)
        try:
            await worker.run_until_signalled()
        finally:
            if runner is not None:
                await runner.cleanup()
        log.info("unit %s stopped cleanly", unit.name)
    finally:
        await broker.close()
