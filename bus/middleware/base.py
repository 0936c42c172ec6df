"""The middleware base class and the per-delivery processing record."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bus.abc import Delivery
from bus.context import HandlerContext
from bus.outcome import Outcome
from bus.router import Subscription
from schemas.envelope import Event


@dataclass(slots=True)
class Processing:
    """Everything known about one delivery while it is processed."""

    delivery: Delivery
    subscription: Subscription
    attempt: int
    stopping: asyncio.Event
    event: Event | None = None
    ctx: HandlerContext | None = None
    started: float = field(default_factory=time.perf_counter)
    state: dict[str, Any] = field(default_factory=dict)


class Middleware:
    """No-op hooks; subclass and override what you need.

    ``before_process`` runs in list order for valid events and may return an outcome to
    skip the handler; ``after_process`` runs in reverse order for every delivery
    (including invalid ones, where ``p.event`` may be None) and may replace the outcome.
    """

    async def on_start(self) -> None:
        """Called once when the worker starts."""

    async def on_stop(self) -> None:
        """Called once when the worker has drained."""

    async def before_process(self, p: Processing) -> Outcome | None:
        """Return an outcome to skip the handler, or None to go on."""
        return None

    async def after_process(self, p: Processing, outcome: Outcome) -> Outcome:
        """Return the (possibly replaced) outcome."""
        return outcome
