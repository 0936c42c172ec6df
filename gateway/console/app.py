"""The aiohttp application factory of the web console."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from bus.abc import Broker
from gateway.console import (
    routes_breakers,
    routes_correlation,
    routes_deadletters,
    routes_rollouts,
    routes_session,
    sse,
)
from gateway.console.auth import (
    COOKIE,
    PRINCIPAL,
    SAFE_METHODS,
    SESSION,
    Authenticator,
    SessionStore,
    check_csrf,
    check_origin,
    unauthenticated,
)
from gateway.console.config import ConsoleConfig
from gateway.console.security import security_middleware
from gateway.console.state import CONSOLE, ConsoleState
from schemas.gateway_config import ApiKey
from schemas.names import Names
from schemas.webhooks import bearer_token

STATIC = Path(__file__).parent / "static"
#: API paths that need no session (they establish one).
PUBLIC_API = frozenset({"/api/login"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_console_app(
    config: ConsoleConfig,
    broker: Broker,
    redis: Any,
    *,
    api_keys: Sequence[ApiKey] = (),
    names: Names | None = None,
    source: str = "codebus",
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Build the console. The caller owns ``broker`` and ``redis`` (connects and closes
    them); ``api_keys`` are the gateway's hashed keys that may sign in."""
    state = ConsoleState(
        config=config,
        broker=broker,
        redis=redis,
        names=names or broker.names,
        auth=Authenticator(api_keys, config),
        sessions=SessionStore(ttl=config.session_ttl_seconds, max_sessions=config.max_sessions),
        source=f"{source}/console",
        clock=clock,
    )
    app = web.Application(
        client_max_size=64 * 1024, middlewares=[security_middleware, _auth_middleware]
    )
    app[CONSOLE] = state
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _health)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.router.add_get("/api/events/stream", sse.stream)
    app.router.add_get("/api/events/stream/check", sse.check)
    for module in (
        routes_session,
        routes_deadletters,
        routes_breakers,
        routes_rollouts,
        routes_correlation,
    ):
        app.add_routes(module.routes)
    app.on_shutdown.append(sse.close_streams)
    return app


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every ``/api/`` request but login is authenticated; state changes also need the
    session's CSRF token and a matching Origin."""
    if not request.path.startswith("/api/") or request.path in PUBLIC_API:
        return await handler(request)
    state = request.app[CONSOLE]
    session = state.sessions.get(request.cookies.get(COOKIE))
    if request.method not in SAFE_METHODS:
        if session is None:
            raise unauthenticated("sign in first: state-changing requests need a session")
        check_origin(request, state.config.allowed_origins)
        check_csrf(request, session)
        request[PRINCIPAL], request[SESSION] = session.principal, session
        return await handler(request)
    if session is not None:
        request[PRINCIPAL], request[SESSION] = session.principal, session
        return await handler(request)
    presented = bearer_token(request.headers.get("Authorization"))
    if presented is None:
        raise unauthenticated()
    principal = state.auth.authenticate(presented)
    if principal is None:
        raise unauthenticated("Authorization: unknown API key or token")
    request[PRINCIPAL] = principal
    return await handler(request)


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
