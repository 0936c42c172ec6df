"""The outbound delivery log: one record per (event id, subscription) in Redis.

Records live in the hash ``Names.deliveries_key``; the sorted set
``Names.deliveries_index_key`` orders them by last update so that the log stays bounded
(the oldest records are dropped beyond ``max_records``). Each attempt updates its record
atomically in a Lua script: attempts are counted exactly, never lost to a race between
two workers.

The log is also how a retried event skips subscriptions that already succeeded.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from schemas.names import Names
from tools.webhooks.redact import redact_url, redact_urls_in, scrub

State = Literal["succeeded", "retrying", "failed"]

_RECORD = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local rec
if cur then
  rec = cjson.decode(cur)
else
  rec = cjson.decode(ARGV[3])
  rec['attempts'] = 0
  rec['first_attempt_at'] = tonumber(ARGV[2])
end
local upd = cjson.decode(ARGV[4])
for k, v in pairs(upd) do rec[k] = v end
rec['attempts'] = rec['attempts'] + 1
rec['last_attempt_at'] = tonumber(ARGV[2])
if upd['state'] == 'succeeded' then rec['succeeded_at'] = tonumber(ARGV[2]) end
local encoded = cjson.encode(rec)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local n = redis.call('ZCARD', KEYS[2])
local max = tonumber(ARGV[5])
if n > max then
  local old = redis.call('ZRANGE', KEYS[2], 0, n - max - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - max - 1)
  redis.call('HDEL', KEYS[1], unpack(old))
end
return encoded
"""


class DeliveryRecord(BaseModel):
    """What happened to one event at one subscription."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    subscription: str
    url: str
    event_id: str
    event_type: str
    state: State
    status_code: int | None = None
    attempts: int
    last_error: str | None = None
    first_attempt_at: float
    last_attempt_at: float
    succeeded_at: float | None = None

    # Records written before URLs were redacted are cleaned on the way out.
    @field_validator("url")
    @classmethod
    def _redact_url(cls, value: str) -> str:
        return redact_url(value)

    @field_validator("last_error")
    @classmethod
    def _redact_error(cls, value: str | None) -> str | None:
        return None if value is None else redact_urls_in(value)


def record_id(event_id: str, subscription: str) -> str:
    """The hash field of one (event, subscription) record."""
    return f"{subscription}\x1f{event_id}"


#: Most delivery-log commands in flight per Redis client, whatever the number of
#: ``DeliveryLog`` objects sharing it, bounded by the client's pool.
MAX_REDIS_CONCURRENCY = 32
_SLOTS: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _slots_for(redis: Any) -> asyncio.Semaphore:
    """One semaphore per Redis client, sized to a quarter of its connection pool.

    Every (event, subscription) pair reads and writes the log; with many subscriptions
    and a worker concurrency of 16 that is hundreds of commands at once, and redis-py's
    pool raises ``MaxConnectionsError`` rather than waiting. The rest of the pool stays
    free for the worker's inbox and the toolbox.
    """
    slots = _SLOTS.get(redis)
    if slots is None:
        pool = getattr(redis, "connection_pool", None)
        size = getattr(pool, "max_connections", None) or 4 * MAX_REDIS_CONCURRENCY
        slots = asyncio.Semaphore(max(1, min(MAX_REDIS_CONCURRENCY, size // 4)))
        _SLOTS[redis] = slots
    return slots


class DeliveryLog:
    """Reads and writes delivery records; ``max_records`` bounds the log.

    Commands wait for a slot of a per-client semaphore (:func:`_slots_for`) so that the
    log never exhausts the Redis connection pool it shares with the worker.
    """

    def __init__(
        self,
        redis: Any,
        names: Names,
        *,
        max_records: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self._redis = redis
        self._names = names
        self._max = max_records
        self._clock = clock
        self._script = redis.register_script(_RECORD)
        self._slots = _slots_for(redis)

    async def record(
        self,
        *,
        subscription: str,
        url: str,
        event_id: str,
        event_type: str,
        state: State,
        status_code: int | None = None,
        error: str | None = None,
    ) -> DeliveryRecord:
        """Count one attempt and store its outcome; returns the updated record.

        ``url`` is stored redacted and ``error`` scrubbed of its credentials.
        """
        if error is not None:
            error = scrub(error, url)
        url = redact_url(url)
        base = {
            "subscription": subscription,
            "url": url,
            "event_id": event_id,
            "event_type": event_type,
        }
        update: dict[str, Any] = {
            "state": state,
            "url": url,
            # Lua's cjson turns JSON null into a sentinel that survives re-encoding.
            "status_code": status_code,
            "last_error": None if error is None else error[:1000],
        }
        async with self._slots:
            raw = await self._script(
                keys=[self._names.deliveries_key, self._names.deliveries_index_key],
                args=[
                    record_id(event_id, subscription),
                    repr(self._clock()),
                    json.dumps(base),
                    json.dumps(update),
                    self._max,
                ],
            )
        return DeliveryRecord.model_validate_json(raw)

    async def get(self, event_id: str, subscription: str) -> DeliveryRecord | None:
        """The record of ``event_id`` at ``subscription``, if still in the log."""
        async with self._slots:
            raw = await self._redis.hget(
                self._names.deliveries_key, record_id(event_id, subscription)
            )
        return None if raw is None else DeliveryRecord.model_validate_json(raw)

    async def has_succeeded(self, event_id: str, subscription: str) -> bool:
        """Whether ``subscription`` already acknowledged ``event_id``."""
        record = await self.get(event_id, subscription)
        return record is not None and record.state == "succeeded"

    async def recent(
        self, limit: int = 50, *, subscription: str | None = None, state: str | None = None
    ) -> list[DeliveryRecord]:
        """The most recently updated records, newest first, optionally filtered."""
        async with self._slots:
            ids = await self._redis.zrevrange(self._names.deliveries_index_key, 0, -1)
        found: list[DeliveryRecord] = []
        # Fetch in pages so that filters do not need the whole log in memory at once.
        for start in range(0, len(ids), 200):
            page = ids[start : start + 200]
            async with self._slots:
                raws = await self._redis.hmget(self._names.deliveries_key, page)
            for raw in raws:
                if raw is None:
                    continue
                rec = DeliveryRecord.model_validate_json(raw)
                if subscription is not None and rec.subscription != subscription:
                    continue
                if state is not None and rec.state != state:
                    continue
                found.append(rec)
                if len(found) >= limit:
                    return found
        return found
