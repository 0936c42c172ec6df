"""The idempotency inbox in Redis, keyed by (subscription, event id).

A claim is an atomic ``SET NX PX lease`` holding ``run:<token>``; the owner extends the
lease while the handler runs. Completion replaces the claim with ``done`` (kept for the
retention window) atomically with any Redis effects the handler registered, all or
nothing (``bus.effects``), so those effects happen exactly once. A failed attempt
releases the claim. Redis being unreachable surfaces as :class:`InboxUnavailable`: the
caller must not run the handler (fail closed); an effect Redis refuses is
:class:`bus.errors.EffectFailed`, a failed attempt.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bus.effects import ALREADY_DONE, LEASE_LOST, CommitScript, Effect, stage
from bus.errors import InboxUnavailable
from bus.redis_batch import LuaOp, ScriptBatcher
from schemas.names import Names

log = logging.getLogger("codebus.bus.inbox")

DONE = b"done"

# Operations on one inbox key, run in batches by ScriptBatcher.
_OPS = {
    # a[1] value to set, a[2] lease ms -> {1} claimed, {2} already done, {3, pttl} busy
    "claim": LuaOp(
        """
function(key, a)
  if redis.call('SET', key, a[1], 'NX', 'PX', a[2]) then return {1} end
  local v = redis.call('GET', key)
  if v == 'done' then return {2} end
  if not v then
    redis.call('SET', key, a[1], 'PX', a[2])
    return {1}
  end
  return {3, redis.call('PTTL', key)}
end
""",
        2,
    ),
    # a[1] expected owner value, a[2] new value or '' to delete, a[3] px -> 1 if swapped
    "swap": LuaOp(
        """
function(key, a)
  if redis.call('GET', key) ~= a[1] then return 0 end
  if a[2] == '' then redis.call('DEL', key) else
    redis.call('SET', key, a[2], 'PX', a[3]) end
  return 1
end
""",
        3,
    ),
    # a[1] our claim value, a[2] retention ms -> 1 done now, 2 already done, 0 other owner
    # (the codes of bus.effects)
    "complete": LuaOp(
        """
function(key, a)
  local v = redis.call('GET', key)
  if v == 'done' then return 2 end
  if v and v ~= a[1] then return 0 end
  redis.call('SET', key, 'done', 'PX', a[2])
  return 1
