"""Dead letters: list, show, replay, purge (``bus.deadletters`` does the work)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from bus import deadletters
from gateway.console.auth import require_operator
from gateway.console.errors import ConsoleError, bad_input, json_body
from gateway.console.state import CONSOLE
from tools.redaction import redact

routes = web.RouteTableDef()

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
SHOW_SCAN = 10_000
PURGE_WORD = "purge"


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise bad_input("limit", "an integer from 1 to 1000")
    return int(raw)


def _event_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if not _ID.match(value):
        raise bad_input("id", "letters, digits and . _ : - only, at most 200")
    return value


def _shown(item: deadletters.DeadLetterInfo, with_body: bool = False) -> dict[str, Any]:
    out = item.as_dict(with_body=with_body)
    out["reason"] = redact(out["reason"])
    if "event" in out:
        out["event"] = redact(out["event"])
    return out


@routes.get("/api/dead-letters")
async def list_letters(request: web.Request) -> web.Response:
    """Dead letters, oldest first (they stay in the queue)."""
    state = request.app[CONSOLE]
    limit = _limit(request)
    async with state.dlq_lock:
        items = await deadletters.list_dead_letters(state.broker, limit)
    items.sort(key=lambda i: (i.dead_at or "", i.message_id or ""))
    return web.json_response({"items": [_shown(i) for i in items]})


@routes.get("/api/dead-letters/{id}")
async def show_letter(request: web.Request) -> web.Response:
    """One dead letter with its event (redacted)."""
    state = request.app[CONSOLE]
    event_id = _event_id(request)
    async with state.dlq_lock:
        items = await deadletters.list_dead_letters(state.broker, SHOW_SCAN)
    for item in items:
        if item.message_id == event_id:
            return web.json_response(_shown(item, with_body=True))
    raise ConsoleError(404, "not_found", f"id: no dead letter {event_id!r}", field="id")


@routes.post("/api/dead-letters/{id}/replay")
async def replay_letter(request: web.Request) -> web.Response:
    """Send one dead letter back to the queue it died in (operator)."""
    require_operator(request)
    state = request.app[CONSOLE]
    event_id = _event_id(request)
    async with state.dlq_lock:
        done = await deadletters.replay(
            state.broker, select=lambda i: i.message_id == event_id, limit=SHOW_SCAN
        )
    if not done:
        raise ConsoleError(
            404, "not_found", f"id: no replayable dead letter {event_id!r}", field="id"
        )
    return web.json_response({"replayed": [{"id": i.message_id, "queue": i.queue} for i in done]})


@routes.post("/api/dead-letters/purge")
async def purge_letters(request: web.Request) -> web.Response:
    """Delete every dead letter (operator); the body must confirm: ``{"confirm": "purge"}``."""
    require_operator(request)
    state = request.app[CONSOLE]
    body = await json_body(request)
    if body.get("confirm") != PURGE_WORD:
        raise bad_input("confirm", f"type {PURGE_WORD!r} to confirm deleting every dead letter")
    async with state.dlq_lock:
        count = await deadletters.purge(state.broker)
    return web.json_response({"purged": count})
