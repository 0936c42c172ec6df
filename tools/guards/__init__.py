"""Guards: the layers every tool call passes through, outermost first.

    permission -> audit -> cache -> circuit breaker -> retry -> timeout -> adapter

A guard is an async callable ``guard(call, call_next)`` that may act before and after
``await call_next(call)``, short-circuit it (cache hit, open circuit, denied role) or
call it several times (retry). :class:`ToolCall` carries the call through the chain and
collects what the inner guards learned (attempts, cache hit, probe) for the audit record.

This module holds only the shared interface; each guard lives in its own module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from tools.config import ToolPolicy
from tools.spec import ToolSpec


@dataclass
class ToolCall:
    """One call in flight: validated arguments, caller and the tool's merged policy."""

    spec: ToolSpec
    args: BaseModel
    policy: ToolPolicy
    role: str | None = None
    principal: str = "codebus"
    # Filled in by inner guards so that the audit record can report them.
    attempts: int = 0
    cache_hit: bool = False
    probe: bool = False

    @property
    def name(self) -> str:
        """The full tool name."""
        return self.spec.name


Next = Callable[[ToolCall], Awaitable[BaseModel]]
"""The rest of the chain, as seen by one guard."""


class Guard(Protocol):
    """One layer of the chain."""

    def enabled(self, call: ToolCall) -> bool:
        """Whether this guard applies to ``call`` (its policy may switch it off)."""
        ...

    async def __call__(self, call: ToolCall, call_next: Next) -> BaseModel:
        """Run the call through this layer."""
        ...


__all__ = ["Guard", "Next", "ToolCall"]
