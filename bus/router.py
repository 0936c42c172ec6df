"""Subscriptions: which handler runs for which event patterns, on which queue.

    router = Router(unit="deploy")

    @router.subscribe("deployment.requested", name="deploy.requested")
    async def on_requested(payload: DeploymentRequested, ctx: HandlerContext) -> None:
        await ctx.publish("deployment.started", DeploymentStarted(...))

The first parameter's annotation says what the handler receives: a payload model (or
a union of them) gets the validated payload, ``Event`` gets the raw envelope.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel

from bus.matching import validate_pattern
from schemas.envelope import Event

Handler = Callable[..., Awaitable[None]]

_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass(frozen=True)
class Subscription:
    """One handler bound to topic patterns; it owns the queue named after ``name``."""

    name: str
    patterns: tuple[str, ...]
    handler: Handler
    accepts: tuple[type, ...]  # (Event,) or payload model classes
    unit: str
    max_attempts: int | None = None

    @property
    def wants_envelope(self) -> bool:
        """True when the handler takes the raw envelope instead of a payload model."""
        return self.accepts == (Event,)


def _accepted_types(handler: Handler) -> tuple[type, ...]:
    params = list(inspect.signature(handler).parameters.values())
    if len(params) != 2:
        raise TypeError(f"handler {handler.__qualname__} must take (event_or_payload, ctx)")
    hints = typing.get_type_hints(handler)
    ann = hints.get(params[0].name)
    if ann is None or ann is Event:
        return (Event,)
    origin = typing.get_origin(ann)
    members = typing.get_args(ann) if origin in (Union, types.UnionType) else (ann,)
    for m in members:
        if not (isinstance(m, type) and issubclass(m, BaseModel)):
            raise TypeError(
                f"handler {handler.__qualname__}: first parameter must be Event or payload "
                f"model(s), got {ann!r}"
            )
    return tuple(members)


class Router:
    """Collects the subscriptions of one worker unit."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.subscriptions: list[Subscription] = []

    def subscribe(
        self, *patterns: str, name: str, max_attempts: int | None = None
    ) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine for events whose type matches ``patterns``."""
        if not patterns:
            raise ValueError("subscribe() needs at least one pattern")
        if not name or set(name) - _NAME_OK:
            raise ValueError(f"subscription name {name!r}: use lower-case letters, digits, . _ -")
        for p in patterns:
            validate_pattern(p)

        def register(handler: Handler) -> Handler:
            if not inspect.iscoroutinefunction(handler):
                raise TypeError(f"handler {handler.__qualname__} must be async")
            if any(s.name == name for s in self.subscriptions):
                raise ValueError(f"subscription {name!r} is already registered")
            self.subscriptions.append(
                Subscription(
                    name,
                    tuple(patterns),
                    handler,
                    _accepted_types(handler),
                    self.unit,
                    max_attempts,
                )
            )
            return handler

        return register


def describe(sub: Subscription) -> dict[str, Any]:
    """A printable summary of a subscription."""
    return {
        "name": sub.name,
        "unit": sub.unit,
        "patterns": list(sub.patterns),
        "accepts": [t.__name__ for t in sub.accepts],
        "handler": f"{sub.handler.__module__}.{sub.handler.__qualname__}",
    }
