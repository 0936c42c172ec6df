"""Record writes that are never silently skipped: an outbox in Redis.

Every record a flow leaves (the journal record of one rev and the summary) is first put
into a Redis hash, then written to the repository, then taken out of the hash. A write
that fails - S3 down, the breaker open, a crash half-way - stays in the hash, and
:meth:`RecordOutbox.flush` (called by the units' periodic sweeps) writes it again until
it lands. Writing twice is harmless: a journal object is immutable (the same content
again is a no-op) and a summary never replaces one with a later ``rev``.

The state in Redis stays the authority: a failed write never holds a flow up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flows.repository import FlowRepository, JournalConflict, RepositoryError
from schemas.workflows import FlowRecord, JournalRecord

log = logging.getLogger("codebus.flows.repository")

#: Records one flush writes at most (the next sweep goes on).
FLUSH_LIMIT = 100


@dataclass
class Flushed:
    """What one flush did: records written, records that failed again, records left."""

    written: int
    failed: int
    left: int


class RecordOutbox:
    """The records of ``repository`` waiting in the Redis hash ``key``."""

    def __init__(self, repository: FlowRepository, redis: Any, key: str) -> None:
        self.repository = repository
        self.redis = redis
        self.key = key

    async def write(self, journal: JournalRecord, record: FlowRecord) -> bool:
        """Put the pair into the outbox, write it, take it out; False (logged, left in
        the outbox) when the repository refused."""
        field = f"{journal.flow_id}\x1f{journal.rev:010d}"
        body = json.dumps(
            {"journal": journal.model_dump(mode="json"), "record": record.model_dump(mode="json")}
        )
        await self.redis.hset(self.key, field, body)
        return await self._write(field, journal, record)

    async def _write(self, field: str, journal: JournalRecord, record: FlowRecord) -> bool:
        try:
            await self.repository.append(journal)
            await self.repository.save(record)
        except JournalConflict as exc:
            # Another content under this rev is there already: it can never be written.
            log.error("flow %s rev %d: journal conflict, dropped: %s", *_ids(journal), exc)
        except RepositoryError as exc:
            log.error("flow %s rev %d: record not written yet: %s", *_ids(journal), exc)
            return False
        await self.redis.hdel(self.key, field)
        return True

    async def pending(self) -> int:
        """Records still waiting."""
        return int(await self.redis.hlen(self.key))

    async def flush(self, limit: int = FLUSH_LIMIT) -> Flushed:
        """Write the waiting records, oldest rev of each flow first; stop at the first
        failure (the repository is still down: the next sweep tries again)."""
        fields = sorted(_text(f) for f in await self.redis.hkeys(self.key))[:limit]
        written = failed = 0
        for field in fields:
            raw = await self.redis.hget(self.key, field)
            if raw is None:
                continue  # written meanwhile by the delivery that queued it
            body = json.loads(raw)
            journal = JournalRecord.model_validate(body["journal"])
            record = FlowRecord.model_validate(body["record"])
            if await self._write(field, journal, record):
                written += 1
            else:
                failed += 1
                break
        return Flushed(written, failed, await self.pending())


def outbox_from(deps: Mapping[str, Any]) -> RecordOutbox | None:
    """The records' outbox of a worker's repository (None without a repository)."""
    from flows.repository_s3 import repository_from

    repository = repository_from(deps)
    if repository is None:
        return None
    return RecordOutbox(repository, deps["redis"], deps["names"].flow_records_outbox_key)


async def flush_records(deps: Mapping[str, Any], logger: Any = log) -> int:
    """Write what the outbox holds (a sweep's chore); the number of records left."""
    outbox = outbox_from(deps)
    if outbox is None:
        return 0
    if not await outbox.pending():
        return 0
    done = await outbox.flush()
    if done.written or done.failed:
        logger.warning(
            "records outbox: %d written late, %d still failing, %d left",
            done.written,
            done.failed,
            done.left,
        )
    return done.left


def _ids(journal: JournalRecord) -> tuple[str, int]:
    return journal.flow_id, journal.rev


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
