"""``POST /events``: the authenticated publish API.

Callers present an API key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
Keys live in the configuration only as SHA-256 hashes; each is scoped to event-type
patterns with RabbitMQ topic semantics, and may be limited to some ``data.app`` /
``data.environment`` values for deployment events.

Ids are minted by the gateway (:mod:`gateway.ids`), never taken as given: the event id
is keyed by the caller's API key and its ``Idempotency-Key`` (or body ``id``), and a
caller's ``correlationid`` is scoped to its key the same way. A retry of the same request
with the same idempotency key therefore maps to the same event id (safe to retry after a
503), and no key can produce an id or correlation id of another key's events.
"""

from __future__ import annotations

import fnmatch
import hmac
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.adapters import build_event
from gateway.http import parse_json, read_body, require_json
from gateway.ids import fingerprint, keyed_id
from gateway.problems import GatewayError, malformed, unauthorized
from gateway.replay import Claim
from gateway.state import STATE, GatewayState
from schemas.envelope import Event
from schemas.errors import SchemaError
from schemas.gateway_config import ApiKey, GatewayConfig
from schemas.webhooks import bearer_token, hash_api_key

routes = web.RouteTableDef()

IDEMPOTENCY_HEADER = "Idempotency-Key"
_MAX_KEY = 200


class PublishRequest(BaseModel):
    """Body of ``POST /events``."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200)
    data: dict[str, Any]
    subject: str | None = Field(default=None, max_length=500)
    id: str | None = Field(default=None, min_length=1, max_length=_MAX_KEY)
    correlationid: str | None = Field(default=None, min_length=1, max_length=200)


def authenticate(config: GatewayConfig, request: web.Request) -> tuple[ApiKey, str]:
    """The API key presented by ``request`` and its secret; 401 when absent or unknown."""
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
    return found, presented


def idempotency_key(request: web.Request, body: PublishRequest) -> str | None:
    """The request's idempotency key: the ``Idempotency-Key`` header or the body's ``id``."""
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is not None:
        header = header.strip()
        if not header or len(header) > _MAX_KEY or not header.isprintable():
            raise malformed(
                f"{IDEMPOTENCY_HEADER} must be 1-{_MAX_KEY} printable characters",
                [IDEMPOTENCY_HEADER],
            )
        if body.id is not None and body.id != header:
            raise malformed(
                f"{IDEMPOTENCY_HEADER} and the body's id differ; send one of them",
                [IDEMPOTENCY_HEADER, "id"],
            )
        return header
    return body.id


def check_deployment_scope(key: ApiKey, event: Event) -> None:
    """403 naming the field when ``key`` may not target this app or environment."""
    if not event.type.startswith("deployment."):
        return
    for field_name, allowed in (("app", key.apps), ("environment", key.environments)):
        if allowed is None:
            continue
        value = event.data.get(field_name)
        if not isinstance(value, str) or not any(fnmatch.fnmatchcase(value, p) for p in allowed):
            raise GatewayError(
                403,
                "forbidden",
                f"API key {key.name!r} may not publish {event.type} for "
                f"{field_name} {value!r} (allowed: {', '.join(allowed)})",
                fields=[f"data.{field_name}"],
            )


@routes.post("/events")
async def publish_event(request: web.Request) -> web.Response:
    """Validate and publish one event; 202 once the broker confirmed it."""
    state = request.app[STATE]
    key, secret = authenticate(state.config, request)
    require_json(request)
    raw = parse_json(
        await read_body(
            request, state.config.max_body_bytes, state.config.server.body_timeout_seconds
        )
    )
    try:
        body = PublishRequest.model_validate(raw)
    except ValidationError as exc:
        err = SchemaError.from_validation("publish request", exc)
        raise malformed(str(err), err.fields) from exc
    if not key.allows(body.type):
        raise GatewayError(
            403, "forbidden", f"API key {key.name!r} may not publish {body.type!r}", fields=["type"]
        )
    idem = idempotency_key(request, body)
    event = build_event(
        body.type,
        body.data,
        source=f"codebus/gateway/api/{key.name}",
        id=None if idem is None else keyed_id(secret, "api", key.name, idem),
        subject=body.subject,
        correlationid=(
            None
            if body.correlationid is None
            else keyed_id(secret, "correlation", key.name, body.correlationid)
        ),
    )
    check_deployment_scope(key, event)
    if idem is None:
        await state.publish([event])
        return _answer(event, "accepted", 202)
    return await _publish_idempotent(state, key, idem, body, event)


async def _publish_idempotent(
    state: GatewayState, key: ApiKey, idem: str, body: PublishRequest, event: Event
) -> web.Response:
    claim_key = state.names.idempotency_key(key.name, fingerprint(idem))
    request_print = fingerprint(json.dumps(body.model_dump(exclude={"id"}), sort_keys=True))
    ttl = state.config.idempotency_ttl_seconds
    claim = await state.replay.claim(claim_key, ttl, request_print)
    if claim is Claim.CONFLICT:
        raise GatewayError(
            422,
            "idempotency_key_reused",
            f"{IDEMPOTENCY_HEADER} {idem!r} was used for a different request",
            fields=[IDEMPOTENCY_HEADER],
        )
    if claim is Claim.PUBLISHED:
        return _answer(event, "duplicate", 200)
    if claim is Claim.PENDING:
        raise GatewayError(
            409,
            "in_progress",
            f"a request with {IDEMPOTENCY_HEADER} {idem!r} is being published; retry later",
            fields=[IDEMPOTENCY_HEADER],
            headers={"Retry-After": "1"},
        )
    try:
        await state.publish([event])
    except BaseException:
        await state.replay.release(claim_key)
        raise
    await state.replay.published(claim_key, ttl, request_print)
    return _answer(event, "accepted", 202)


def _answer(event: Event, status: str, code: int) -> web.Response:
    return web.json_response(
        {"status": status, "id": event.id, "correlationid": event.correlationid}, status=code
    )
