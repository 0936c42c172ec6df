"""Operational routes: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.openapi import openapi_document
from gateway.problems import RETRY_AFTER_SECONDS
from gateway.state import STATE

routes = web.RouteTableDef()

#: Seconds each readiness probe may take before the dependency counts as down.
PROBE_TIMEOUT = 2.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving HTTP."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when both the broker and Redis answer; otherwise 503 naming what is down."""
    state = request.app[STATE]
    checks = {
        "broker": await _probe(state.broker.ping()),
        "redis": await _probe(state.redis.ping()),
    }
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
        headers=None if ready else {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _probe(awaitable: object) -> str:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await awaitable  # type: ignore[misc]
    except Exception as exc:  # any failure means "not ready"; the name says which
        return f"down: {type(exc).__name__}"
    return "ok"


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """This app's metrics in the Prometheus text format."""
    body = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of every route."""
    return web.json_response(openapi_document())
