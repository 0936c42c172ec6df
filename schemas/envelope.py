"""The CloudEvents 1.0 envelope in structured JSON mode, with codebus extensions.

Attributes: ``specversion, id, source, type, time, subject, datacontenttype, data``
plus the extensions ``correlationid`` (the workflow, e.g. one deployment),
``causationid`` (the event that caused this one) and W3C ``traceparent``.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import SchemaError

#: Namespace for deterministic child ids: uuid5(namespace, cause id + position).
CHILD_ID_NAMESPACE = uuid.UUID("6f1c1d2e-8b0a-4c8e-9d57-3c1b7d0c0b5e")

_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


class Event(BaseModel):
    """One event on the bus: a CloudEvents 1.0 envelope whose ``data`` is a JSON object.

    ``data`` is kept as a plain dict here; :func:`schemas.events.validate_payload`
    turns it into the typed payload model registered for ``type``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="unique per source; printable (no control characters)",
    )
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(
        min_length=3,
        max_length=200,
        pattern=_TYPE_RE.pattern,
        description="dotted lower-case words such as 'deployment.requested'",
    )
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = Field(default=None, max_length=500)
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)
    correlationid: str | None = Field(default=None, max_length=200)
    causationid: str | None = Field(default=None, max_length=200)
    traceparent: str | None = Field(
        default=None,
        pattern=_TRACEPARENT_RE.pattern,
        description="W3C traceparent such as '00-<32 hex>-<16 hex>-01'",
    )

    def to_json(self) -> bytes:
        """Serialise in CloudEvents structured JSON mode, omitting unset extensions."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        """Parse a structured-mode CloudEvent; errors name the failing attribute."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise SchemaError.from_validation("event envelope", exc) from exc


def new_event(
    type: str,
    data: dict[str, Any] | BaseModel,
    *,
    source: str = "codebus",
    subject: str | None = None,
    correlationid: str | None = None,
    causationid: str | None = None,
    traceparent: str | None = None,
    id: str | None = None,
) -> Event:
    """Build an envelope with a fresh id; the correlation id defaults to the event id."""
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data)
    event_id = id or str(uuid.uuid4())
    try:
        return Event(
            id=event_id,
            source=source,
            type=type,
            subject=subject,
            data=payload,
            correlationid=correlationid or event_id,
            causationid=causationid,
            traceparent=traceparent,
        )
    except ValidationError as exc:
        raise SchemaError.from_validation("event envelope", exc) from exc


def child_event_id(cause_id: str, scope: str, type: str, seq: int) -> str:
    """Deterministic id for the ``seq``-th event of ``type`` that ``scope`` publishes
    while handling ``cause_id``: a redelivery republishes exactly the same ids."""
    return str(uuid.uuid5(CHILD_ID_NAMESPACE, f"{cause_id}\x1f{scope}\x1f{type}\x1f{seq}"))
