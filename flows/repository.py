"""The deployment repository (the guide's Repository pattern): where flows leave their
record for people to read after Redis has let the live state go.

Two kinds of object per flow:

- a **summary** (:class:`FlowRecord`), rewritten as the flow moves on; a write never
  replaces a summary of a later ``rev``, so a slow writer cannot roll the record back;
- **journal records** (:class:`JournalRecord`), one per ``rev``, immutable: writing a
  ``rev`` that exists with the same content is a no-op, with other content an error
  (:class:`JournalConflict`) - never an overwrite.

RepositoryError
├── JournalConflict     a journal record of this rev exists with other content
└── RepositoryUnavailable   the store could not be read or written (retry later)

:class:`InMemoryRepository` is the embedded mode's and the tests' implementation;
``flows.repository_s3`` keeps the same records in S3 through the ``s3-storage`` tools.
"""

from __future__ import annotations

from typing import Protocol

from schemas.workflows import FlowRecord, JournalRecord, RecordFilter


class RepositoryError(Exception):
    """Root of the repository's errors; ``flow_id`` names the flow concerned."""

    def __init__(self, message: str, *, flow_id: str | None = None) -> None:
        super().__init__(message)
        self.flow_id = flow_id


class JournalConflict(RepositoryError):
    """A journal record of this flow and rev exists with different content."""


class RepositoryUnavailable(RepositoryError):
    """The store failed in a way worth retrying (network, throttling, contention)."""


class FlowRepository(Protocol):
    """Save, read and list flow records."""

    async def save(self, record: FlowRecord) -> bool:
        """Store the summary unless a summary of a later ``rev`` is stored; True if
        written."""
        ...

    async def append(self, entry: JournalRecord) -> bool:
        """Store a journal record; False if the same record is stored already.
        Raises :class:`JournalConflict` if a different one holds its ``rev``."""
        ...

    async def get(self, flow_id: str) -> FlowRecord | None:
        """The flow's summary, or None."""
        ...

    async def journal(self, flow_id: str) -> list[JournalRecord]:
        """The flow's journal records, oldest ``rev`` first."""
        ...

    async def list(self, filters: RecordFilter) -> list[FlowRecord]:
        """Summaries matching ``filters``, newest first, at most ``filters.limit``."""
        ...


class InMemoryRepository:
    """Records in dicts, with the same rules as the S3 repository."""

    def __init__(self) -> None:
        self.records: dict[str, FlowRecord] = {}
        self.journals: dict[str, dict[int, JournalRecord]] = {}

    async def save(self, record: FlowRecord) -> bool:
        """See :meth:`FlowRepository.save`."""
        current = self.records.get(record.id)
        if current is not None and current.rev > record.rev:
            return False
        self.records[record.id] = record.model_copy(deep=True)
        return True

    async def append(self, entry: JournalRecord) -> bool:
        """See :meth:`FlowRepository.append`."""
        entries = self.journals.setdefault(entry.flow_id, {})
        existing = entries.get(entry.rev)
        if existing is not None:
            if existing == entry:
                return False
            raise JournalConflict(
                f"flow {entry.flow_id}: journal rev {entry.rev} exists with other content",
                flow_id=entry.flow_id,
            )
        entries[entry.rev] = entry.model_copy(deep=True)
        return True

    async def get(self, flow_id: str) -> FlowRecord | None:
        """See :meth:`FlowRepository.get`."""
        record = self.records.get(flow_id)
        return None if record is None else record.model_copy(deep=True)

    async def journal(self, flow_id: str) -> list[JournalRecord]:
        """See :meth:`FlowRepository.journal`."""
        entries = self.journals.get(flow_id, {})
        return [entries[rev].model_copy(deep=True) for rev in sorted(entries)]

    async def list(self, filters: RecordFilter) -> list[FlowRecord]:
        """See :meth:`FlowRepository.list`."""
        chosen = [r for r in self.records.values() if filters.matches(r)]
        chosen.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return [r.model_copy(deep=True) for r in chosen[: filters.limit]]
