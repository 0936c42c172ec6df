"""Result cache of read-only tools, in Redis, shared by every worker.

Keys are ``Names.cache_key(tool, sha256(canonical JSON of the arguments))``: the tool
name stays readable in the key, so ``invalidate(tool)`` can find and delete exactly that
tool's entries with ``SCAN Names.cache_pattern(tool)``. (The guide hashed the tool name
into the key, so its per-tool invalidation could never match anything.)

The cache is an optimisation: when Redis fails, the call goes through uncached and the
failure is logged, rather than failing the tool call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from schemas.names import Names
from tools.guards import Next, ToolCall

log = logging.getLogger(__name__)

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def args_digest(args: BaseModel) -> str:
    """sha256 of the canonical JSON of validated arguments (key order does not matter)."""
    canonical = json.dumps(
        args.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResultCache:
    """Get, put and invalidate cached tool results."""

    def __init__(self, redis: Any, names: Names) -> None:
        self.redis = redis
        self.names = names

    def key(self, tool: str, args: BaseModel) -> str:
        """Redis key of one (tool, arguments) pair."""
        return self.names.cache_key(tool, args_digest(args))

    async def get(self, tool: str, args: BaseModel, model: type[BaseModel]) -> BaseModel | None:
        """The cached result, or None on a miss (or an entry the model no longer accepts)."""
        raw = await self.redis.get(self.key(tool, args))
        if raw is None:
            return None
        try:
            return model.model_validate_json(raw)
        except ValidationError:
            return None

    async def put(self, tool: str, args: BaseModel, result: BaseModel, ttl: float) -> None:
        """Store ``result`` for ``ttl`` seconds."""
        px = max(1, int(ttl * 1000))
        await self.redis.set(self.key(tool, args), result.model_dump_json(), px=px)

    async def invalidate(self, tool: str) -> int:
        """Delete every cached result of ``tool``; returns how many were deleted."""
        return await self._delete_matching(self.names.cache_pattern(_glob_escape(tool)))

    async def invalidate_all(self) -> int:
        """Delete every cached result of every tool."""
        return await self._delete_matching(self.names.cache_pattern("*"))

    async def _delete_matching(self, pattern: str) -> int:
        deleted = 0
        batch: list[Any] = []
        async for key in self.redis.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await self.redis.delete(*batch)
                batch = []
        if batch:
            deleted += await self.redis.delete(*batch)
        return deleted


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


class CacheGuard:
    """Serves read-only tools from the cache and stores their successful results."""

    def __init__(self, cache: ResultCache) -> None:
        self.cache = cache

    def enabled(self, call: ToolCall) -> bool:
        """Only read-only tools, and only when their policy keeps ``cache`` on."""
        return call.spec.read_only and call.policy.cache

    async def __call__(self, call: ToolCall, call_next: Next) -> BaseModel:
        """Return the cached result, or call through and cache what comes back."""
        try:
            hit = await self.cache.get(call.name, call.args, call.spec.result_model)
        except RedisError:
            log.warning("cache read failed for %s; calling the tool", call.name, exc_info=True)
            hit = None
        if hit is not None:
            call.cache_hit = True
            return hit
        result = await call_next(call)
        try:
            await self.cache.put(call.name, call.args, result, call.policy.cache_ttl)
        except RedisError:
            log.warning("cache write failed for %s", call.name, exc_info=True)
        return result
