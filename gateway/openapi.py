"""The OpenAPI 3.1 document of the gateway, written by hand beside the routes.

Payload schemas come from the event registry, so ``POST /events`` is described with one
alternative per registered event type (``type`` const + its ``data`` model).
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from schemas.events import EVENT_TYPES

_REF = "#/components/schemas/{model}"


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Problem")}}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_UNAVAILABLE = _problem(
    "Two kinds, told apart by 'error' and 'accepted'. error 'unavailable' (accepted: "
    "false): nothing was published (broker or Redis unreachable, broker nack, no queue "
    "bound for the type); retry after Retry-After. error 'outcome_unknown' (accepted: "
    "'unknown'): an event was sent but the broker's confirm never came, so it may still "
    "be delivered; retry the SAME request (same Idempotency-Key / webhook id / delivery): "
    "it maps to the same event ids ('ids'), which subscribers deduplicate. Without an "
    "Idempotency-Key or id, POST /events mints a new id per request and a retry may be "
    "processed twice.",
    _RETRY_AFTER,
)
_ACCEPTED = {
    "description": "Published; the broker confirmed every event.",
    "content": {"application/json": {"schema": {"$ref": _REF.format(model="Accepted")}}},
}


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def _webhook_operation() -> dict[str, Any]:
    return {
        "summary": "Receive a webhook from a configured source",
        "description": (
            "Authentication depends on the source's kind. standard: Standard Webhooks "
            "headers (HMAC-SHA256 over id.timestamp.body, 5-minute tolerance, ids "
            "single-use). github: X-Hub-Signature-256 over the raw body; X-GitHub-Delivery "
            "is the idempotency id. alertmanager: Authorization: Bearer <token>; one event "
            "per alert."
        ),
        "operationId": "receiveWebhook",
        "parameters": [
            {
                "name": "source",
                "in": "path",
                "required": True,
                "description": "Name of a configured source.",
                "schema": {"type": "string"},
            },
            _header("webhook-id", "standard: unique message id (replay key)."),
            _header("webhook-timestamp", "standard: Unix seconds of signing."),
            _header("webhook-signature", "standard: space-separated 'v1,<base64>' values."),
            _header("X-Hub-Signature-256", "github: 'sha256=<hex HMAC of the body>'."),
            _header("X-GitHub-Event", "github: event name (push, workflow_run, ...)."),
            _header("X-GitHub-Delivery", "github: delivery GUID, kept on redelivery."),
            _header("Authorization", "alertmanager: 'Bearer <token>'."),
        ],
        "requestBody": {
            "required": True,
            "description": "The sender's JSON document (at most max_body_bytes, default 1 MiB).",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": _REF.format(model="StandardWebhookBody")},
                            {"$ref": _REF.format(model="AlertmanagerWebhook")},
                            {"type": "object", "description": "GitHub event payload."},
                        ]
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "Nothing published: no rule matched ('ignored'), or a GitHub "
                "redelivery of an already published delivery ('duplicate').",
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model="Accepted")}}
                },
            },
            "202": _ACCEPTED,
            "400": _problem(
                "Malformed body or headers, or a bound crossed (error 'limit': number "
                "digits, nesting depth); 'fields' names them."
            ),
            "401": _problem("Missing or invalid signature, timestamp or token."),
            "403": _problem("The source may not publish this event type."),
            "404": _problem("No source of that name."),
            "409": _problem(
                "Replay: this webhook id (or, for GitHub, this body) was already received."
            ),
            "408": _problem("The body did not arrive within server.body_timeout_seconds."),
            "413": _problem("Body larger than the configured limit."),
            "415": _problem("Content-Type is not application/json."),
            "503": _UNAVAILABLE,
        },
    }


def _events_operation() -> dict[str, Any]:
    return {
        "summary": "Publish one event",
        "operationId": "publishEvent",
        "description": (
            "Send an Idempotency-Key (or the body's 'id') with every request you may "
            "retry: the event id is derived from it and your API key, a retry after a 503 "
            "publishes the same id (subscribers drop the copy), and a retry after success "
            "answers 200 'duplicate' without publishing. A caller's 'correlationid' is "
            "scoped to its API key."
        ),
        "security": [{"bearer": []}, {"apiKey": []}],
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "1-200 printable characters naming this request; reusing "
                "it for a different request is a 422. Remembered for "
                "idempotency_ttl_seconds (default 24 h).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model="PublishRequest")}}
            },
        },
        "responses": {
            "200": {
                "description": "'duplicate': this Idempotency-Key was already published; "
                "nothing was published again.",
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model="Accepted")}}
                },
            },
            "202": _ACCEPTED,
            "400": _problem(
                "Malformed request or payload, or a bound crossed (error 'limit'); "
                "'fields' names them (data.<field>)."
            ),
            "401": _problem("Missing or unknown API key."),
            "403": _problem(
                "The API key's scopes do not cover this event type, or (deployment "
                "events) its apps/environments do not cover data.app/data.environment."
            ),
            "409": _problem(
                "A request with this Idempotency-Key is being published right now.",
                _RETRY_AFTER,
            ),
            "422": _problem("This Idempotency-Key was used for a different request."),
            "408": _problem("The body did not arrive within server.body_timeout_seconds."),
            "413": _problem("Body larger than the configured limit."),
            "415": _problem("Content-Type is not application/json."),
            "503": _UNAVAILABLE,
        },
    }


def _simple_get(summary: str, op_id: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "operationId": op_id, "responses": responses}}


def _event_bodies(models: list[tuple[str, Any]], *, with_ids: bool) -> list[dict[str, Any]]:
    """One alternative per event type: ``type`` const plus its ``data`` model."""
    alternatives = []
    for event_type, model in models:
        props: dict[str, Any] = {
            "type": {"const": event_type},
            "data": {"$ref": _REF.format(model=model.__name__)},
            "subject": {"type": "string", "maxLength": 500},
        }
        if with_ids:
            props["id"] = {"type": "string", "minLength": 1, "maxLength": 200}
            props["correlationid"] = {"type": "string", "minLength": 1, "maxLength": 200}
        alternatives.append(
            {
                "type": "object",
                "required": ["type", "data"],
                "additionalProperties": False,
                "properties": props,
            }
        )
    return alternatives


def _alertmanager_schema() -> dict[str, Any]:
    labels = {"type": "object", "additionalProperties": {"type": "string"}}
    alert = {
        "type": "object",
        "required": ["status", "startsAt", "fingerprint"],
        "properties": {
            "status": {"enum": ["firing", "resolved"]},
            "labels": labels,
            "annotations": labels,
            "startsAt": {"type": "string", "minLength": 1},
            "endsAt": {"type": "string"},
            "generatorURL": {"type": "string"},
            "fingerprint": {"type": "string", "minLength": 1, "maxLength": 200},
        },
    }
    return {
        "description": "Alertmanager webhook (version 4); one event per alert.",
        "type": "object",
        "required": ["alerts"],
        "properties": {
            "version": {"const": "4"},
            "status": {"type": "string"},
            "receiver": {"type": "string"},
            "groupKey": {"type": "string"},
            "groupLabels": labels,
            "commonLabels": labels,
            "commonAnnotations": labels,
            "externalURL": {"type": "string"},
            "alerts": {"type": "array", "items": alert, "maxItems": 1000},
        },
    }


def _components() -> dict[str, Any]:
    models = sorted(EVENT_TYPES.items())
    _, top = models_json_schema([(model, "validation") for _, model in models], ref_template=_REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["PublishRequest"] = {"oneOf": _event_bodies(models, with_ids=True)}
    schemas["StandardWebhookBody"] = {
        "description": "Body of a standard source without mapping rules.",
        "oneOf": _event_bodies(models, with_ids=False),
    }
    schemas["AlertmanagerWebhook"] = _alertmanager_schema()
    schemas["Problem"] = {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "fields": {"type": "array", "items": {"type": "string"}},
            "accepted": {
                "description": "503 only: false (nothing published) or 'unknown'.",
                "enum": [False, "unknown"],
            },
            "ids": {
                "description": "503 only: the event ids this request maps to.",
                "type": "array",
                "items": {"type": "string"},
            },
        },
    }
    schemas["Accepted"] = {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["accepted", "duplicate", "ignored"]},
            "id": {"type": "string"},
            "ids": {"type": "array", "items": {"type": "string"}},
            "correlationid": {"type": "string"},
        },
    }
    return {
        "schemas": schemas,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        },
    }


def openapi_document() -> dict[str, Any]:
    """The document served at ``GET /openapi.json``."""
    ready = {
        "description": "Broker and Redis both answer.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "codebus gateway",
            "version": "0.1.0",
            "description": "Signed inbound webhooks and an authenticated publish API. "
            "A 2xx is only returned for events the broker confirmed.",
        },
        "paths": {
            "/webhooks/{source}": {"post": _webhook_operation()},
            "/events": {"post": _events_operation()},
            "/healthz": _simple_get(
                "Liveness",
                "healthz",
                {
                    "200": {
                        "description": "Alive.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            ),
            "/readyz": _simple_get(
                "Readiness: broker ping and Redis PING",
                "readyz",
                {
                    "200": ready,
                    "503": {
                        "description": "A dependency is down; 'checks' says which.",
                        "headers": _RETRY_AFTER,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            ),
            "/metrics": _simple_get(
                "Prometheus metrics",
                "metrics",
                {
                    "200": {
                        "description": "Text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            ),
            "/openapi.json": _simple_get(
                "This document",
                "openapi",
                {
                    "200": {
                        "description": "OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            ),
        },
        "components": _components(),
    }
