"""The Redis side of the circuit breaker: Lua scripts for every transition, status, reset.

See :mod:`tools.guards.breaker` for the state machine. Every script reads the time with
``TIME`` inside Redis, so worker clocks never matter, and runs atomically, so concurrent
workers cannot interleave halfway through a transition.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from schemas.names import Names

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: state, probe. ARGV: token, lease_ms. Returns {decision, retry_after_ms}.
_ACQUIRE = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return {'allow', 0} end
if state == 'open' then
  local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
  if now < open_until then return {'reject', open_until - now} end
  redis.call('HSET', KEYS[1], 'state', 'half_open')
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'probe', 0} end
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 0 then ttl = 0 end
return {'reject', ttl}
"""
)

# KEYS: state, probe. ARGV: token ('' for a non-probe call). Returns the new state.
_SUCCESS = """
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[1] ~= '' then
  if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
    redis.call('HDEL', KEYS[1], 'open_until', 'opened_at')
    return 'closed'
  end
  return state or 'closed'
end
if state == 'closed' then redis.call('HSET', KEYS[1], 'failures', 0) end
return state or 'closed'
"""

# KEYS: state, probe. ARGV: token, threshold, reset_ms, window_ms (0 = none).
_FAILURE = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local reset_ms = tonumber(ARGV[3])
if ARGV[1] ~= '' then
  if redis.call('GET', KEYS[2]) ~= ARGV[1] then return state end
  redis.call('DEL', KEYS[2])
  redis.call('HINCRBY', KEYS[1], 'failures', 1)
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now,
             'open_until', now + reset_ms, 'last_failure', now)
  return 'open'
end
-- A call admitted while closed that fails after others opened the circuit changes nothing.
if state ~= 'closed' then return state end
local window = tonumber(ARGV[4])
local last = tonumber(redis.call('HGET', KEYS[1], 'last_failure') or '0')
local failures
if window > 0 and now - last > window then
  failures = 1
  redis.call('HSET', KEYS[1], 'failures', 1)
else
  failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'last_failure', now)
if failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'open_until', now + reset_ms)
  return 'open'
end
return 'closed'
"""
)

# KEYS: state, probe. ARGV: token. Gives a probe lease back without a verdict.
_RELEASE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) return 1 end
return 0
"""

# KEYS: state, probe. Returns {state, failures, opened_at, open_until, now, probe_ttl}.
_STATUS = (
    _NOW
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_at', 'open_until')
return {h[1] or 'closed', h[2] or '0', h[3] or '', h[4] or '', now, redis.call('PTTL', KEYS[2])}
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Admission:
    """The breaker's answer to one call: ``allow``, ``probe`` or ``reject``."""

    decision: str
    retry_after: float
    token: str


@dataclass(frozen=True)
class BreakerStatus:
    """State of one server's breaker, as the CLI shows it (times in seconds)."""

    server: str
    state: str  # closed | open | half-open
    failures: int
    opened_for: float | None
    retry_after: float
    probing: bool


class BreakerStore:
    """The Redis side of the breaker: admission, verdicts, status and reset."""

    def __init__(self, redis: Any, names: Names) -> None:
        self.redis = redis
        self.names = names
        self._acquire = redis.register_script(_ACQUIRE)
        self._success = redis.register_script(_SUCCESS)
        self._failure = redis.register_script(_FAILURE)
        self._release = redis.register_script(_RELEASE)
        self._status = redis.register_script(_STATUS)

    def _keys(self, server: str) -> list[str]:
        return [self.names.breaker_key(server), self.names.breaker_probe_key(server)]

    async def acquire(self, server: str, lease_seconds: float) -> Admission:
        """Ask to call ``server``; a ``probe`` admission holds the half-open lease."""
        token = uuid.uuid4().hex
        lease_ms = max(1, int(lease_seconds * 1000))
        decision, retry_ms = await self._acquire(keys=self._keys(server), args=[token, lease_ms])
        return Admission(_text(decision), int(retry_ms) / 1000, token)

    async def success(self, server: str, admission: Admission) -> str:
        """Report a call that reached a live server; returns the new state."""
        token = admission.token if admission.decision == "probe" else ""
        return _text(await self._success(keys=self._keys(server), args=[token]))

    async def failure(
        self,
        server: str,
        admission: Admission,
        *,
        threshold: int,
        reset_timeout: float,
        window: float | None = None,
    ) -> str:
        """Report a transient failure; returns the new state."""
        token = admission.token if admission.decision == "probe" else ""
        args = [token, threshold, int(reset_timeout * 1000), int((window or 0) * 1000)]
        return _text(await self._failure(keys=self._keys(server), args=args))

    async def release(self, server: str, admission: Admission) -> None:
        """Give a probe lease back without a verdict (cancelled call, adapter bug)."""
        if admission.decision == "probe":
            await self._release(keys=self._keys(server), args=[admission.token])

    async def status(self, server: str) -> BreakerStatus:
        """Current state of ``server``'s breaker, computed on Redis time."""
        state, failures, opened_at, open_until, now, probe_ttl = await self._status(
            keys=self._keys(server)
        )
        state, now = _text(state), int(now)
        opened = int(_text(opened_at)) if _text(opened_at) else None
        until = int(_text(open_until)) if _text(open_until) else now
        probing = int(probe_ttl) > 0
        retry_ms = 0
        if state == "open" and now < until:
            retry_ms = until - now
        elif state in ("open", "half_open"):
            state = "half_open"  # the next caller will probe (or is probing)
            retry_ms = int(probe_ttl) if probing else 0
        return BreakerStatus(
            server=server,
            state=state.replace("_", "-"),
            failures=int(_text(failures)),
            opened_for=(now - opened) / 1000 if opened is not None and state != "closed" else None,
            retry_after=retry_ms / 1000,
            probing=probing,
        )

    async def servers(self) -> list[str]:
        """Every server that has breaker state in Redis, sorted."""
        prefix = self.names.breaker_key("")
        found = {
            _text(k)[len(prefix) :]
            async for k in self.redis.scan_iter(match=self.names.breaker_key("*"), count=500)
        }
        return sorted(found)

    async def status_all(self) -> list[BreakerStatus]:
        """Status of every server with breaker state."""
        return [await self.status(server) for server in await self.servers()]

    async def reset(self, server: str) -> bool:
        """Forget ``server``'s state (closed, no failures); True if there was any."""
        return bool(await self.redis.delete(*self._keys(server)))
