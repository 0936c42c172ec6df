"""``GET /api/events/stream``: the live event stream as server-sent events.

Each connection taps ``codebus.events`` with a private, exclusive, auto-delete queue of
its own (``Broker.tap``) bound to the requested type patterns, so watching never takes
an event from a worker. Query: ``types`` (comma-separated topic patterns, default
``#``) and ``correlationid``. Event data and subject are redacted before they leave.

Frames: ``event: ready`` once the queue is bound (events published after it are
shown), ``event: bus`` per event (JSON), ``event: lagged`` when the browser reads too
slowly and events were skipped, and a comment line as keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from bus.abc import Delivery, Message
from gateway.console.errors import ConsoleError, bad_input
from gateway.console.security import security_headers
from gateway.console.state import CONSOLE
from schemas.envelope import Event
from schemas.topics import validate_pattern
from tools.redaction import redact

MAX_PATTERNS = 20
BUFFER = 1000
KEEPALIVE_SECONDS = 10.0
_CLOSE = object()


def parse_patterns(raw: str | None) -> list[str]:
    """Topic patterns from the ``types`` query parameter; 400 naming ``types``."""
    if raw is None or not raw.strip():
        return ["#"]
    patterns = [p.strip() for p in raw.split(",") if p.strip()]
    if len(patterns) > MAX_PATTERNS:
        raise bad_input("types", f"at most {MAX_PATTERNS} patterns")
    for p in patterns:
        try:
            validate_pattern(p)
        except ValueError as exc:
            raise bad_input("types", str(exc)) from None
    return patterns


def parse_correlation(raw: str | None) -> str | None:
    """The ``correlationid`` filter; 400 naming it when unreasonable."""
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    if len(value) > 200 or not value.isprintable():
        raise bad_input("correlationid", "at most 200 printable characters")
    return value


def render(message: Message) -> dict[str, Any]:
    """The JSON the page shows for one bus message, secrets masked."""
    try:
        event = Event.from_json(message.body)
    except Exception:
        return {"id": message.message_id, "type": message.routing_key, "undecodable": True}
    return {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "time": event.time.isoformat(),
        "subject": redact(event.subject) if event.subject else None,
        "correlationid": event.correlationid,
        "causationid": event.causationid,
        "data": redact(event.data),
    }


def frame(kind: str, payload: Any) -> bytes:
    """One SSE frame (JSON has no raw newlines, so one ``data:`` line)."""
    return f"event: {kind}\ndata: {json.dumps(payload, default=str)}\n\n".encode()


async def stream(request: web.Request) -> web.StreamResponse:
    """Stream matching events until the browser goes away or the console stops."""
    state = request.app[CONSOLE]
    patterns = parse_patterns(request.query.get("types"))
    correlation = parse_correlation(request.query.get("correlationid"))
    if len(state.streams) >= state.config.max_streams:
        raise ConsoleError(
            503,
            "too_many_streams",
            f"{state.config.max_streams} event streams are open; close one or raise max_streams",
        )
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=BUFFER)
    lagged = 0

    async def on_delivery(delivery: Delivery) -> None:
        nonlocal lagged
        await delivery.ack()
        try:
            queue.put_nowait(delivery.message)
        except asyncio.QueueFull:
            lagged += 1

    state.streams.add(queue)  # before the await: concurrent opens count against the cap
    try:
        consumer = await state.broker.tap(patterns, on_delivery)
    except BaseException:
        state.streams.discard(queue)
        raise
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    security_headers(response)
    try:
        await response.prepare(request)
        await response.write(frame("ready", {"types": patterns, "correlationid": correlation}))
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is _CLOSE:
                break
            if lagged:
                await response.write(frame("lagged", {"skipped": lagged}))
                lagged = 0
            shown = render(item)
            if correlation is not None and shown.get("correlationid") != correlation:
                continue
            await response.write(frame("bus", shown))
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the browser went away
    finally:
        state.streams.discard(queue)
        with contextlib.suppress(Exception):
            await consumer.close()
    return response


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: tell every open stream to finish."""
    for queue in list(app[CONSOLE].streams):
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(_CLOSE)


async def check(request: web.Request) -> web.Response:
    """``GET /api/events/stream/check``: the same checks as the stream, answered as JSON
    (an ``EventSource`` cannot read why a stream was refused)."""
    return web.json_response(
        {
            "types": parse_patterns(request.query.get("types")),
            "correlationid": parse_correlation(request.query.get("correlationid")),
        }
    )
