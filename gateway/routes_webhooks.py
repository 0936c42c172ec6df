"""``POST /webhooks/{source}``: verify, map, deduplicate and publish inbound webhooks.

Checks run cheapest-first and never publish before authentication:
unknown source 404 -> content type 415 -> (alertmanager token 401) -> size 413 ->
signature/timestamp 401 -> JSON/mapping 400/403 -> replay 409 -> publish 503/202.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from gateway.adapters import alertmanager_events, github_events, standard_events
from gateway.http import parse_json, read_body, require_json
from gateway.problems import GatewayError, malformed, unauthorized
from gateway.replay import Claim
from gateway.state import STATE, GatewayState
from schemas.envelope import Event
from schemas.gateway_config import Source, SourceKind
from schemas.webhooks import (
    WebhookVerificationError,
    bearer_token,
    tokens_equal,
    verify,
    verify_github,
)

routes = web.RouteTableDef()

_MAX_ID = 200


@routes.post("/webhooks/{source}")
async def receive_webhook(request: web.Request) -> web.Response:
    """Accept one webhook delivery from a configured source."""
    state = request.app[STATE]
    source = state.config.source(request.match_info["source"])
    if source is None:
        raise GatewayError(404, "unknown_source", "no webhook source of that name")
    require_json(request)
    if source.kind is SourceKind.ALERTMANAGER:
        _check_token(request, source)
    body = await read_body(
        request, state.config.max_body_bytes, state.config.server.body_timeout_seconds
    )

    if source.kind is SourceKind.STANDARD:
        delivery_id = _verify_standard(request, source, body, state)
        events = standard_events(source, parse_json(body), delivery_id)
    elif source.kind is SourceKind.GITHUB:
        delivery_id, event_name = _verify_github(request, source, body)
        events = github_events(source, event_name, delivery_id, parse_json(body))
    else:
        delivery_id = None
        events = alertmanager_events(source, parse_json(body))

    if not events:
        return web.json_response({"status": "ignored", "ids": []}, status=200)
    if delivery_id is None:
        # Alertmanager has no delivery id; its deterministic event ids dedupe downstream.
        await state.publish(events)
        return _accepted(events)
    return await _publish_once(state, source, delivery_id, body, events)


async def _publish_once(
    state: GatewayState, source: Source, delivery_id: str, body: bytes, events: list[Event]
) -> web.Response:
    """Publish unless this delivery (or, for GitHub, this body) was seen in the window.

    GitHub does not sign ``X-GitHub-Delivery``, so a captured body re-sent under fresh
    delivery ids would pass an id check alone: GitHub deliveries also claim the body's
    SHA-256 (issue 14, V6). Standard Webhooks sign the id with the body and a timestamp,
    so their id claim suffices.
    """
    ttl = source.replay_ttl
    delivery_key = state.names.replay_key(source.name, delivery_id)
    claim = await state.replay.claim(delivery_key, ttl)
    if claim is Claim.PUBLISHED and source.kind is SourceKind.GITHUB:
        # GitHub's "Redeliver" reuses the delivery id: acknowledge, publish nothing.
        return web.json_response(
            {"status": "duplicate", "id": events[0].id, "ids": [e.id for e in events]}
        )
    if claim is not Claim.NEW:
        raise GatewayError(409, "replay", f"webhook id {delivery_id!r} was already received")
    keys = [delivery_key]
    if source.kind is SourceKind.GITHUB:
        body_key = state.names.replay_body_key(source.name, hashlib.sha256(body).hexdigest())
        if await state.replay.claim(body_key, ttl) is not Claim.NEW:
            await state.replay.release(delivery_key)
            raise GatewayError(
                409, "replay", "this body was already received under another delivery id"
            )
        keys.append(body_key)
    try:
        await state.publish(events)
    except BaseException:
        await state.replay.release(*keys)
        raise
    for key in keys:
        await state.replay.published(key, ttl)
    return _accepted(events)


def _accepted(events: list[Event]) -> web.Response:
    return web.json_response(
        {"status": "accepted", "id": events[0].id, "ids": [e.id for e in events]}, status=202
    )


def _check_token(request: web.Request, source: Source) -> None:
    assert source.token is not None  # guaranteed by the Source model
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise unauthorized(
            "missing_token", "Authorization: Bearer <token> required", scheme="Bearer"
        )
    if not tokens_equal(token, source.token.get_secret_value()):
        raise unauthorized("bad_token", "bearer token does not match", scheme="Bearer")


def _verify_standard(request: web.Request, source: Source, body: bytes, state: GatewayState) -> str:
    assert source.secret is not None
    msg_id = request.headers.get("webhook-id")
    try:
        verify(
            source.secret.get_secret_value(),
            msg_id,
            request.headers.get("webhook-timestamp"),
            body,
            request.headers.get("webhook-signature"),
            now=state.clock(),
            tolerance=source.tolerance_seconds,
        )
    except WebhookVerificationError as exc:
        raise unauthorized(exc.reason, str(exc)) from exc
    assert msg_id is not None
    if len(msg_id) > _MAX_ID:
        raise malformed(f"webhook-id longer than {_MAX_ID} characters", ["webhook-id"])
    return msg_id


def _verify_github(request: web.Request, source: Source, body: bytes) -> tuple[str, str]:
    assert source.secret is not None
    try:
        verify_github(
            source.secret.get_secret_value(), body, request.headers.get("X-Hub-Signature-256")
        )
    except WebhookVerificationError as exc:
        raise unauthorized(exc.reason, str(exc)) from exc
    delivery = request.headers.get("X-GitHub-Delivery", "").strip()
    event_name = request.headers.get("X-GitHub-Event", "").strip()
    if not delivery or len(delivery) > _MAX_ID:
        raise malformed("X-GitHub-Delivery header is required", ["X-GitHub-Delivery"])
    if not event_name:
        raise malformed("X-GitHub-Event header is required", ["X-GitHub-Event"])
    return delivery, event_name
