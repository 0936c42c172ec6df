"""Retry transient failures with exponential backoff and full jitter.

Only :class:`~tools.errors.ToolTransientError` (and its subclass ``ToolTimeout``) is
retried. ``ToolFailed``, argument errors, permission denials and open circuits are
final: repeating them cannot help. Sleep ``n`` (after attempt ``n``) is drawn uniformly
from ``[0, min(max_delay, base_delay * 2**(n-1))]`` ("full jitter"), which spreads the
retries of many workers hit by the same outage.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from tools.errors import ToolTransientError
from tools.guards import Next, ToolCall

log = logging.getLogger(__name__)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter delay after failed attempt number ``attempt`` (1-based)."""
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return rng.uniform(0.0, ceiling)


class RetryGuard:
    """Calls the rest of the chain up to ``retry_attempts`` times."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.rng = rng or random.Random()
        self.sleep = sleep

    def enabled(self, call: ToolCall) -> bool:
        """Switched off per tool with ``retry: false`` (then one attempt is made)."""
        return call.policy.retry and call.policy.retry_attempts > 1

    async def __call__(self, call: ToolCall, call_next: Next) -> BaseModel:
        """Attempt the call; back off and repeat on transient errors."""
        policy = call.policy
        attempt = 0
        while True:
            attempt += 1
            call.attempts = attempt
            try:
                return await call_next(call)
            except ToolTransientError as exc:
                if attempt >= policy.retry_attempts:
                    raise
                delay = backoff_delay(
                    attempt, policy.retry_base_delay, policy.retry_max_delay, self.rng
                )
                log.info(
                    "%s attempt %d/%d failed (%s); retrying in %.3fs",
                    call.name,
                    attempt,
                    policy.retry_attempts,
                    exc,
                    delay,
                )
                await self.sleep(delay)
