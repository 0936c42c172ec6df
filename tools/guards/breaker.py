"""Circuit breaker per tool server, with its state in Redis shared by every worker.

States (hash ``Names.breaker_key(server)``: state, failures, last_failure, opened_at,
open_until)::

    closed --N consecutive transient failures--> open --reset_timeout--> half-open
    half-open --probe succeeds--> closed
    half-open --probe fails-----> open (for another reset_timeout)

* Every transition is one Lua script, so concurrent workers cannot interleave halfway.
* All timing comes from Redis: ``TIME`` inside the scripts and the PX TTL of the probe
  lease. Worker clocks never matter.
* Half-open admits exactly one probe across all workers: the probe holds the lease key
  ``Names.breaker_probe_key(server)`` (``SET NX PX``); everyone else gets CircuitOpen.
  The lease expires on its own if the prober dies, so a crashed worker cannot wedge it.
* Only transient failures (``ToolTransientError``, ``ToolTimeout``) count. ``ToolFailed``
  (a 4xx) proves the server is up and counts as a success. Other exceptions (bugs,
  cancellation) are neutral: a probe that ends that way just gives its lease back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from pydantic import BaseModel
from redis.exceptions import RedisError

from tools.errors import CircuitOpen, ToolError, ToolTransientError
from tools.guards import Next, ToolCall
from tools.guards.breaker_store import Admission, BreakerStatus, BreakerStore
from tools.guards.metrics import ToolMetrics

__all__ = ["Admission", "BreakerGuard", "BreakerStatus", "BreakerStore"]

log = logging.getLogger(__name__)

_ADMITTED_STATE = {"allow": "closed", "probe": "half_open", "reject": "open"}


class BreakerGuard:
    """Rejects calls to a server whose circuit is open; reports outcomes to Redis."""

    def __init__(self, store: BreakerStore, metrics: ToolMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics

    def _observe(self, server: str, state: str | None) -> None:
        if self.metrics is not None:
            self.metrics.observe_breaker(server, state)

    def enabled(self, call: ToolCall) -> bool:
        """Switched off per tool with ``breaker: false``."""
        return call.policy.breaker

    async def __call__(self, call: ToolCall, call_next: Next) -> BaseModel:
        """Admit, reject or probe; then record the verdict."""
        server, policy = call.spec.server, call.policy
        try:
            admission = await self.store.acquire(server, policy.probe_lease_seconds())
        except RedisError as exc:
            # Fail closed: without shared state we cannot know the server is healthy.
            raise ToolTransientError(
                f"circuit-breaker state of {server!r} unavailable: {exc}", tool=call.name
            ) from exc
        # What the admission proves: "allow" happens only while closed, "probe" only in
        # half-open. A rejection is reported as open even when another worker's probe
        # holds a half-open circuit: either way this server is refusing calls.
        self._observe(server, _ADMITTED_STATE.get(admission.decision))
        if admission.decision == "reject":
            raise CircuitOpen(
                f"circuit of tool server {server!r} is open; retry after "
                f"{admission.retry_after:.3f}s",
                tool=call.name,
                retry_after=admission.retry_after,
            )
        call.probe = admission.decision == "probe"
        try:
            result = await call_next(call)
        except ToolTransientError as exc:
            state = await self._report(
                self.store.failure(
                    server,
                    admission,
                    threshold=policy.breaker_failures,
                    reset_timeout=policy.breaker_reset_timeout,
                    window=policy.breaker_window,
                )
            )
            self._observe(server, state)
            if state == "open":
                log.warning(
                    "circuit of tool server %r is open for %gs after %s: %s",
                    server,
                    policy.breaker_reset_timeout,
                    "a failed probe" if call.probe else "consecutive failures",
                    exc,
                )
            raise
        except ToolError:
            await self._verdict_ok(server, admission)
            raise
        except BaseException:
            await self._report(self.store.release(server, admission))
            raise
        await self._verdict_ok(server, admission)
        return result

    async def _verdict_ok(self, server: str, admission: Admission) -> None:
        state = await self._report(self.store.success(server, admission))
        self._observe(server, state)
        if admission.decision == "probe" and state == "closed":
            log.warning("circuit of tool server %r closed: the probe succeeded", server)

    @staticmethod
    async def _report(verdict: Awaitable[Any]) -> Any:
        # The call already happened; losing its verdict only delays the breaker (a probe
        # lease expires by itself), while raising would misreport the call's own outcome.
        try:
            return await verdict
        except RedisError:
            log.warning("could not record circuit-breaker verdict", exc_info=True)
            return None
