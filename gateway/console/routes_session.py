"""Sign in and out: ``POST /api/login``, ``GET /api/session``, ``POST /api/logout``."""

from __future__ import annotations

from aiohttp import web

from gateway.console.auth import COOKIE, SESSION, check_origin, principal_of, unauthenticated
from gateway.console.errors import bad_input, json_body
from gateway.console.state import CONSOLE

routes = web.RouteTableDef()


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    """Exchange a gateway API key or console token (``{"key": ...}``) for a session."""
    state = request.app[CONSOLE]
    check_origin(request, state.config.allowed_origins)
    body = await json_body(request, max_bytes=4096)
    key = body.get("key")
    if not isinstance(key, str) or not key.strip():
        raise bad_input("key", "an API key or console token is required")
    client = request.remote or "unknown"
    state.throttle.check(client)
    principal = state.auth.authenticate(key.strip())
    if principal is None:
        state.throttle.failed(client)
        raise unauthenticated("key: unknown API key or token")
    state.sessions.drop(request.cookies.get(COOKIE))
    session_id, session = state.sessions.create(principal)
    response = web.json_response(
        {"name": principal.name, "scope": principal.scope.value, "csrf": session.csrf}
    )
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(state.sessions.ttl),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    return response


@routes.get("/api/session")
async def session(request: web.Request) -> web.Response:
    """Who is signed in, and the session's CSRF token (same-origin pages only can read it)."""
    principal = principal_of(request)
    session = request.get(SESSION)
    csrf = session.csrf if session is not None else None
    return web.json_response({"name": principal.name, "scope": principal.scope.value, "csrf": csrf})


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    """End the session."""
    request.app[CONSOLE].sessions.drop(request.cookies.get(COOKIE))
    response = web.json_response({"signed_out": True})
    response.del_cookie(COOKIE, path="/")
    return response
