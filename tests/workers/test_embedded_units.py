"""The embedded system runs every unit through the same rule: a unit's ``embedded_deps``
factory when it declares one, else its ``deps`` (no per-unit branch for codebus's own)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus.context import HandlerContext
from bus.router import Router
from schemas.envelope import Event, new_event
from workers.embedded import EmbeddedSystem
from workers.settings import ConfigError, Settings
from workers.units import UNITS, Unit


@dataclass
class Greeting:
    text: str


def real_deps(settings: Settings, redis: Any) -> Greeting:
    raise ConfigError("CODEBUS_GREETING_FILE: not set")  # what a real deployment reads


def embedded_deps(settings: Settings, redis: Any) -> Greeting:
    return Greeting("hello from memory")


router = Router("greeter")


@router.subscribe("image.built", name="greeter.greet")
async def greet(event: Event, ctx: HandlerContext) -> None:
    await ctx.redis.rpush("greetings", ctx.unit_deps(Greeting).text)


GREETER = Unit(
    "greeter",
    "a user unit whose real deps need a file",
    (router,),
    deps=real_deps,
    embedded_deps=embedded_deps,
    tools=(),
)


def test_extra_deps_picks_the_embedded_factory_only_when_embedded() -> None:
    settings = Settings()
    assert GREETER.extra_deps(settings, None, embedded=True) == {
        "unit_deps": Greeting("hello from memory")
    }
    try:
        GREETER.extra_deps(settings, None)
    except ConfigError as exc:
        assert "CODEBUS_GREETING_FILE" in str(exc)
    else:
        raise AssertionError("the real factory was not called")


async def test_embedded_system_runs_a_user_unit_with_its_embedded_deps() -> None:
    event = new_event("image.built", {"app": "web", "version": "1", "image_tag": "web:1"})
    async with EmbeddedSystem([GREETER]) as system:
        await system.broker.publish(event)
        await system.settle(10)
        assert await system.redis.lrange("greetings", 0, -1) == [b"hello from memory"]


async def test_builtin_units_use_the_same_mechanism() -> None:
    # The units whose real factories read files or S3 declare their embedded stand-ins.
    for name in ("deploy", "workflows", "webhooks"):
        assert UNITS[name].embedded_deps is not None, name
    # Every built-in unit starts in the embedded system with no configuration at all.
    async with EmbeddedSystem(list(UNITS)) as system:
        event = new_event("image.built", {"app": "web", "version": "1", "image_tag": "web:1"})
        await system.broker.publish(event)
        await system.settle(10)
        assert len(system.workers) == len(list(UNITS))
