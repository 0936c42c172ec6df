"""Worker units: the scaling units an operator deploys and scales one by one.

Each unit is a small settings object (arq's ``WorkerSettings``): its routers, and a
factory of the dependencies its handlers use. Routers are imported lazily so that a
unit pulls in only what it runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from bus.router import Router, Subscription
from workers.settings import ConfigError


@dataclass(frozen=True)
class Unit:
    """One deployable worker: the routers (``module:attribute``) it runs."""

    name: str
    description: str
    routers: tuple[str, ...]

    def load(self) -> list[Router]:
        """Import and return this unit's routers."""
        out = []
        for ref in self.routers:
            module, attr = ref.split(":")
            out.append(getattr(importlib.import_module(module), attr))
        return out

    def subscriptions(self) -> list[Subscription]:
        """Every subscription of the unit."""
        return [s for r in self.load() for s in r.subscriptions]


UNITS: dict[str, Unit] = {
    u.name: u
    for u in (
        Unit(
            "deploy", "deployment flow: build, deploy, roll back", ("handlers.deployment:router",)
        ),
        Unit("security", "image scans and security findings", ("handlers.security:router",)),
        Unit("notify", "notifications to people (Slack)", ("handlers.notifications:router",)),
        Unit("audit", "an append-only audit trail of every event", ("handlers.audit:router",)),
        Unit("webhooks", "signed outbound webhook delivery", ("handlers.webhooks:router",)),
    )
}


class UnknownUnit(ConfigError):
    """No worker unit has this name."""


def get_unit(name: str) -> Unit:
    """The unit called ``name``; :class:`UnknownUnit` lists the known ones."""
    try:
        return UNITS[name]
    except KeyError:
        known = ", ".join(UNITS)
        raise UnknownUnit(f"unknown worker unit {name!r}; known units: {known}") from None
