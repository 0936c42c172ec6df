"""Rollouts (deployment flows): phase, weights, measurements; promote / abort / approve.

The buttons publish the same command events as ``codebus deployments promote|abort|
approve`` (the console never edits a flow's state): ``deployment.promote_requested``,
``deployment.abort_requested``, ``deployment.approval_granted``, with ``by`` set to the
signed-in key or token name.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from bus.errors import BrokerUnavailable, PublishError, Unroutable
from flows.report import summary
from flows.store import FlowStore
from gateway.console.auth import require_operator
from gateway.console.errors import ConsoleError, bad_input, json_body
from gateway.console.state import CONSOLE
from schemas.envelope import new_event
from schemas.errors import SchemaError
from schemas.events import validate_payload
from tools.redaction import redact

routes = web.RouteTableDef()

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
COMMANDS = {
    "promote": "deployment.promote_requested",
    "abort": "deployment.abort_requested",
    "approve": "deployment.approval_granted",
}
LIST_LIMIT = 200


def _flow_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if not _ID.match(value):
        raise bad_input("id", "letters, digits and . _ : - only, at most 200")
    return value


@routes.get("/api/rollouts")
async def list_rollouts(request: web.Request) -> web.Response:
    """Flows, newest first, without their journals."""
    state = request.app[CONSOLE]
    now = state.clock()
    items: list[dict[str, Any]] = []
    async for flow in FlowStore(state.redis, state.names).all(limit=LIST_LIMIT):
        items.append({k: v for k, v in summary(flow, now).items() if k != "journal"})
    return web.json_response({"items": redact(items)})


@routes.get("/api/rollouts/{id}")
async def show_rollout(request: web.Request) -> web.Response:
    """One flow: phase, step, weights, measurements, timers, journal."""
    state = request.app[CONSOLE]
    flow_id = _flow_id(request)
    flow = await FlowStore(state.redis, state.names).load(flow_id)
    if flow is None:
        raise ConsoleError(404, "not_found", f"id: no deployment flow {flow_id!r}", field="id")
    return web.json_response(redact(summary(flow, state.clock())))


@routes.post("/api/rollouts/{id}/{command}")
async def command(request: web.Request) -> web.Response:
    """Publish a promote / abort / approve command event (operator)."""
    principal = require_operator(request)
    state = request.app[CONSOLE]
    flow_id = _flow_id(request)
    name = request.match_info["command"]
    if name not in COMMANDS:
        raise bad_input("command", f"one of {', '.join(COMMANDS)}")
    body = await json_body(request)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500:
        raise bad_input("reason", "a string of at most 500 characters")
    if name == "abort" and not reason.strip():
        raise bad_input("reason", "required to abort (recorded and announced)")
    payload: dict[str, Any] = {
        "flow_id": flow_id,
        "by": f"console:{principal.name}",
        "reason": reason,
    }
    if name == "promote":
        full = body.get("full", False)
        if not isinstance(full, bool):
            raise bad_input("full", "true or false")
        payload["full"] = full
    if await FlowStore(state.redis, state.names).load(flow_id) is None:
        raise ConsoleError(404, "not_found", f"id: no deployment flow {flow_id!r}", field="id")
    type_ = COMMANDS[name]
    try:
        validate_payload(type_, payload)
    except SchemaError as exc:
        field = exc.fields[0] if exc.fields else "body"
        raise bad_input(field, str(exc)) from None
    event = new_event(type_, payload, source=state.source)
    try:
        await state.broker.publish(event)
    except Unroutable:
        raise ConsoleError(503, "unroutable", f"no subscriber is bound for {type_!r}") from None
    except (BrokerUnavailable, PublishError) as exc:
        raise ConsoleError(503, "unavailable", f"the broker did not take it: {exc}") from None
    return web.json_response({"event_id": event.id, "type": type_, "flow_id": flow_id})
