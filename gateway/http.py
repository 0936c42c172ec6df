"""Request helpers shared by the routes: content type, bounded body, JSON parsing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.limits import JsonLimitExceeded, loads_bounded
from gateway.problems import GatewayError, malformed


def require_json(request: web.Request) -> None:
    """415 unless the request declares ``Content-Type: application/json``."""
    if request.content_type != "application/json":
        raise GatewayError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, not {request.content_type!r}",
            fields=["Content-Type"],
        )


async def read_body(request: web.Request, limit: int, timeout: float | None = None) -> bytes:
    """The raw body, refusing with 413 anything over ``limit`` bytes and with 408 a body
    that takes longer than ``timeout`` seconds to arrive (a slow or stalled client).

    A declared ``Content-Length`` over the limit is refused before reading; a chunked
    body is cut off by aiohttp's ``client_max_size`` (set to the same limit).
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    try:
        async with asyncio.timeout(timeout):
            body = await request.read()
    except TimeoutError as exc:
        raise GatewayError(
            408, "timeout", f"the body did not arrive within {timeout:g}s", close=True
        ) from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(limit) from exc
    if len(body) > limit:
        raise _too_large(limit)
    return body


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, "too_large", f"body exceeds the limit of {limit} bytes")


def parse_json(body: bytes) -> Any:
    """The decoded JSON document; 400 if it is not UTF-8 JSON or crosses a bound of
    :mod:`gateway.limits` (the answer names the limit and where it was crossed)."""
    try:
        return loads_bounded(body.decode("utf-8"))
    except JsonLimitExceeded as exc:
        raise GatewayError(
            400, "limit", f"{exc.limit}: {exc.detail} (at {exc.path})", fields=[exc.path]
        ) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise malformed(f"body is not valid JSON: {exc}", ["(body)"]) from exc
