"""The ``changelog`` worker unit: each recorded change appended to a Redis list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from changelog_example.events import ChangelogEntryAdded, ChangeRecorded
from codebus import HandlerContext, Router, Settings, Unit

router = Router("changelog")


@dataclass(frozen=True)
class ChangelogDeps:
    """Where the changelog lives: one Redis list per service under ``key_prefix``."""

    key_prefix: str

    def key(self, service: str) -> str:
        return f"{self.key_prefix}:changelog:{service}"


def make_deps(settings: Settings, redis: Any) -> ChangelogDeps:
    """The unit's typed dependencies (``ctx.unit_deps(ChangelogDeps)``)."""
    return ChangelogDeps(key_prefix=settings.prefix)


@router.subscribe("change.recorded", name="changelog.record")
async def record(change: ChangeRecorded, ctx: HandlerContext) -> None:
    """Append the change to its service's changelog and announce it."""
    key = ctx.unit_deps(ChangelogDeps).key(change.service)
    entry = json.dumps({"event": ctx.event.id, **change.model_dump()})
    position = await ctx.redis.llen(key) + 1
    # Applied with the inbox's done-mark: a redelivered event is never appended twice.
    ctx.on_commit(lambda pipe: pipe.rpush(key, entry))
    await ctx.publish(
        "changelog.entry_added",
        ChangelogEntryAdded(service=change.service, version=change.version, position=position),
    )


unit = Unit(
    "changelog",
    "a changelog of the changes CI records",
    routers=(router,),
    deps=make_deps,
    tools=(),  # calls no tool: its role allows none
)
