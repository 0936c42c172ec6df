"""The event catalogue as an AsyncAPI 3.0 document, built from the event registry.

One channel per event type (its address is the routing key on the events exchange),
one message per type: the CloudEvents 1.0 envelope in structured JSON mode whose
``type`` is fixed and whose ``data`` is that type's payload schema. The document is
built from :data:`schemas.events.EVENT_TYPES` when asked for, so types registered later
(flow events, user extensions) appear without touching this module::

    doc = build_asyncapi(version="0.1.0", server="rabbitmq.internal:5672")
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from schemas.envelope import Event
from schemas.events import EVENT_TYPES
from schemas.names import DEFAULT_NAMES, HEADER_ATTEMPT, HEADER_TRACEPARENT, Names

ASYNCAPI_VERSION = "3.0.0"
#: The AMQP content type of every event (``bus.abc.CONTENT_TYPE``; schemas/ cannot
#: import bus/, a test keeps the two equal).
CONTENT_TYPE = "application/cloudevents+json"
AMQP_BINDING_VERSION = "0.3.0"
_REF = "#/components/schemas/{model}"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _component_id(text: str) -> str:
    # Component and channel keys must match ^[a-zA-Z0-9.\-_]+$.
    return _ID_UNSAFE.sub("_", text)


def _hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """Move pydantic's ``$defs`` into ``components.schemas`` (refs already point there)."""
    for name, definition in schema.pop("$defs", {}).items():
        into.setdefault(_component_id(name), definition)
    return schema


def _model_schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of ``model`` registered under its name; returns a ref to it."""
    name = _component_id(model.__name__)
    existing = schemas.get(name)
    schema = _hoist(model.model_json_schema(ref_template=_REF), schemas)
    if existing is not None and existing != schema:
        # Two registered models share a class name: keep both, qualified by module.
        name = _component_id(f"{model.__module__}.{model.__name__}")
    schemas[name] = schema
    return {"$ref": _REF.format(model=name)}


def _envelope_schema(schemas: dict[str, Any]) -> dict[str, Any]:
    envelope = _hoist(Event.model_json_schema(ref_template=_REF), schemas)
    envelope["description"] = (
        "CloudEvents 1.0, structured JSON mode, with the codebus extensions "
        "correlationid (the workflow), causationid (the event that caused this one) "
        "and W3C traceparent."
    )
    return envelope


def _message(type_: str, payload_ref: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    doc = (model.__doc__ or "").strip().splitlines()
    return {
        "name": type_,
        "title": type_,
        "summary": doc[0] if doc else f"A {type_} event.",
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "properties": {
                HEADER_TRACEPARENT: {
                    "type": "string",
                    "description": "W3C traceparent, copied from the envelope",
                },
                HEADER_ATTEMPT: {
                    "type": "integer",
                    "minimum": 1,
                    "description": "delivery attempt, set on redeliveries after a retry",
                },
            },
        },
        "payload": {
            "allOf": [
                {"$ref": _REF.format(model="CloudEvent")},
                {
                    "type": "object",
                    "required": ["type", "data"],
                    "properties": {"type": {"const": type_}, "data": payload_ref},
                },
            ]
        },
        "correlationId": {
            "description": "The workflow this event belongs to (one deployment).",
            "location": "$message.payload#/correlationid",
        },
        "bindings": {
            "amqp": {"messageType": type_, "bindingVersion": AMQP_BINDING_VERSION},
        },
    }


def build_asyncapi(
    *,
    version: str,
    server: str = "localhost:5672",
    names: Names = DEFAULT_NAMES,
    registry: Mapping[str, type[BaseModel]] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every registered event type.

    ``server`` is ``host:port`` of the broker (no credentials), ``version`` the
    catalogue's version (the codebus release), ``registry`` defaults to the live
    :data:`~schemas.events.EVENT_TYPES`.
    """
    types = dict(EVENT_TYPES if registry is None else registry)
    schemas: dict[str, Any] = {}
    schemas["CloudEvent"] = _envelope_schema(schemas)
    exchange = names.events_exchange
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for type_ in sorted(types):
        model = types[type_]
        key = _component_id(type_)
        messages[key] = _message(type_, _model_schema(model, schemas), model)
        channels[key] = {
            "address": type_,
            "title": type_,
            "description": f"Routing key {type_!r} on the topic exchange {exchange!r}.",
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": exchange,
                        "type": "topic",
                        "durable": True,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        channel_ref = {"$ref": f"#/channels/{key}"}
        message_ref = [{"$ref": f"#/channels/{key}/messages/{key}"}]
        operations[f"publish.{key}"] = {
            "action": "send",
            "channel": channel_ref,
            "summary": f"Publish {type_} (persistent, publisher-confirmed, mandatory).",
            "messages": copy.deepcopy(message_ref),
        }
        operations[f"consume.{key}"] = {
            "action": "receive",
            "channel": channel_ref,
            "summary": f"Subscriptions whose patterns match {type_} receive it.",
            "messages": copy.deepcopy(message_ref),
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "codebus events",
            "version": version,
            "description": (
                "Events on the codebus bus. Routing key = CloudEvents type; every "
                "subscription owns a durable queue bound with its patterns; failed "
                "events go to the dead-letter queue with their reason."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "rabbitmq": {
                "host": server,
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The RabbitMQ broker holding the events exchange.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
