"""Commit effects: the Redis writes a handler registers with ``ctx.on_commit``, applied
together with the event's done-mark, all or nothing.

MULTI/EXEC cannot give that guarantee: a command that fails inside EXEC (WRONGTYPE,
"not an integer", ...) is skipped while the others, the done-mark included, are
committed. So the effects are

1. *staged* in Python first: each effect is called on a recording pipeline and every
   argument encoded. An effect that raises, or passes a value Redis cannot take (a
   redis-py ``DataError``, e.g. ``None``), fails here, before any I/O, as a permanent
   :class:`bus.errors.EffectFailed` (the same event would fail the same way again);
2. *applied* by one Lua script (atomic: nobody sees a partial state), which checks that
   the claim is still ours, runs the commands with ``redis.pcall`` and sets the
   done-mark last. If a command fails, the script restores every key the earlier
   commands touched (``DUMP`` taken before, ``RESTORE`` after) and reports the failure:
   nothing is written, the event is not done, and :class:`EffectFailed` (retryable:
   the data may be repaired) goes to the retry policy. A single command needs no
   snapshot (a failing Redis command writes nothing); with several, the keys of all
   but the last are dumped, so keep multi-command effects on small keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis._parsers.commands import AsyncCommandsParser
from redis.exceptions import DataError, RedisError

from bus.errors import EffectFailed

Effect = Callable[[Any], Any]
Command = tuple[bytes | memoryview, ...]

#: Codes returned by the commit script (first element of its reply).
LEASE_LOST, COMMITTED, ALREADY_DONE, EFFECT_FAILED = 0, 1, 2, 3

COMMIT_SCRIPT = """
local v = redis.call('GET', KEYS[1])
if v == 'done' then return {2} end
if v and v ~= ARGV[1] then return {0} end
local nsaved = tonumber(ARGV[3])
local saved = {}
for i = 1, nsaved do
  local k = ARGV[3 + i]
  saved[i] = {k, redis.call('DUMP', k), redis.call('PTTL', k)}
end
local i, n = 4 + nsaved, 0
while i <= #ARGV do
  local argc = tonumber(ARGV[i])
  local cmd = {}
  for j = 1, argc do cmd[j] = ARGV[i + j] end
  n = n + 1
  local r = redis.pcall(unpack(cmd))
  if type(r) == 'table' and r.err then
    for _, e in ipairs(saved) do
      redis.call('DEL', e[1])
      if e[2] then redis.call('RESTORE', e[1], math.max(e[3], 0), e[2]) end
    end
    return {3, n, r.err}
  end
  i = i + argc + 1
end
redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
return {1}
"""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def stage(redis: aioredis.Redis, effects: Sequence[Effect], event_id: str | None) -> list[Command]:
    """The commands of ``effects``, encoded; :class:`EffectFailed` (permanent) if one
    cannot be built or encoded."""
    pipe = redis.pipeline(transaction=False)
    for n, effect in enumerate(effects, 1):
        try:
            effect(pipe)
        except Exception as exc:
            raise EffectFailed(
                f"commit effect {n} raised {type(exc).__name__}: {exc}",
                event_id=event_id,
                permanent=True,
            ) from exc
    encoder = redis.connection_pool.get_encoder()
    commands: list[Command] = []
    for n, (args, _options) in enumerate(pipe.command_stack, 1):
        try:
            commands.append(tuple(encoder.encode(a) for a in args))
        except DataError as exc:
            raise EffectFailed(
                f"commit command {n} ({_text(args[0])}) cannot be sent: {exc}",
                event_id=event_id,
                permanent=True,
            ) from exc
    return commands


class CommitScript:
    """Applies staged commands and the done-mark atomically (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(COMMIT_SCRIPT)
        self._keys: AsyncCommandsParser | None = None

    async def _keys_of(self, commands: Sequence[Command], event_id: str | None) -> list[bytes]:
        """Keys the commands before the last one touch (those a failure must restore)."""
        if len(commands) < 2:
            return []
        if self._keys is None:
            parser = AsyncCommandsParser()
            await parser.initialize(self.redis)  # type: ignore[arg-type]
            self._keys = parser
        keys: dict[bytes, None] = {}
        for cmd in commands[:-1]:
            name = bytes(cmd[0]).decode()
            try:
                found = await self._keys.get_keys(name, *cmd[1:]) or ()
            except RedisError as exc:
                raise EffectFailed(
                    f"commit command {name} is unknown to Redis: {exc}",
                    event_id=event_id,
                    permanent=True,
                ) from exc
            keys.update((k if isinstance(k, bytes) else str(k).encode(), None) for k in found)
        return list(keys)

    async def apply(
        self,
        key: str,
        owner: str,
        retention_ms: int,
        commands: Sequence[Command],
        event_id: str | None,
    ) -> int:
        """Run the script; LEASE_LOST, COMMITTED or ALREADY_DONE, or raise
        :class:`EffectFailed` when Redis refused a command (nothing was written)."""
        saved = await self._keys_of(commands, event_id)
        argv: list[Any] = [owner, retention_ms, len(saved), *saved]
        for cmd in commands:
            argv += [len(cmd), *cmd]
        reply = await self._script(keys=[key], args=argv)
        code = int(reply[0])
        if code == EFFECT_FAILED:
            n, err = int(reply[1]), reply[2]
            err = err.decode() if isinstance(err, bytes) else str(err)
            name = bytes(commands[n - 1][0]).decode()
            raise EffectFailed(
                f"Redis refused commit command {n} ({name}): {err}; nothing was written",
                event_id=event_id,
                permanent=False,
            )
        return code
