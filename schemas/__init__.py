"""Typed data for codebus: the CloudEvents envelope, event payloads and tool arguments.

This package imports only pydantic and the standard library and does no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schemas.envelope import Event, child_event_id, new_event
from schemas.errors import SchemaError, UnknownEventType

if TYPE_CHECKING:
    from schemas.events import EVENT_TYPES, payload_model, validate_payload

_EVENTS = ("EVENT_TYPES", "payload_model", "validate_payload")


def __getattr__(name: str) -> Any:
    # schemas.events builds every built-in payload model: imported on first use only.
    if name in _EVENTS:
        from schemas import events

        return getattr(events, name)
    raise AttributeError(f"module 'schemas' has no attribute {name!r}")


__all__ = [
    "EVENT_TYPES",
    "Event",
    "SchemaError",
    "UnknownEventType",
    "child_event_id",
    "new_event",
    "payload_model",
    "validate_payload",
]
