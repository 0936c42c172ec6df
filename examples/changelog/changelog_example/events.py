"""The event types this package adds to codebus's catalogue."""

from __future__ import annotations

from pydantic import Field

from codebus import Payload


class ChangeRecorded(Payload):
    """CI recorded a change to ``service``."""

    service: str = Field(min_length=1, max_length=100)
    version: str = Field(min_length=1, max_length=128)
    summary: str = Field(min_length=1, max_length=500)
    author: str = "ci"


class ChangelogEntryAdded(Payload):
    """The change is in the changelog, at ``position`` (1 = first entry)."""

    service: str
    version: str
    position: int = Field(ge=1)


EVENT_TYPES = {
    "change.recorded": ChangeRecorded,
    "changelog.entry_added": ChangelogEntryAdded,
}
