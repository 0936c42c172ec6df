"""The base type of event payloads, apart from codebus's own models (``schemas.events``)
so that handler authors importing it do not build the built-in catalogue."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Payload(BaseModel):
    """Base class of event payloads: strict, closed, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
