"""Which event a tool call was made for: the ids an audit record carries.

A tool call made while a handler processes an event records that event's ``event_id``,
its ``correlationid`` (the deployment it belongs to; the event's own id for a root
event) and its ``causationid`` (the event that caused it), so the console's correlation
view hangs the call under its event. The ids come from the caller's context, never from
the tool's arguments:

* :func:`call_origin` sets them for the calls made inside a ``with`` block (a context
  variable, so concurrent deliveries in one process do not mix);
* otherwise the toolbox asks the ``origin`` source it was built with (the worker passes
  the consumer middleware's current delivery, :func:`bus.middleware.logs.current_event_fields`).

Outside any event (a CLI ``codebus tools call``) the ids are None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

#: Returns the fields of the event being processed (``event_id``, ``correlationid``,
#: ``causationid``), or None outside one.
OriginSource = Callable[[], Mapping[str, Any] | None]


@dataclass(frozen=True)
class CallOrigin:
    """The event a tool call was made for."""

    event_id: str | None = None
    correlationid: str | None = None
    causationid: str | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> CallOrigin:
        """From an event's log fields; a root event is its own correlation."""
        event_id = _text(fields.get("event_id"))
        return cls(
            event_id=event_id,
            correlationid=_text(fields.get("correlationid")) or event_id,
            causationid=_text(fields.get("causationid")),
        )


NO_ORIGIN = CallOrigin()
_ORIGIN: ContextVar[CallOrigin | None] = ContextVar("codebus_tool_call_origin", default=None)


def _text(value: Any) -> str | None:
    return str(value) if value else None


@contextmanager
def call_origin(
    event_id: str, correlationid: str | None = None, causationid: str | None = None
) -> Iterator[CallOrigin]:
    """Tool calls made inside the block are audited as made for event ``event_id``."""
    origin = CallOrigin(event_id, correlationid or event_id, causationid)
    token = _ORIGIN.set(origin)
    try:
        yield origin
    finally:
        _ORIGIN.reset(token)


def current_origin(source: OriginSource | None = None) -> CallOrigin:
    """The origin set by :func:`call_origin`, else ``source``'s, else :data:`NO_ORIGIN`."""
    origin = _ORIGIN.get()
    if origin is not None:
        return origin
    if source is not None:
        fields = source()
        if fields:
            return CallOrigin.from_fields(fields)
    return NO_ORIGIN
