"""Typed data for codebus: the CloudEvents envelope, event payloads and tool arguments.

This package imports only pydantic and the standard library and does no I/O.
"""

from schemas.envelope import Event, child_event_id, new_event
from schemas.errors import SchemaError, UnknownEventType
from schemas.events import EVENT_TYPES, payload_model, validate_payload

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
