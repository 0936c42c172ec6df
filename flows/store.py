"""Durable flow state in Redis: one JSON document per flow, written only by
compare-and-set on its ``rev`` (a Lua script), so two deliveries or two workers never
both advance a flow from the same state.

Beside the document the script keeps two sorted sets in step with it: the index of
flows by creation time (listing) and the due set (flow id -> earliest timer, or now for
a flow with undone actions), which the sweeper reads.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

from schemas.flows import FlowState
from schemas.names import Names

#: Flows in a terminal phase are kept this long for ``codebus deployments show``.
RETENTION = 30 * 24 * 3600

# KEYS: flow key, index key, due key. ARGV: expected rev, new document, flow id,
# created_at, due score ('' removes the flow from the due set), ttl seconds ('' = none).
_CAS = """
local cur = redis.call('GET', KEYS[1])
local rev = -1
if cur then rev = tonumber(cjson.decode(cur)['rev']) end
if rev ~= tonumber(ARGV[1]) then return rev end
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[6]))
else
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), ARGV[3])
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[3], ARGV[3])
else
  redis.call('ZADD', KEYS[3], tonumber(ARGV[5]), ARGV[3])
end
return -2
"""

# KEYS: lease key. ARGV: token, milliseconds. Extend only our own lease.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""

# KEYS: lease key. ARGV: token. Delete only our own lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Conflict(Exception):
    """The flow changed since it was read (another delivery advanced it)."""


def due_score(state: FlowState) -> float | None:
    """What the due set holds for ``state``: undone actions are due at once."""
    if state.outbox:
        return state.updated_at
    return state.next_due()


class FlowStore:
    """Load and compare-and-set flow documents."""

    def __init__(self, redis: Any, names: Names) -> None:
        self.redis = redis
        self.names = names
        self._cas = redis.register_script(_CAS)
        self._release = redis.register_script(_RELEASE)
        self._extend = redis.register_script(_EXTEND)

    async def load(self, flow_id: str) -> FlowState | None:
        """The flow, or None if there is no such flow."""
        raw = await self.redis.get(self.names.flow_key(flow_id))
        return None if raw is None else FlowState.model_validate_json(raw)

    async def save(self, state: FlowState, expected_rev: int) -> FlowState:
        """Write ``state`` if the stored rev is ``expected_rev`` (-1: must not exist);
        returns the state as stored (rev + 1). Raises :class:`Conflict` otherwise."""
        new = state.model_copy(update={"rev": expected_rev + 1})
        due = due_score(new)
        ttl = str(RETENTION) if new.terminal else ""
        got = await self._cas(
            keys=[
                self.names.flow_key(new.id),
                self.names.flows_index_key,
                self.names.flows_due_key,
            ],
            args=[
                expected_rev,
                new.model_dump_json(),
                new.id,
                new.created_at,
                "" if due is None else repr(due),
                ttl,
            ],
        )
        if int(got) != -2:
            raise Conflict(f"flow {new.id}: expected rev {expected_rev}, found {got}")
        return new

    async def create(self, state: FlowState) -> bool:
        """Store a new flow; False if a flow with this id exists already."""
        try:
            await self.save(state, -1)
        except Conflict:
            return False
        return True

    async def ids(self, *, newest_first: bool = True, limit: int = 200) -> list[str]:
        """Flow ids by creation time."""
        raw = await self.redis.zrange(self.names.flows_index_key, 0, limit - 1, desc=newest_first)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    async def due(self, before: float, limit: int = 500) -> list[tuple[str, float]]:
        """Flows with a timer (or undone actions) due before ``before``."""
        raw = await self.redis.zrangebyscore(
            self.names.flows_due_key, "-inf", before, start=0, num=limit, withscores=True
        )
        return [(k.decode() if isinstance(k, bytes) else str(k), float(v)) for k, v in raw]

    async def all(self, limit: int = 200) -> AsyncIterator[FlowState]:
        """Every flow still stored, newest first."""
        for flow_id in await self.ids(limit=limit):
            state = await self.load(flow_id)
            if state is not None:
                yield state

    # ---- the drain lease: one executor of a flow's actions at a time ---------------------
    def _lease_key(self, flow_id: str) -> str:
        return self.names.flow_key(flow_id) + ":lease"

    async def acquire(self, flow_id: str, seconds: float) -> str | None:
        """A token if this caller now carries out the flow's actions, else None."""
        token = secrets.token_hex(8)
        ok = await self.redis.set(self._lease_key(flow_id), token, nx=True, px=int(seconds * 1000))
        return token if ok else None

    async def extend(self, flow_id: str, token: str, seconds: float) -> bool:
        """Keep the lease ``seconds`` longer; False if it is no longer ours."""
        got = await self._extend(keys=[self._lease_key(flow_id)], args=[token, int(seconds * 1000)])
        return bool(got)

    async def release(self, flow_id: str, token: str) -> None:
        """Give the lease back (only if it is still ours)."""
        await self._release(keys=[self._lease_key(flow_id)], args=[token])
