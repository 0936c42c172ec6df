"""Coalescing of small Redis Lua operations into one round trip.

Operations are Lua functions ``function(key, a)`` on one key with a fixed number of
arguments. Every operation queued while a batch is in flight goes out together in the
next batch as ONE ``EVALSHA`` of a script that dispatches on an op code per key (like
Nagle's algorithm: an idle batcher sends at the end of the current loop turn, so a lone
call is not delayed; under load, batches grow by themselves). The inbox's claims,
lease extensions and done-marks of dozens of deliveries then cost one command per
round trip instead of one per message. The batch runs atomically. Keys travel inside
the script's argument, so this needs a standalone Redis (not Cluster).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

# The whole batch travels as ONE argument: fields separated by the ASCII unit
# separator (31), (width + 2) fields per call: op code, key, arguments. Encoding one
# string is far cheaper for the client than one protocol argument per field.
SEP = "\x1f"
_DISPATCH = """
local s, f, i = ARGV[1], {}, 1
while true do
  local j = string.find(s, '\\31', i, true)
  if not j then f[#f + 1] = string.sub(s, i); break end
  f[#f + 1] = string.sub(s, i, j - 1)
  i = j + 1
end
local width = tonumber(ARGV[2])
local per = width + 2
local out = {}
for r = 0, #f / per - 1 do
  local base = r * per
  local a = {}
  for j = 1, width do a[j] = f[base + 2 + j] end
  out[r + 1] = OPS[tonumber(f[base + 1])](f[base + 2], a)
end
return out
"""


@dataclass(frozen=True)
class LuaOp:
    """``function(key, a) ... end`` taking ``nargs`` arguments in ``a``."""

    function: str
    nargs: int


class ScriptBatcher:
    """``await batcher.call(op_name, key, *args)``, batched across callers."""

    def __init__(
        self, redis: aioredis.Redis, ops: Mapping[str, LuaOp], *, max_batch: int = 512
    ) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self._codes = {name: i + 1 for i, name in enumerate(ops)}
        self._nargs = {name: op.nargs for name, op in ops.items()}
        self._width = max(op.nargs for op in ops.values())
        table = ",\n".join(op.function.strip() for op in ops.values())
        self.source = f"local OPS = {{\n{table}\n}}\n{_DISPATCH}"
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self._conn: Any = None  # one connection of its own: one batch is in flight at most
        self._sender: asyncio.Task[None] | None = None  # sends batches while there are calls
        self._queue: list[tuple[str, asyncio.Future[Any]]] = []

    async def call(self, op: str, key: str, *args: Any) -> Any:
        """Run operation ``op`` on ``key``; raises what Redis raises for the batch."""
        if len(args) != self._nargs[op]:
            raise TypeError(f"{op} takes {self._nargs[op]} arguments, got {len(args)}")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        fields = [str(self._codes[op]), key, *map(str, args)]
        fields += [""] * (self._width - len(args))
        record = SEP.join(fields)
        if record.count(SEP) != self._width + 1:
            raise ValueError(f"{op}: key and arguments must not contain the unit separator")
        self._queue.append((record, fut))
        if self._sender is None:
            # A new task first runs on the next loop iteration: the calls made during
            # this turn go out together; later ones wait for the batch in flight.
            self._sender = loop.create_task(self._send_all())
        return await fut

    async def _send_all(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                self._queue = self._queue[self.max_batch :]
                await self._execute(batch)
        finally:
            self._sender = None

    async def _evalsha(self, blob: str) -> Any:
        """EVALSHA on the batcher's own connection (made from the client's pool settings:
        address, credentials, database, timeouts), skipping the pool checkout and the
        client's command wrapper per batch. Dropped on a connection error; the next batch
        connects again."""
        conn = self._conn
        if conn is None:
            conn = self._conn = self.redis.connection_pool.make_connection()
        try:
            await conn.send_command("EVALSHA", self.sha, 0, blob, self._width)
            return await conn.read_response()
        except (RedisConnectionError, RedisTimeoutError, OSError, asyncio.CancelledError):
            self._conn = None
            await conn.disconnect()
            raise

    async def aclose(self) -> None:
        """Close the batcher's connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()

    async def _execute(self, batch: list[tuple[str, asyncio.Future[Any]]]) -> None:
        blob = SEP.join(record for record, _ in batch)
        try:
            try:
                results = await self._evalsha(blob)
            except NoScriptError:
                await self.redis.script_load(self.source)
                results = await self._evalsha(blob)
        except Exception as exc:  # every caller of the batch gets the error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res)
