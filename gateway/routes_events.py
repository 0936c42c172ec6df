"""``POST /events``: the authenticated publish API.

Callers present an API key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
Keys live in the configuration only as SHA-256 hashes; each is scoped to event-type
patterns with RabbitMQ topic semantics.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.adapters import build_event
from gateway.http import parse_json, read_body, require_json
from gateway.problems import GatewayError, malformed, unauthorized
from gateway.state import STATE
from schemas.errors import SchemaError
from schemas.gateway_config import ApiKey, GatewayConfig
from schemas.webhooks import bearer_token, hash_api_key

routes = web.RouteTableDef()


class PublishRequest(BaseModel):
    """Body of ``POST /events``."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200)
    data: dict[str, Any]
    subject: str | None = Field(default=None, max_length=500)
    id: str | None = Field(default=None, min_length=1, max_length=200)
    correlationid: str | None = Field(default=None, min_length=1, max_length=200)


def authenticate(config: GatewayConfig, request: web.Request) -> ApiKey:
    """The API key presented by ``request``; 401 when absent or unknown."""
    presented = bearer_token(request.headers.get("Authorization"))
    if presented is None:
        presented = request.headers.get("X-API-Key", "").strip() or None
    if presented is None:
        raise unauthorized(
            "missing_api_key", "send Authorization: Bearer <key> or X-API-Key", scheme="Bearer"
        )
    digest = hash_api_key(presented).encode()
    found: ApiKey | None = None
    # Compare against every key so that timing does not reveal which hash was close.
    for key in config.api_keys:
        if hmac.compare_digest(digest, key.sha256.encode()) and found is None:
            found = key
    if found is None:
        raise unauthorized("bad_api_key", "unknown API key", scheme="Bearer")
    return found


@routes.post("/events")
async def publish_event(request: web.Request) -> web.Response:
    """Validate and publish one event; 202 once the broker confirmed it."""
    state = request.app[STATE]
    key = authenticate(state.config, request)
    require_json(request)
    raw = parse_json(await read_body(request, state.config.max_body_bytes))
    try:
        body = PublishRequest.model_validate(raw)
    except ValidationError as exc:
        err = SchemaError.from_validation("publish request", exc)
        raise malformed(str(err), err.fields) from exc
    if not key.allows(body.type):
        raise GatewayError(
            403, "forbidden", f"API key {key.name!r} may not publish {body.type!r}", fields=["type"]
        )
    event = build_event(
        body.type,
        body.data,
        source=f"codebus/gateway/api/{key.name}",
        id=body.id,
        subject=body.subject,
        correlationid=body.correlationid,
    )
    await state.publish([event])
    return web.json_response({"status": "accepted", "id": event.id}, status=202)