end
""",
        2,
    ),
}


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
        self._batch = ScriptBatcher(redis, _OPS)
        self._commit = CommitScript(redis)
        # Claim values: unique per claim across processes (a random prefix per inbox and
        # a counter), so a delivery only ever swaps or completes its own claim.
        self._owner = f"run:{secrets.token_hex(8)}:"
        self._claims = itertools.count(1)
        self._active: dict[str, Claimed] = {}
        # The task working on each held claim: a claim whose task has ended (however it
        # ended) is released by the keeper instead of being extended for ever.
        self._workers: dict[str, asyncio.Task[Any] | None] = {}
        self._keeper: asyncio.Task[None] | None = None

    async def claim(self, subscription: str, event_id: str) -> ClaimResult:
        """Try to take the event for this delivery."""
        key = self.names.inbox_key(subscription, event_id)
        value = f"{self._owner}{next(self._claims):x}"
        try:
            res = await self._batch.call("claim", key, value, self.lease_ms)
        except (RedisError, OSError) as exc:
            raise InboxUnavailable(f"inbox claim failed: {exc}", event_id=event_id) from exc
        except asyncio.CancelledError:
            # The batch goes out (or went out) regardless: the claim may be taken with
            # nobody to complete or release it. Give it back (queued after the claim).
            await asyncio.shield(self._give_back(key, value))
            raise
        code = int(res[0])
        if code == 1:
            claim = Claimed(key, value)
            self._hold(claim)
            return claim
        if code == 2:
            return AlreadyDone()
        pttl = int(res[1]) if len(res) > 1 else self.lease_ms
        return Busy(max(pttl, 50) / 1000)

    # -- leases ---------------------------------------------------------------------
    def _hold(self, claim: Claimed) -> None:
        """Keep ``claim``'s lease alive until it completes or is released. One keeper
        task per inbox extends every held claim a few times per lease period."""
        self._active[claim.key] = claim
        self._workers[claim.key] = asyncio.current_task()
        keeper = self._keeper
        if keeper is None or keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(self._keep_leases())

    async def _keep_leases(self) -> None:
        # Lives while claims are held, and one more round: under steady load one task
        # serves every claim (claims often complete before a new keeper's first step,
        # which would otherwise start and end a task per batch).
        interval = self.lease_ms / 3000
        pause = interval
        while True:
            await asyncio.sleep(pause)
            if not self._active:
                return
            orphans = [c for c in self._active.values() if self._orphaned(c)]
            for claim in orphans:
                log.warning("releasing %s: the delivery holding it has ended", claim.key)
                await self.release(claim)
            held = list(self._active.values())
            kept = await asyncio.gather(*(self._try_extend(c) for c in held))
            # After a Redis error, try again soon: the lease is already a round older.
            pause = interval / 4 if None in kept else interval
            for claim, ok in zip(held, kept, strict=True):
                if ok is False and self._active.get(claim.key) is claim:
                    log.warning("lost the inbox lease on %s", claim.key)
                    self._drop(claim)

    def _orphaned(self, claim: Claimed) -> bool:
        task = self._workers.get(claim.key)
        return task is not None and task.done()

    async def _try_extend(self, claim: Claimed) -> bool | None:
        """True extended, False no longer ours, None Redis failed: keep the claim and
        try again next round (a lease spans three rounds)."""
        try:
            res = await self._batch.call("swap", claim.key, claim.value, claim.value, self.lease_ms)
        except (RedisError, OSError) as exc:
            log.warning("could not extend the inbox lease on %s (%s); retrying", claim.key, exc)
            return None
        return bool(res)

    def _drop(self, claim: Claimed) -> None:
        if self._active.get(claim.key) is claim:
            del self._active[claim.key]
            del self._workers[claim.key]

    async def extend(self, claim: Claimed) -> bool:
        """Push the lease forward; False if the claim is no longer ours or Redis failed."""
        return bool(await self._try_extend(claim))

    async def _give_back(self, key: str, value: str) -> None:
        try:
            await self._batch.call("swap", key, value, "", 0)
        except (RedisError, OSError):
            pass  # the lease expires

    async def release(self, claim: Claimed) -> None:
        """Give the claim up after a failed attempt (best effort: the lease expires anyway)."""
        self._drop(claim)
        await self._give_back(claim.key, claim.value)

    async def complete(
        self, claim: Claimed, effects: Sequence[Effect] = (), *, event_id: str | None = None
    ) -> bool:
        """Mark the event done and apply ``effects`` with it, all or nothing
        (``bus.effects``).

        Completes when the claim is still ours, or when its lease merely expired and
        nobody else took it. Returns False if the event was already done (effects are
        then not applied again). Raises :class:`LeaseLost` when another delivery now
        holds the claim (it will complete the event), :class:`EffectFailed` when an
        effect cannot be applied (nothing written; the claim is still ours), or
        InboxUnavailable."""
        commands = stage(self.redis, effects, event_id) if effects else []
        self._drop(claim)  # stop lease extensions
        try:
            if not commands:
                code = int(
                    await self._batch.call("complete", claim.key, claim.value, self.retention_ms)
                )
            else:
                code = await self._commit.apply(
                    claim.key, claim.value, self.retention_ms, commands, event_id
                )
        except (RedisError, OSError) as exc:
            raise InboxUnavailable(f"inbox completion failed: {exc}", event_id=event_id) from exc
        if code == ALREADY_DONE:
            return False
        if code == LEASE_LOST:
            raise LeaseLost(claim.key)
        return True

    async def aclose(self) -> None:
        """Stop keeping leases and close the inbox's own Redis connection (the client
        passed in stays open: it belongs to the caller)."""
        if self._keeper is not None:
            self._keeper.cancel()
        await self._batch.aclose()

    async def is_done(self, subscription: str, event_id: str) -> bool:
        """True when the event has a done-mark in this subscription."""
        try:
            return await self.redis.get(self.names.inbox_key(subscription, event_id)) == DONE
        except RedisError as exc:
            raise InboxUnavailable(str(exc), event_id=event_id) from exc
