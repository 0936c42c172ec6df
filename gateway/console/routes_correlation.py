"""The correlation view: the tree of events (and tool calls) of one correlation id.

Events come from the audit unit's event log (``Names.event_log_stream``), newest first,
up to ``SCAN`` entries back; each event hangs under the event that caused it
(``causationid``), or at the root when its cause is not in the log. Tool-call audit
records (``Names.audit_stream``) are attached to the event whose handler made the call
(the record's ``event_id``, set by the toolbox from the handler's context; see
:mod:`tools.guards.audit_context`), or listed loose under the correlation when that event
is not in the log but the record's ``correlationid`` matches. Calls made outside any
event (``codebus tools call``) carry no ids and appear nowhere.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.console.sse import parse_correlation
from gateway.console.state import CONSOLE
from tools.redaction import redact

routes = web.RouteTableDef()

SCAN = 50_000
PAGE = 1000


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def _scan(redis: Any, key: str, limit: int) -> list[dict[str, str]]:
    """Up to ``limit`` entries of stream ``key``, newest first, fields decoded."""
    out: list[dict[str, str]] = []
    last = "+"
    while len(out) < limit:
        batch = await redis.xrevrange(key, max=last, min="-", count=PAGE)
        if not batch:
            break
        for entry_id, fields in batch:
            if _text(entry_id) == last:
                continue
            out.append({_text(k): _text(v) for k, v in fields.items()})
        new_last = _text(batch[-1][0])
        if new_last == last or len(batch) < PAGE:
            break
        last = new_last
    return out


def build_tree(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nest ``events`` by causation, each level in time order."""
    by_id = {e["id"]: {**e, "children": []} for e in events}
    roots: list[dict[str, Any]] = []
    for node in sorted(by_id.values(), key=lambda n: (n.get("time") or "", n["id"])):
        parent = by_id.get(node.get("causationid") or "")
        if parent is not None and parent is not node:
            parent["children"].append(node)
        else:
            roots.append(node)
    return roots


def _event_node(entry: dict[str, str]) -> dict[str, Any]:
    try:
        data = json.loads(entry.get("event", "{}")).get("data")
    except ValueError:
        data = None
    return {
        "kind": "event",
        "id": entry.get("id", ""),
        "type": entry.get("type", ""),
        "source": entry.get("source", ""),
        "time": entry.get("time", ""),
        "causationid": entry.get("causationid") or None,
        "data": redact(data),
        "tool_calls": [],
    }


@routes.get("/api/correlation/{cid}")
async def correlation(request: web.Request) -> web.Response:
    """The tree of one correlation id."""
    state = request.app[CONSOLE]
    cid = parse_correlation(request.match_info["cid"])
    entries = await _scan(state.redis, state.names.event_log_stream, SCAN)
    events = [_event_node(e) for e in entries if e.get("correlationid") == cid]
    by_id = {e["id"]: e for e in events}
    loose: list[dict[str, Any]] = []
    for entry in await _scan(state.redis, state.names.audit_stream, SCAN // 5):
        try:
            record = json.loads(entry.get("record", "{}"))
        except ValueError:
            continue
        owner = by_id.get(record.get("event_id") or "")
        call = {
            "kind": "tool_call",
            "event_id": record.get("event_id"),
            "tool": record.get("tool"),
            "outcome": record.get("outcome"),
            "duration_ms": record.get("duration_ms"),
            "time": record.get("time"),
            "cache_hit": record.get("cache_hit"),
            "error": redact(record.get("error")),
        }
        if owner is not None:
            owner["tool_calls"].append(call)
        elif record.get("correlationid") == cid:
            loose.append(call)
    return web.json_response(
        {
            "correlationid": cid,
            "events": len(events),
            "tree": build_tree(events),
            "tool_calls": loose,
            "scanned": len(entries),
        }
    )
