"""Claims in Redis that make a request take effect once: webhook replay protection and
the publish API's ``Idempotency-Key``.

A request first *claims* its key with ``SET NX`` (value ``pending|<fingerprint>``). A
pending claim lives only ``pending_ttl`` seconds, long enough for the publish to finish
or fail: if the process dies in between, the sender's retry is not refused for the
whole window. Once the broker confirmed the events the value becomes
``published|<fingerprint>`` with the full TTL (longer than the window in which a replay
or retry can arrive). If publishing failed, or its
outcome is unknown, the claim is released so that the sender's retry goes through; the
retry publishes the same event ids, so subscribers' inboxes drop what the first attempt
may have delivered.

The fingerprint binds a claim to what was asked (the body's hash): reusing a key for a
different request is a :attr:`Claim.CONFLICT`, never silently treated as a duplicate.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from redis.exceptions import RedisError

from gateway.problems import unavailable

PENDING = "pending"
PUBLISHED = "published"


class Claim(StrEnum):
    """Outcome of claiming a key."""

    NEW = "new"  # first sighting: go ahead and publish
    PENDING = "pending"  # the same request is being published right now
    PUBLISHED = "published"  # the same request was already published
    CONFLICT = "conflict"  # the key was used for a different request


class ReplayGuard:
    """Claims, confirms and releases keys in Redis; Redis errors become 503."""

    def __init__(self, redis: Any, *, pending_ttl: int = 60) -> None:
        self._redis = redis
        self.pending_ttl = pending_ttl

    async def claim(self, key: str, ttl: int, fingerprint: str = "") -> Claim:
        """Atomically mark ``key`` as in flight unless it was claimed before."""
        pending_for = max(1, min(ttl, self.pending_ttl))
        try:
            if await self._redis.set(key, f"{PENDING}|{fingerprint}", nx=True, ex=pending_for):
                return Claim.NEW
            raw = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            raise unavailable(f"replay store unavailable: {type(exc).__name__}") from exc
        if raw is None:
            # Expired between SET and GET: treat it as still in flight rather than
            # publishing twice; the sender's next retry claims it afresh.
            return Claim.PENDING
        state, _, stored = (raw.decode() if isinstance(raw, bytes) else raw).partition("|")
        if stored != fingerprint:
            return Claim.CONFLICT
        return Claim.PUBLISHED if state == PUBLISHED else Claim.PENDING

    async def published(self, key: str, ttl: int, fingerprint: str = "") -> None:
        """Record that the events for ``key`` were confirmed by the broker."""
        try:
            await self._redis.set(key, f"{PUBLISHED}|{fingerprint}", ex=ttl)
        except (RedisError, OSError):
            # The events are on the bus; a lost mark only weakens duplicate detection
            # (the key still says "pending", so a replay is refused all the same).
            return

    async def release(self, *keys: str) -> None:
        """Forget claims whose publish failed or is in doubt, so that a retry may go on."""
        try:
            await self._redis.delete(*keys)
        except (RedisError, OSError):
            # Redis is failing anyway; the claims expire with their TTL.
            return
