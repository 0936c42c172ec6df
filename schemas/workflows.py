"""Records of flows (deployments, pipelines, sagas) as the deployment repository keeps
them: one summary per flow, rewritten as the flow moves on, and immutable journal
entries, one per version of the flow.

Every model is closed (``extra="forbid"``): a misspelt key is an error naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FlowKind = Literal["deployment", "pipeline", "saga"]

# Flow ids are minted by codebus (uuids, ``dep-...``); they end up in object keys.
_FLOW_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _check_flow_id(value: str) -> str:
    if not _FLOW_ID.match(value):
        raise ValueError(
            "flow ids are 1-128 letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return value


class FlowRecord(BaseModel):
    """The summary of one flow: what it is, where it stands, and why.

    ``rev`` is the flow's version: a summary never replaces one with a higher ``rev``.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: FlowKind
    rev: int = Field(ge=0)
    name: str | None = Field(None, description="pipeline or saga name; None for deployments")
    app: str | None = None
    environment: str | None = None
    version: str | None = None
    strategy: str | None = None
    phase: str = Field(min_length=1)
    terminal: bool = False
    step: int | None = None
    step_name: str | None = None
    reason: str | None = None
    evidence: str | None = None
    created_at: float = Field(ge=0, description="epoch seconds")
    updated_at: float = Field(ge=0)
    detail: dict[str, Any] = Field(
        default_factory=dict, description="kind-specific: inputs, context, failed step, ..."
    )

    _id = field_validator("id")(_check_flow_id)

    @property
    def created(self) -> datetime:
        """``created_at`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.created_at, UTC)


class JournalRecord(BaseModel):
    """One immutable journal entry: the flow at version ``rev`` and the steps taken to
    reach it. Stored under a key that includes ``rev`` and never overwritten."""

    model_config = ConfigDict(extra="forbid")

    flow_id: str
    rev: int = Field(ge=0)
    at: float = Field(ge=0)
    phase: str = Field(min_length=1)
    step: int | None = None
    entries: list[dict[str, Any]] = Field(default_factory=list)

    _id = field_validator("flow_id")(_check_flow_id)


class RecordFilter(BaseModel):
    """What ``list`` selects: every given field must match; times are epoch seconds,
    ``since`` inclusive and ``until`` exclusive, on the flow's creation time."""

    model_config = ConfigDict(extra="forbid")

    kind: FlowKind | None = None
    app: str | None = Field(None, min_length=1)
    environment: str | None = Field(None, min_length=1)
    phase: str | None = Field(None, min_length=1)
    since: float | None = Field(None, ge=0)
    until: float | None = Field(None, ge=0)
    limit: int = Field(100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _ordered_range(self) -> RecordFilter:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be later than since")
        return self

    def matches(self, record: FlowRecord) -> bool:
        """Whether ``record`` passes every given condition."""
        checks = (
            (self.kind, record.kind),
            (self.app, record.app),
            (self.environment, record.environment),
            (self.phase, record.phase),
        )
        if any(want is not None and want != got for want, got in checks):
            return False
        if self.since is not None and record.created_at < self.since:
            return False
        return self.until is None or record.created_at < self.until
