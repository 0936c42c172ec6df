"""codebus's test kit, also a pytest plugin (entry point ``pytest11``).

Fixtures, available in any project that has codebus installed:

``memory_broker``
    an in-memory broker with RabbitMQ's routing and delivery semantics, ``join()`` and
    ``dead_letters``;
``fake_redis``
    a fakeredis client (Lua scripts included);
``fake_toolbox``
    a :class:`FakeToolbox` knowing every codebus tool: canned responses, call history,
    injected failures, arguments and results checked against the real models;
``run_units``
    :func:`run_units` itself: run units end to end on the embedded system and get back
    the events they published and the dead letters.

Without pytest::

    run = await run_units(["changelog"], [("change.recorded", {"service": "web", ...})])
    assert run.types() == ["changelog.entry_added"]
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel

if TYPE_CHECKING:
    from bus.memory import MemoryBroker
    from schemas.envelope import Event
    from tools.fakes import FakeToolbox
    from workers.units import Unit


@dataclass(frozen=True)
class DeadLetter:
    """An event the runtime gave up on, with the reason it recorded."""

    event: Event
    kind: str
    reason: str


@dataclass
class UnitsRun:
    """What :func:`run_units` saw: the events the units published (the input events
    excluded), in order, and the dead letters."""

    published: list[Event] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def types(self) -> list[str]:
        """The types of the published events, in order."""
        return [e.type for e in self.published]

    def of_type(self, event_type: str) -> list[Event]:
        """The published events of one type."""
        return [e for e in self.published if e.type == event_type]


async def run_units(
    units: Sequence[str | Unit],
    events: Sequence[Event | tuple[str, Mapping[str, Any]]],
    *,
    redis: Any = None,
    toolbox: Any = None,
    timeout: float = 10.0,
    **embedded: Any,
) -> UnitsRun:
    """Run ``units`` (installed names or :class:`Unit` objects) on the embedded system
    (in-memory broker, fakeredis, fake tool servers behind the real guard chain, the
    real middleware and inbox), publish ``events`` (``Event`` objects or ``(type, data)``
    pairs, validated like any publish), wait until everything settled and return what
    happened. ``redis`` and ``toolbox`` (e.g. the ``fake_redis`` and ``fake_toolbox``
    fixtures) let the test look inside afterwards."""
    from bus.deadletters import info
    from schemas.envelope import Event, new_event
    from schemas.events import validate_payload
    from workers.embedded import EmbeddedSystem

    inputs: list[Event] = []
    for item in events:
        if isinstance(item, Event):
            inputs.append(item)
        else:
            event_type, data = item
            validate_payload(event_type, dict(data))
            inputs.append(new_event(event_type, dict(data), source="codebus/testing"))
    input_ids = {e.id for e in inputs}
    run = UnitsRun()
    async with EmbeddedSystem(units, redis=redis, toolbox=toolbox, **embedded) as system:
        for event in inputs:
            await system.broker.publish(event)
        await system.settle(timeout)
        run.published = [e for e in system.events if e.id not in input_ids]
        for message in system.broker.dead_letters:
            dead = info(message)
            run.dead_letters.append(
                DeadLetter(Event.from_json(message.body), dead.kind, dead.reason)
            )
    return run


@contextlib.contextmanager
def declared_event_types(
    models: Mapping[str, type[BaseModel]], source: str = "test"
) -> Iterator[None]:
    """Declare event types for the duration of a block, as an installed package's entry
    point would (to test handlers of a package that is not installed yet)."""
    from schemas.events import EVENT_TYPES

    fresh = [t for t in models if t not in EVENT_TYPES]
    EVENT_TYPES.register_all(models, source)
    try:
        yield
    finally:
        for event_type in fresh:
            EVENT_TYPES.unregister(event_type)


# --- pytest fixtures ---------------------------------------------------------------


@pytest.fixture
def memory_broker() -> MemoryBroker:
    """A connected in-memory broker (``join()``, ``dead_letters``)."""
    from bus.memory import MemoryBroker

    broker = MemoryBroker()
    asyncio.run(broker.connect())  # declares the dead-letter queue; no I/O
    return broker


@pytest.fixture
def fake_redis() -> Any:
    """A fakeredis asyncio client, empty for each test."""
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())


@pytest.fixture
def fake_toolbox() -> FakeToolbox:
    """A FakeToolbox that knows every codebus tool (checked against the real models)."""
    from tools.fakes import FakeToolbox
    from workers.toolbox import fake_servers

    return FakeToolbox(fake_servers())


@pytest.fixture(name="run_units")
def run_units_fixture() -> Any:
    """:func:`codebus.testing.run_units`."""
    return run_units


__all__ = [
    "DeadLetter",
    "UnitsRun",
    "declared_event_types",
    "fake_redis",
    "fake_toolbox",
    "memory_broker",
    "run_units",
]
