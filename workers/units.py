"""Worker units: the scaling units an operator deploys and scales one by one.

Each unit is a small settings object (arq's ``WorkerSettings``): its routers, and a
factory of the dependencies its handlers use. Routers are imported lazily so that a
unit pulls in only what it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bus.router import Router, Subscription
from workers.settings import ConfigError, Settings

#: ``(settings, redis) -> deps``: what a unit's handlers need beyond the toolbox;
#: raises ConfigError naming the missing or bad setting.
DepsFactory = Callable[[Settings, Any], dict[str, Any]]


def _resolve(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Unit:
    """One deployable worker: the routers (``module:attribute``) it runs, the tools its
    handlers may call (names or fnmatch patterns: its least-privilege role, declared
    here and nowhere else), and the factory (``module:function``, a
    :data:`DepsFactory`) of its extra dependencies."""

    name: str
    description: str
    routers: tuple[str, ...]
    deps: str | None = None
    tools: tuple[str, ...] = ()

    def load(self) -> list[Router]:
        """Import and return this unit's routers."""
        return [_resolve(ref) for ref in self.routers]

    def extra_deps(self, settings: Settings, redis: Any) -> dict[str, Any]:
        """The dependencies this unit needs beyond the toolbox (none for most)."""
        if self.deps is None:
            return {}
        factory: DepsFactory = _resolve(self.deps)
        return factory(settings, redis)

    def subscriptions(self) -> list[Subscription]:
        """Every subscription of the unit."""
        return [s for r in self.load() for s in r.subscriptions]


#: What a unit that runs flows needs to keep their records in S3 (flows.repository_s3).
FLOW_RECORDS = (
    "s3-storage.s3_upload_file",
    "s3-storage.s3_download_file",
    "s3-storage.s3_list_objects",
)

UNITS: dict[str, Unit] = {
    u.name: u
    for u in (
        Unit(
            "deploy",
            "the deploy pipeline (validate, build, scan, deploy, notify) and its flows: "
            "rolling, blue-green, canary; timers, commands, sweeps",
            ("handlers.deployment:router", "handlers.flows:router"),
            deps="workers.units:flow_deps",
            tools=(
                "docker.docker_build",
                "docker.docker_images",
                "kubernetes.*",
                # analysis steps of progressive delivery (read-only queries)
                "prometheus-monitoring.prometheus_query",
                "prometheus-monitoring.prometheus_query_range",
                *FLOW_RECORDS,
            ),
        ),
        Unit(
            "security",
            "image scans and security findings",
            ("handlers.security:router",),
            tools=("security-scanner.*", "docker.docker_images"),
        ),
        Unit(
            "notify",
            "notifications to people (Slack)",
            ("handlers.notifications:router",),
            tools=("slack-notifications.*",),
        ),
        Unit(
            "workflows",
            "pipelines and sagas declared in YAML: one step per delivery, compensations",
            ("handlers.workflows:router", "handlers.workflows_subflow:router"),
            deps="workers.units:workflow_deps",
            # What the guide's pipeline and saga steps call; a step calling anything
            # else fails with a permission error naming the tool.
            tools=(
                "docker.docker_build",
                "docker.docker_images",
                "security-scanner.docker_security_scan",
                "kubernetes.*",
                "s3-storage.*",
                "slack-notifications.*",
                "prometheus-monitoring.prometheus_query",
            ),
        ),
        Unit(
            "workitems",
            "the guide's follow-ups: Azure DevOps work items and Bugs, deployment_info metric",
            ("handlers.workitems:router",),
            deps="handlers.workitems:unit_deps",
            tools=(
                "azure-devops.create_work_item",
                "azure-devops.manage_work_items",
                "prometheus-monitoring.prometheus_query",
            ),
        ),
        Unit("audit", "an append-only audit trail of every event", ("handlers.audit:router",)),
        Unit(
            "webhooks",
            "signed outbound webhook delivery",
            ("handlers.webhooks:router",),
            deps="workers.unit_deps:webhooks",
        ),
    )
}


def unit_roles() -> dict[str, list[str]]:
    """Role name -> allowed tools: one role per unit (its ``tools``), plus ``operator``
    (the CLI's ``codebus tools call``), which may call anything."""
    return {**{u.name: list(u.tools) for u in UNITS.values()}, "operator": ["*"]}


def workflow_deps(settings: Settings, redis: Any) -> dict[str, Any]:
    """Where the ``workflows`` unit keeps run records (``CODEBUS_FLOWS_BUCKET``)."""
    return {"flows_bucket": settings.flows_bucket}


def flow_deps(settings: Settings, redis: Any) -> dict[str, Any]:
    """The ``deploy`` unit's flows configuration (``CODEBUS_FLOWS_CONFIG`` or the default)."""
    from flows.config import FlowsConfigError, load_flows_config

    try:
        return {
            "flows_config": load_flows_config(settings.flows_config),
            "flows_bucket": settings.flows_bucket,
        }
    except FlowsConfigError as exc:
        raise ConfigError(f"CODEBUS_FLOWS_CONFIG: {exc}") from None


class UnknownUnit(ConfigError):
    """No worker unit has this name."""


def get_unit(name: str) -> Unit:
    """The unit called ``name``; :class:`UnknownUnit` lists the known ones."""
    try:
        return UNITS[name]
    except KeyError:
        known = ", ".join(UNITS)
        raise UnknownUnit(f"unknown worker unit {name!r}; known units: {known}") from None
