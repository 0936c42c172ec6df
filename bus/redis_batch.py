"""Coalescing of Redis script calls.

Calls of the same script made in one event-loop turn are run by ONE ``EVALSHA`` of a
vectorised form of the script (a Lua loop over KEYS). With dozens of deliveries in
flight, the inbox's claims and done-marks then cost one round trip and one command
per turn instead of one per message. Each operation stays atomic (the whole batch
is). Every key of a batch must live on one node: standalone or Sentinel Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

_LOOP = """
local per = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local a = {}
  for j = 1, per do a[j] = ARGV[1 + (i - 1) * per + j] end
  out[i] = op(KEYS[i], a)
end
return out
"""


@dataclass(frozen=True)
class BatchScript:
    """A Lua operation ``local function op(key, argv) ... end`` on one key, with a fixed
    number of arguments. Redis runs it for every key of a batch in one call."""

    body: str
    nargs: int
    source: str = field(init=False)
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        src = self.body + _LOOP
        object.__setattr__(self, "source", src)
        object.__setattr__(self, "sha", hashlib.sha1(src.encode()).hexdigest())


_Call = tuple[str, tuple[Any, ...], "asyncio.Future[Any]"]


class ScriptBatcher:
    """``await batcher.call(script, key, *args)``, batched per script.

    At most ``max_in_flight`` batches of a script are in flight; calls made meanwhile
    wait and go out together in the next one (like Nagle's algorithm). An idle batcher
    sends at the end of the current loop turn, so a lone call is not delayed; under
    load, batches grow by themselves."""

    def __init__(self, redis: aioredis.Redis, max_batch: int = 512, max_in_flight: int = 1):
        self.redis = redis
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._queue: dict[BatchScript, list[_Call]] = defaultdict(list)
        self._in_flight: dict[BatchScript, int] = defaultdict(int)
        self._scheduled = False

    async def call(self, script: BatchScript, key: str, *args: Any) -> Any:
        """Run ``script`` on ``key``; raises what Redis raises for the batch."""
        if len(args) != script.nargs:
            raise TypeError(f"script takes {script.nargs} arguments, got {len(args)}")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue[script].append((key, args, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        for script in list(self._queue):
            while self._queue[script] and self._in_flight[script] < self.max_in_flight:
                calls = self._queue[script][: self.max_batch]
                del self._queue[script][: self.max_batch]
                self._in_flight[script] += 1
                loop.create_task(self._send(script, calls))
            if not self._queue[script]:
                del self._queue[script]

    async def _send(self, script: BatchScript, calls: list[_Call]) -> None:
        try:
            await self._execute(script, calls)
        finally:
            self._in_flight[script] -= 1
            if self._queue.get(script):
                self._flush()

    async def _execute(self, script: BatchScript, calls: list[_Call]) -> None:
        keys = [key for key, _, _ in calls]
        argv: list[Any] = [script.nargs]
        for _, args, _ in calls:
            argv.extend(args)
        try:
            try:
                results = await self.redis.evalsha(script.sha, len(keys), *keys, *argv)
            except NoScriptError:
                await self.redis.script_load(script.source)
                results = await self.redis.evalsha(script.sha, len(keys), *keys, *argv)
        except Exception as exc:  # every caller of the batch gets the error
            for _, _, fut in calls:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, _, fut), res in zip(calls, results, strict=True):
            if not fut.done():
                fut.set_result(res)
