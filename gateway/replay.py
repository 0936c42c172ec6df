"""Replay protection for inbound webhooks: one Redis key per (source, webhook id).

A verified request first *claims* its id with ``SET NX`` (value ``pending``, TTL longer
than the signature tolerance, so a replay inside the window always finds the key). Once
the broker confirmed the event the key becomes ``published``; if publishing failed the
claim is released so that the sender's retry is not mistaken for a replay.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from redis.exceptions import RedisError

from gateway.problems import unavailable
from schemas.names import Names

PENDING = b"pending"
PUBLISHED = b"published"


class Claim(StrEnum):
    """Outcome of claiming a webhook id."""

    NEW = "new"  # first sighting: go ahead and publish
    PENDING = "pending"  # another request with this id is being published right now
    PUBLISHED = "published"  # this id was already published


class ReplayGuard:
    """Claims, confirms and releases webhook ids in Redis; Redis errors become 503."""

    def __init__(self, redis: Any, names: Names) -> None:
        self._redis = redis
        self._names = names

    async def claim(self, source: str, webhook_id: str, ttl: int) -> Claim:
        """Atomically mark ``webhook_id`` as in flight unless it was seen before."""
        key = self._names.replay_key(source, webhook_id)
        try:
            if await self._redis.set(key, PENDING, nx=True, ex=ttl):
                return Claim.NEW
            state = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            raise unavailable(f"replay store unavailable: {type(exc).__name__}") from exc
        if state == PUBLISHED:
            return Claim.PUBLISHED
        # A key that expired between SET and GET is gone; treat it as still in flight
        # rather than publishing twice.
        return Claim.PENDING

    async def published(self, source: str, webhook_id: str, ttl: int) -> None:
        """Record that the event for ``webhook_id`` was confirmed by the broker."""
        key = self._names.replay_key(source, webhook_id)
        try:
            await self._redis.set(key, PUBLISHED, ex=ttl)
        except (RedisError, OSError):
            # The event is on the bus; a lost mark only weakens duplicate detection
            # (the key still says "pending", so a replay is refused all the same).
            return

    async def release(self, source: str, webhook_id: str) -> None:
        """Forget a claim whose publish failed, so that the sender may retry."""
        key = self._names.replay_key(source, webhook_id)
        try:
            await self._redis.delete(key)
        except (RedisError, OSError):
            # Redis is failing anyway; the claim expires with its TTL.
            return
