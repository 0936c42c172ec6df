"""The aiohttp application factory of the gateway."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bus.abc import Broker
from bus.tracing import TracingBroker
from gateway import routes_events, routes_health, routes_webhooks
from gateway.metrics import GatewayMetrics
from gateway.problems import GatewayError
from gateway.rejections import REJECTIONS, RejectionLog
from gateway.state import STATE, GatewayState
from gateway.tracing import tracing_middleware
from schemas.events import EVENT_TYPES
from schemas.gateway_config import GatewayConfig
from schemas.names import Names

log = logging.getLogger("codebus.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    config: GatewayConfig,
    broker: Broker,
    redis: Any,
    *,
    names: Names | None = None,
    metrics: GatewayMetrics | None = None,
    clock: Callable[[], float] = time.time,
    publish_timeout: float = 10.0,
    pending_claim_ttl: int | None = None,
) -> web.Application:
    """Build the gateway app. The caller owns ``broker`` and ``redis`` (connects and
    closes them); ``clock`` returns Unix seconds and is injectable for tests."""
    EVENT_TYPES.load()  # a type declared twice stops the gateway here, naming both
    _check_rule_types(config)
    state = GatewayState(
        config=config,
        # Publishes run in producer spans and carry the request's traceparent.
        broker=TracingBroker(broker),
        redis=redis,
        names=names or broker.names,
        metrics=metrics or GatewayMetrics(),
        clock=clock,
        publish_timeout=publish_timeout,
        pending_claim_ttl=pending_claim_ttl,
    )
    # aiohttp enforces the same limit on chunked bodies that lack a Content-Length.
    app = web.Application(
        client_max_size=config.max_body_bytes, middlewares=[tracing_middleware, _middleware]
    )
    app[STATE] = state
    app[REJECTIONS] = RejectionLog()
    app.add_routes(routes_webhooks.routes)
    app.add_routes(routes_events.routes)
    app.add_routes(routes_health.routes)
    return app


def _check_rule_types(config: GatewayConfig) -> None:
    # A rule publishing an unregistered type would fail every request: refuse to start.
    for source in config.sources:
        for i, rule in enumerate(source.rules):
            if rule.type not in EVENT_TYPES:
                raise ValueError(
                    f"sources.{source.name}.rules.{i}.type: unknown event type {rule.type!r}"
                )


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render errors as JSON and count every answer by route template and status."""
    state = request.app[STATE]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    started = time.perf_counter()
    try:
        response = await handler(request)
    except GatewayError as exc:
        response = exc.response()
        state.metrics.rejections.labels(reason=exc.code).inc()
        request.app[REJECTIONS](request, exc.status, exc.code, exc.detail)
    except web.HTTPException as exc:
        # aiohttp's own 404/405/413: same JSON shape as ours.
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        response = GatewayError(exc.status, code, exc.reason).response()
        for name in ("Allow",):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        state.metrics.rejections.labels(reason=code).inc()
        request.app[REJECTIONS](request, exc.status, code, exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, route)
        response = GatewayError(500, "internal", "internal error").response()
    state.metrics.requests.labels(route=route, status=str(response.status)).inc()
    state.metrics.latency.labels(route=route).observe(time.perf_counter() - started)
    return response
