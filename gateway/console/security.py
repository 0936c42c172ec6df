"""Security headers on every answer, and errors rendered as one JSON line.

The Content-Security-Policy allows scripts and styles from the console's own origin
only: no inline script, no ``eval``, no framing (``frame-ancestors 'none'`` and
``X-Frame-Options: DENY``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiormq
from aiohttp import web
from redis.exceptions import RedisError

from bus.errors import BusError
from gateway.console.errors import ConsoleError

log = logging.getLogger("codebus.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _apply(response: web.StreamResponse) -> None:
    if response.prepared:  # an event stream sets its own headers before preparing
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors become JSON; every answer gets the security headers."""
    try:
        response = await handler(request)
    except ConsoleError as exc:
        if exc.status in (401, 403):
            log.info("console refused %s %s: %s", request.method, request.path, exc.code)
        response = exc.response()
    except (
        BusError,
        RedisError,
        ConnectionError,
        TimeoutError,
        aiormq.exceptions.AMQPError,
    ) as exc:
        # RabbitMQ or Redis down: say which, never with the URL (it may hold credentials).
        what = "Redis" if isinstance(exc, RedisError) else "RabbitMQ or Redis"
        if isinstance(exc, BusError | aiormq.exceptions.AMQPError):
            what = "RabbitMQ"
        log.warning(
            "console: %s unavailable on %s %s: %s",
            what,
            request.method,
            request.path,
            type(exc).__name__,
        )
        response = ConsoleError(503, "unavailable", f"{what} is unavailable; try again").response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = (exc.reason or "error").lower().replace(" ", "_")
        response = ConsoleError(exc.status, code, exc.reason or "error").response()
    except Exception:
        log.exception("console: unhandled error on %s %s", request.method, request.path)
        response = ConsoleError(500, "internal", "internal error").response()
    _apply(response)
    return response


def security_headers(response: web.StreamResponse) -> None:
    """Set the headers on a response that is about to be prepared by its handler."""
    _apply(response)
