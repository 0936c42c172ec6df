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
from tools.errors import ToolError, ToolTimeout, ToolTransientError
from tools.guards import Next, ToolCall
from tools.guards.metrics import ToolMetrics

log = logging.getLogger(__name__)

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def args_digest(args: BaseModel) -> str:
    """sha256 of the canonical JSON of validated arguments (key order does not matter)."""
    canonical = json.dumps(
        args.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# KEYS[1] the server's generation key; ARGV[1], ARGV[2] key prefix and suffix around it.
_GET = """
local g = redis.call('GET', KEYS[1]) or '0'
return {g, redis.call('GET', ARGV[1] .. g .. ARGV[2])}
"""


class ResultCache:
    """Get, put and invalidate cached tool results.

    A result is stored under the generation of its tool server that was current when
    the read began; a write call to the server bumps the generation (:meth:`bump`), so
    earlier results become unreachable at once - including one whose read raced the
    write - and expire by their TTL."""

    def __init__(self, redis: Any, names: Names) -> None:
        self.redis = redis
        self.names = names
        self._get = redis.register_script(_GET)

    def key(self, tool: str, args: BaseModel, generation: str = "0") -> str:
        """Redis key of one (tool, arguments) pair at one server generation."""
        return self.names.cache_key(tool, f"g{generation}-{args_digest(args)}")

    async def lookup(
        self, tool: str, args: BaseModel, model: type[BaseModel]
    ) -> tuple[str, BaseModel | None]:
        """The server's current generation and the cached result (None on a miss, or for
        an entry the model no longer accepts)."""
        server = tool.split(".", 1)[0]
        prefix, _, suffix = self.key(tool, args, "\x00").partition("\x00")
        res = await self._get(keys=[self.names.cache_generation_key(server)], args=[prefix, suffix])
        generation = res[0].decode() if isinstance(res[0], bytes) else str(res[0])
        raw = res[1] if len(res) > 1 else None
        if raw is None:
            return generation, None
        try:
            return generation, model.model_validate_json(raw)
        except ValidationError:
            return generation, None

    async def get(self, tool: str, args: BaseModel, model: type[BaseModel]) -> BaseModel | None:
        """The cached result, or None on a miss."""
        return (await self.lookup(tool, args, model))[1]

    async def put(
        self, tool: str, args: BaseModel, result: BaseModel, ttl: float, generation: str = "0"
    ) -> None:
        """Store ``result`` for ``ttl`` seconds under ``generation`` (from :meth:`lookup`)."""
        px = max(1, int(ttl * 1000))
        await self.redis.set(self.key(tool, args, generation), result.model_dump_json(), px=px)

    async def bump(self, server: str) -> None:
        """A write reached ``server``: make every cached read of it unreachable."""
        await self.redis.incr(self.names.cache_generation_key(server))

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


def may_have_written(exc: BaseException) -> bool:
    """Whether a failed write may still have changed the server: it timed out or lost
    its connection without an answer. An error status from the server, an open circuit
    or a refused call mean nothing was written."""
    if isinstance(exc, ToolTimeout):
        return True
    if isinstance(exc, ToolTransientError):
        return exc.status is None
    return not isinstance(exc, ToolError)


class CacheGuard:
    """Serves read-only tools from the cache and stores their successful results."""

    def __init__(self, cache: ResultCache, metrics: ToolMetrics | None = None) -> None:
        self.cache = cache
        self.metrics = metrics

    async def _bump(self, call: ToolCall) -> None:
        try:
            await self.cache.bump(call.spec.server)
        except RedisError:
            log.warning("cache invalidation failed for %s", call.name, exc_info=True)

    def _count(self, call: ToolCall, result: str) -> None:
        if self.metrics is not None:
            self.metrics.cache.labels(call.name, result).inc()

    def enabled(self, call: ToolCall) -> bool:
        """Read-only tools whose policy keeps ``cache`` on, and every write tool (a write
        invalidates its server's cached reads)."""
        return call.policy.cache or not call.spec.read_only

    async def __call__(self, call: ToolCall, call_next: Next) -> BaseModel:
        """Serve reads from the cache (storing misses); let writes through, then bump the
        server's generation so no read returns what the write may have changed."""
        if not call.spec.read_only:
            try:
                result = await call_next(call)
            except BaseException as exc:
                if may_have_written(exc):
                    await self._bump(call)
                raise
            await self._bump(call)
            return result
        generation = "0"
        hit = None
        try:
            generation, hit = await self.cache.lookup(call.name, call.args, call.spec.result_model)
        except RedisError:
            log.warning("cache read failed for %s; calling the tool", call.name, exc_info=True)
            self._count(call, "error")
        else:
            self._count(call, "miss" if hit is None else "hit")
        if hit is not None:
            call.cache_hit = True
            return hit
        result = await call_next(call)
        try:
            await self.cache.put(call.name, call.args, result, call.policy.cache_ttl, generation)
        except RedisError:
            log.warning("cache write failed for %s", call.name, exc_info=True)
        return result
