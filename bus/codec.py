"""Encoding events into broker messages and back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bus.abc import Message
from schemas.envelope import Event
from schemas.names import HEADER_TRACEPARENT


def encode(event: Event, headers: Mapping[str, Any] | None = None) -> Message:
    """The message for ``event``: structured-mode JSON body, routing key = type,
    AMQP message_id = event id, traceparent copied into a header."""
    merged: dict[str, Any] = dict(headers or {})
    if event.traceparent:
        merged.setdefault(HEADER_TRACEPARENT, event.traceparent)
    return Message(
        body=event.to_json(), routing_key=event.type, message_id=event.id, headers=merged
    )


def decode(message: Message) -> Event:
    """Parse the envelope; raises ``schemas.SchemaError`` naming the bad attribute."""
    return Event.from_json(message.body)
