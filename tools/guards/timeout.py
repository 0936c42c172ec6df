"""Bound each attempt in time; an expired attempt raises ``ToolTimeout`` (transient)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from tools.errors import ToolTimeout
from tools.guards import Next, ToolCall


class TimeoutGuard:
    """Cancels the adapter after ``policy.timeout`` seconds."""

    def enabled(self, call: ToolCall) -> bool:
        """Switched off per tool with ``timeout: null``."""
        return call.policy.timeout is not None

    async def __call__(self, call: ToolCall, call_next: Next) -> BaseModel:
        """Run the rest of the chain under ``asyncio.timeout``."""
        seconds = call.policy.timeout
        assert seconds is not None  # enabled() guarantees it
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                return await call_next(call)
        except TimeoutError as exc:
            # Only our own deadline becomes ToolTimeout; a TimeoutError the adapter let
            # escape is its own (and it counts as a plain transient failure upstream only
            # if the adapter maps it).
            if scope.expired():
                raise ToolTimeout(
                    f"{call.name} timed out after {seconds:g}s", tool=call.name
                ) from exc
            raise
