"""Circuit breakers of the tool servers: state and reset (state in Redis)."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.console.auth import require_operator
from gateway.console.errors import bad_input
from gateway.console.state import CONSOLE
from tools.guards.breaker import BreakerStore

routes = web.RouteTableDef()

_SERVER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@routes.get("/api/breakers")
async def list_breakers(request: web.Request) -> web.Response:
    """Every breaker with state in Redis (absent ones are closed)."""
    state = request.app[CONSOLE]
    rows = await BreakerStore(state.redis, state.names).status_all()
    return web.json_response({"items": [dict(row.__dict__) for row in rows]})


@routes.post("/api/breakers/{server}/reset")
async def reset_breaker(request: web.Request) -> web.Response:
    """Close one server's breaker and clear its failure count (operator)."""
    require_operator(request)
    server = request.match_info["server"]
    if not _SERVER.match(server):
        raise bad_input("server", "a tool server name (letters, digits, . _ -)")
    state = request.app[CONSOLE]
    existed = await BreakerStore(state.redis, state.names).reset(server)
    return web.json_response({"server": server, "reset": True, "had_state": bool(existed)})
