"""The flow engine: feeds events to the decision function, stores the result by
compare-and-set, then carries out the outbox in order (record intent -> call the tool ->
record the result).

A crash anywhere leaves either the old state (the delivery is redelivered and decides
again) or the new state with its actions still in the outbox; whoever touches the flow
next - a redelivery, any later event, or the sweeper's kick - carries them out. One
executor at a time per flow (a Redis lease), so two workers never interleave the tool
calls of one flow; every tool step sets absolute state, so a step repeated after a crash
between the call and the recorded result changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flows.executor import CallTool, execute
from flows.machine import FlowEvent, decide
from flows.metrics import default_flow_metrics
from flows.store import Conflict, FlowStore
from schemas.flows import FlowState
from schemas.names import MAX_DELAY_TIER, MIN_DELAY_TIER

MAX_CAS_ATTEMPTS = 20
#: An executor's lease on a flow: kept alive while it works, so a killed worker blocks
#: the flow for at most this long before another executor (or the sweeper) takes over.
LEASE_SECONDS = 10.0
#: Longest one action may run: a hung call must not hold a flow (and its lease) for ever;
#: past this the delivery fails and is retried, and the sweeper drains the flow again.
ACTION_TIMEOUT = 60.0

log = logging.getLogger("codebus.flows")

_IDS = uuid.UUID("0b5d6c9e-3f57-4d1f-9b8e-6a2c4f7d1e90")


def hop_delay(delay: float) -> float:
    """The delay to send a wake-up with: the largest power of two milliseconds not above
    ``delay`` (below 128 ms: ``delay`` itself).

    RabbitMQ expires per-message TTLs only at the head of a queue, so in one delay tier
    (delays in [2^n, 2^(n+1)) ms) a wake-up waits behind any longer one sent before it:
    up to a whole tier late (a 5-minute bake could last 9). Wake-ups of exactly 2^n ms
    all carry the tier's smallest TTL and expire in order; the wake-up arrives early and
    the flow re-arms for the rest (``decide``), in at most log2 hops, each on time.
    """
    ms = delay * 1000
    if ms < 2 ** (MIN_DELAY_TIER + 1):
        return max(0.0, delay)
    return float(2 ** min(MAX_DELAY_TIER, math.floor(math.log2(ms)))) / 1000


def action_event_id(flow_id: str, seq: int, attempt: str = "") -> str:
    """The id of the event an outbox action publishes: the same action, the same id."""
    return str(uuid.uuid5(_IDS, f"{flow_id}\x1f{seq}\x1f{attempt}"))


@dataclass(frozen=True)
class Ports:
    """What the engine needs from the handler: publish an event, send a delayed
    wake-up, call a tool (each bound to the delivery's context)."""

    publish: Callable[[str, dict[str, Any], str], Awaitable[Any]]
    wake: Callable[[str, str, int, float, str], Awaitable[Any]]
    call_tool: CallTool


class FlowEngine:
    """Advance flows stored in ``store``."""

    def __init__(self, store: FlowStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def create(self, state: FlowState) -> bool:
        """Store a new flow (False if it exists: a redelivered request)."""
        now = self.clock()
        fresh = state.model_copy(update={"created_at": now, "updated_at": now, "phase_since": now})
        return await self.store.create(fresh)

    async def apply(self, flow_id: str, event: FlowEvent) -> FlowState | None:
        """Decide on ``event`` and store the outcome (retrying on a concurrent change)."""
        for _ in range(MAX_CAS_ATTEMPTS):
            state = await self.store.load(flow_id)
            if state is None:
                return None
            now = self.clock()
            new, _actions = decide(state, event, now)
            if new is state:
                return state
            try:
                saved = await self.store.save(new, state.rev)
            except Conflict:
                continue
            default_flow_metrics().observe_decision(new, now)
            return saved
        raise Conflict(f"flow {flow_id}: too many concurrent changes")

    async def handle(self, flow_id: str, event: FlowEvent, ports: Ports) -> FlowState | None:
        """Apply ``event``, then carry out whatever is in the outbox."""
        state = await self.apply(flow_id, event)
        if state is not None and state.outbox:
            await self.drain(flow_id, ports)
            state = await self.store.load(flow_id)
        return state

    async def drain(self, flow_id: str, ports: Ports) -> bool:
        """Carry out the flow's outbox unless another executor holds it (False then)."""
        while True:
            token = await self.store.acquire(flow_id, LEASE_SECONDS)
            if token is None:
                return False  # the holder re-reads the outbox after releasing
            stop = asyncio.Event()
            keeper = asyncio.create_task(self._keep(flow_id, token, stop))
            try:
                await self._drain(flow_id, ports)
            finally:
                # Stopped, not cancelled: cancelling a Redis command half-way can leave its
                # pooled connection with an unread reply for the next user.
                stop.set()
                await keeper
                await self.store.release(flow_id, token)
            state = await self.store.load(flow_id)
            if state is None or not state.outbox:
                return True

    async def _keep(self, flow_id: str, token: str, stop: asyncio.Event) -> None:
        """Extend the lease every third of its life until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), LEASE_SECONDS / 3)
            except TimeoutError:
                with contextlib.suppress(Exception):  # a missed extension only shortens it
                    await self.store.extend(flow_id, token, LEASE_SECONDS)

    async def _drain(self, flow_id: str, ports: Ports) -> None:
        while True:
            state = await self.store.load(flow_id)
            if state is None or not state.outbox:
                return
            action = state.outbox[0]
            kind = action["kind"]
            if kind == "run":
                try:
                    result = await asyncio.wait_for(
                        execute(state, action, ports.call_tool, self.clock()), ACTION_TIMEOUT
                    )
                except TimeoutError:
                    log.warning(
                        "flow %s: %s of step %s ran over %.0f s; given up, to be retried",
                        flow_id,
                        action["op"],
                        action["step"],
                        ACTION_TIMEOUT,
                    )
                    raise
                await self.apply(flow_id, result)  # removes the action, decides what next
                continue
            if kind == "emit":
                await ports.publish(
                    action["type"], action["data"], action_event_id(flow_id, action["seq"])
                )
            elif kind == "wake":
                token = int(action.get("token", action["seq"]))
                await ports.wake(
                    flow_id,
                    action["timer"],
                    token,
                    hop_delay(float(action["delay"])),
                    action_event_id(flow_id, action["seq"]),
                )
            await self._done(flow_id, action["seq"])

    async def _done(self, flow_id: str, seq: int) -> None:
        for _ in range(MAX_CAS_ATTEMPTS):
            state = await self.store.load(flow_id)
            if state is None or not any(a["seq"] == seq for a in state.outbox):
                return
            new = state.model_copy(update={"outbox": [a for a in state.outbox if a["seq"] != seq]})
            try:
                await self.store.save(new, state.rev)
                return
            except Conflict:
                continue
        raise Conflict(f"flow {flow_id}: too many concurrent changes")
