"""The idempotency inbox in Redis, keyed by (subscription, event id).

A claim is an atomic ``SET NX PX lease`` holding ``run:<token>``; the owner extends the
lease while the handler runs. Completion replaces the claim with ``done`` (kept for the
retention window) in one transaction, together with any Redis effects the handler
registered, so those effects happen exactly once. A failed attempt releases the claim.
Any Redis error surfaces as :class:`InboxUnavailable`: the caller must not run the
handler (fail closed).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from bus.errors import InboxUnavailable
from schemas.names import Names

DONE = b"done"

# KEYS[1] inbox key; ARGV[1] value to set; ARGV[2] lease ms.
# Returns {1} claimed, {2} already done, {3, pttl} held by another delivery.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
local v = redis.call('GET', KEYS[1])
if v == 'done' then return {2} end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1}
end
return {3, redis.call('PTTL', KEYS[1])}
"""
# KEYS[1]; ARGV[1] expected owner value; ARGV[2] new value or '' to delete; ARGV[3] px
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


@dataclass(frozen=True)
class Claimed:
    """This delivery owns the event until it completes or releases."""

    key: str
    value: str


@dataclass(frozen=True)
class AlreadyDone:
    """An earlier delivery completed the event."""


@dataclass(frozen=True)
class Busy:
    """Another delivery holds the claim; its lease ends in ``retry_after`` seconds."""

    retry_after: float


ClaimResult = Claimed | AlreadyDone | Busy
Effect = Callable[[Any], Any]


class LeaseLost(Exception):
    """The claim expired and someone else took it before we completed."""


class Inbox:
    """Idempotency claims and done-marks. See the module docstring."""

    def __init__(
        self,
        redis: aioredis.Redis,
        names: Names,
        *,
        lease: float = 30.0,
        retention: float = 7 * 24 * 3600.0,
    ) -> None:
        self.redis = redis
        self.names = names
        self.lease_ms = max(1, int(lease * 1000))
        self.retention_ms = max(1, int(retention * 1000))
        self._claim = redis.register_script(_CLAIM)
        self._swap = redis.register_script(_SWAP)

    async def claim(self, subscription: str, event_id: str) -> ClaimResult:
        """Try to take the event for this delivery."""
        key = self.names.inbox_key(subscription, event_id)
        value = "run:" + secrets.token_hex(8)
        try:
            res = await self._claim(keys=[key], args=[value, self.lease_ms])
        except RedisError as exc:
            raise InboxUnavailable(f"inbox claim failed: {exc}", event_id=event_id) from exc
        code = int(res[0])
        if code == 1:
            return Claimed(key, value)
        if code == 2:
            return AlreadyDone()
        pttl = int(res[1]) if len(res) > 1 else self.lease_ms
        return Busy(max(pttl, 50) / 1000)

    async def extend(self, claim: Claimed) -> bool:
        """Push the lease forward; False if the claim is no longer ours."""
        try:
            return bool(
                await self._swap(keys=[claim.key], args=[claim.value, claim.value, self.lease_ms])
            )
        except RedisError:
            return False

    async def release(self, claim: Claimed) -> None:
        """Give the claim up after a failed attempt (best effort: the lease expires anyway)."""
        try:
            await self._swap(keys=[claim.key], args=[claim.value, "", 0])
        except RedisError:
            pass

    async def complete(self, claim: Claimed, effects: Sequence[Effect] = ()) -> None:
        """Mark the event done, applying ``effects`` to the same MULTI/EXEC transaction.
        Raises :class:`LeaseLost` if the claim is no longer ours, or InboxUnavailable."""
        try:
            if not effects:
                ok = await self._swap(keys=[claim.key], args=[claim.value, DONE, self.retention_ms])
                if not ok:
                    raise LeaseLost(claim.key)
                return
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(claim.key)
                current = await pipe.get(claim.key)
                if current is None or current.decode() != claim.value:
                    raise LeaseLost(claim.key)
                pipe.multi()
                pipe.set(claim.key, DONE, px=self.retention_ms)
                for effect in effects:
                    effect(pipe)
                await pipe.execute()
        except WatchError as exc:
            raise LeaseLost(claim.key) from exc
        except RedisError as exc:
            raise InboxUnavailable(f"inbox completion failed: {exc}") from exc

    async def is_done(self, subscription: str, event_id: str) -> bool:
        """True when the event has a done-mark in this subscription."""
        try:
            return await self.redis.get(self.names.inbox_key(subscription, event_id)) == DONE
        except RedisError as exc:
            raise InboxUnavailable(str(exc), event_id=event_id) from exc
