"""The audit trail (unit ``audit``): every event, once, in a Redis stream.

The stream entry is written in the same transaction as the inbox done-mark
(``ctx.on_commit``), so a redelivered event is never recorded twice.
"""

from __future__ import annotations

from bus.context import HandlerContext
from bus.router import Router
from schemas.envelope import Event

router = Router("audit")

MAX_ENTRIES = 1_000_000


@router.subscribe("#", name="audit.trail")
async def record(event: Event, ctx: HandlerContext) -> None:
    """Append the event to the audit stream."""
    names = ctx.names
    fields = {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "time": event.time.isoformat(),
        "correlationid": event.correlationid or "",
        "causationid": event.causationid or "",
        "event": event.to_json(),
    }
    ctx.on_commit(
        lambda pipe: pipe.xadd(names.event_log_stream, fields, maxlen=MAX_ENTRIES, approximate=True)
    )
