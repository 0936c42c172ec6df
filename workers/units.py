"""Worker units: the scaling units an operator deploys and scales one by one.

Each unit is a small settings object (arq's ``WorkerSettings``): its routers, its tool
role (the tools its handlers may call) and a factory of the dependencies its handlers
use. Units are found through the entry-point group ``codebus.units`` (an entry point
loads to a :class:`Unit`); codebus's own units are declared there too. For a quick
start, ``codebus worker --app package.module:unit`` runs a unit that is not installed.
Routers are imported lazily so that a unit pulls in only what it runs.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from bus.router import Router, Subscription
from schemas.catalog import discover
from workers.settings import ConfigError, Settings

GROUP = "codebus.units"
#: The deploy pipeline file that replaces the shipped one (read by handlers.deployment).
DEPLOY_PIPELINE = "CODEBUS_DEPLOY_PIPELINE"
_UNIT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")

#: ``(settings, redis) -> deps``: what a unit's handlers need beyond the toolbox, as a
#: dict (merged into ``ctx.deps``) or one typed object (``ctx.unit_deps(Type)``);
#: raises ConfigError naming the missing or bad setting.
DepsFactory = Callable[[Settings, Any], Any]


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ConfigError(f"{ref!r}: expected 'package.module:attribute'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load {ref!r}: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Unit:
    """One deployable worker.

    ``routers``: its :class:`Router` objects, or ``module:attribute`` references imported
    when the unit runs. ``tools``: the tools its handlers may call (names or fnmatch
    patterns): its least-privilege role, checked by the toolbox's permission guard;
    ``()`` for none, ``None`` when undeclared (the tools file must then declare
    ``guards.roles.<name>``). ``deps``: a :data:`DepsFactory` (or its ``module:function``
    reference) for what its handlers need beyond the toolbox, Redis and names.
    ``embedded_deps``: the factory used instead of ``deps`` when the unit runs in the
    embedded system (in-memory broker, fakeredis, fake tools), for a unit whose ``deps``
    reads files or services the embedded system does not have; None: ``deps`` there too."""

    name: str
    description: str
    routers: tuple[str | Router, ...]
    deps: str | DepsFactory | None = None
    tools: tuple[str, ...] | None = None
    embedded_deps: str | DepsFactory | None = None

    def __post_init__(self) -> None:
        if not _UNIT_NAME.fullmatch(self.name):
            raise ConfigError(
                f"unit name {self.name!r}: use lower-case letters, digits, - and _"
                " (it names queues, roles and metrics)"
            )
        if isinstance(self.routers, str | Router) or not self.routers:
            raise ConfigError(f"unit {self.name!r}: routers must be a non-empty tuple")
        if isinstance(self.tools, str):
            raise ConfigError(f"unit {self.name!r}: tools must be a tuple of tool names")

    def load(self) -> list[Router]:
        """Import and return this unit's routers (the event catalogue is read first: a
        type declared twice stops the unit here, at start-up)."""
        _read_event_catalogue()
        routers = [_resolve(r) if isinstance(r, str) else r for r in self.routers]
        for r in routers:
            if not isinstance(r, Router):
                raise ConfigError(f"unit {self.name!r}: {r!r} is not a codebus Router")
        return routers

    def extra_deps(
        self, settings: Settings, redis: Any, *, embedded: bool = False
    ) -> dict[str, Any]:
        """The dependencies this unit needs beyond the toolbox (none for most): the
        factory's dict, or ``{"unit_deps": obj}`` for a typed object. ``embedded``: for
        the embedded system (``embedded_deps`` when the unit declares one)."""
        ref = self.embedded_deps if embedded and self.embedded_deps is not None else self.deps
        if ref is None:
            return {}
        factory: DepsFactory = _resolve(ref) if isinstance(ref, str) else ref
        made = factory(settings, redis)
        return dict(made) if isinstance(made, dict) else {"unit_deps": made}

    def subscriptions(self) -> list[Subscription]:
        """Every subscription of the unit."""
        return [s for r in self.load() for s in r.subscriptions]


#: What a unit that runs flows needs to keep their records in S3 (flows.repository_s3).
FLOW_RECORDS = (
    "s3-storage.s3_upload_file",
    "s3-storage.s3_download_file",
    "s3-storage.s3_list_objects",
)

DEPLOY = Unit(
    "deploy",
    "the deploy pipeline (validate, build, scan, deploy, notify) and its flows: "
    "rolling, blue-green, canary; timers, commands, sweeps",
    ("handlers.deployment:router", "handlers.flows:router"),
    deps="workers.units:flow_deps",
    embedded_deps="workers.unit_deps:embedded_flows",
    tools=(
        "docker.docker_build",
        "docker.docker_images",
        "kubernetes.*",
        # analysis steps of progressive delivery (read-only queries)
        "prometheus-monitoring.prometheus_query",
        "prometheus-monitoring.prometheus_query_range",
        *FLOW_RECORDS,
    ),
)
SECURITY = Unit(
    "security",
    "image scans and security findings",
    ("handlers.security:router",),
    tools=("security-scanner.*", "docker.docker_images"),
)
NOTIFY = Unit(
    "notify",
    "notifications to people (Slack)",
    ("handlers.notifications:router",),
    tools=("slack-notifications.*",),
)
WORKFLOWS = Unit(
    "workflows",
    "pipelines and sagas declared in YAML: one step per delivery, compensations",
    ("handlers.workflows:router", "handlers.workflows_subflow:router"),
    deps="workers.units:workflow_deps",
    embedded_deps="workers.unit_deps:embedded_flows",
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
)
WORKITEMS = Unit(
    "workitems",
    "the guide's follow-ups: Azure DevOps work items and Bugs, deployment_info metric",
    ("handlers.workitems:router",),
    deps="handlers.workitems:unit_deps",
    tools=(
        "azure-devops.create_work_item",
        "azure-devops.manage_work_items",
        "prometheus-monitoring.prometheus_query",
    ),
)
AUDIT = Unit(
    "audit", "an append-only audit trail of every event", ("handlers.audit:router",), tools=()
)
WEBHOOKS = Unit(
    "webhooks",
    "signed outbound webhook delivery",
    ("handlers.webhooks:router",),
    deps="workers.unit_deps:webhooks",
    embedded_deps="workers.unit_deps:embedded_webhooks",
    tools=(),
)


class UnitCatalog(MutableMapping[str, Unit]):
    """Unit name -> :class:`Unit`, from the ``codebus.units`` entry points (read on first
    use), with where each comes from. A name declared twice is a ConfigError naming
    both sources."""

    def __init__(self, group: str = GROUP) -> None:
        self.group = group
        self._units: dict[str, Unit] = {}
        self._sources: dict[str, str] = {}
        self._loaded = False

    def load(self) -> UnitCatalog:
        """Read every entry point once."""
        if self._loaded:
            return self
        self._loaded = True
        try:
            for source, ep in discover(self.group, _own_entry_points):
                try:
                    unit = ep.load()
                except Exception as exc:
                    raise ConfigError(
                        f"{source}: cannot load: {type(exc).__name__}: {exc}"
                    ) from exc
                self.add(unit, source, entry_name=ep.name)
        except BaseException:
            self._loaded = False
            self._units.clear()
            self._sources.clear()
            raise
        return self

    def add(self, unit: Unit, source: str, entry_name: str | None = None) -> None:
        """Declare one unit; another unit under a taken name is a ConfigError."""
        if not isinstance(unit, Unit):
            raise ConfigError(f"{source}: must load to a codebus Unit, got {type(unit).__name__}")
        if entry_name is not None and entry_name != unit.name:
            raise ConfigError(
                f"{source}: the entry point is named {entry_name!r}, the unit"
                f" {unit.name!r}: use the same name"
            )
        known = self._units.get(unit.name)
        if known is not None and known != unit:
            raise ConfigError(
                f"worker unit {unit.name!r} is declared twice: by {self._sources[unit.name]}"
                f" and by {source}"
            )
        self._units[unit.name] = unit
        self._sources.setdefault(unit.name, source)

    def source(self, name: str) -> str:
        """Where the unit ``name`` is declared."""
        self.load()
        return self._sources.get(name, "added at run time")

    def __getitem__(self, name: str) -> Unit:
        self.load()
        return self._units[name]

    def __setitem__(self, name: str, unit: Unit) -> None:
        self.load()
        self._units[name] = unit

    def __delitem__(self, name: str) -> None:
        self.load()
        del self._units[name]
        self._sources.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._units))

    def __len__(self) -> int:
        self.load()
        return len(self._units)


def _own_entry_points() -> list[Any]:
    from importlib.metadata import EntryPoint

    from schemas.catalog import source_entry_points

    return [EntryPoint(n, v, GROUP) for n, v in source_entry_points(GROUP).items()]


#: Every installed worker unit (entry points of ``codebus.units``), codebus's own included.
UNITS: UnitCatalog = UnitCatalog()


def unit_roles() -> dict[str, list[str]]:
    """Role name -> allowed tools: one role per unit that declares its ``tools``, plus
    ``operator`` (the CLI's ``codebus tools call``), which may call anything."""
    roles = {u.name: list(u.tools) for u in UNITS.values() if u.tools is not None}
    return {**roles, "operator": ["*"]}


def workflow_deps(settings: Settings, redis: Any) -> dict[str, Any]:
    """Where the ``workflows`` unit keeps run records (``CODEBUS_FLOWS_BUCKET``)."""
    return {"flows_bucket": settings.flows_bucket}


def flow_deps(settings: Settings, redis: Any) -> dict[str, Any]:
    """The ``deploy`` unit's flows configuration (``CODEBUS_FLOWS_CONFIG`` or the default),
    and its deploy pipeline (``CODEBUS_DEPLOY_PIPELINE`` or the shipped one) checked here,
    at start: a bad file stops the worker with one line naming the variable and field
    instead of dead-lettering the first request."""
    from flows.config import FlowsConfigError, load_flows_config
    from flows.pipeline_facade import FacadeSpecError, load_facade_spec

    try:
        load_facade_spec(os.environ.get(DEPLOY_PIPELINE) or None)
    except FacadeSpecError as exc:
        raise ConfigError(f"{DEPLOY_PIPELINE}: {exc}") from None
    try:
        return {
            "flows_config": load_flows_config(settings.flows_config),
            "flows_bucket": settings.flows_bucket,
        }
    except FlowsConfigError as exc:
        raise ConfigError(f"CODEBUS_FLOWS_CONFIG: {exc}") from None


def _read_event_catalogue() -> None:
    """Read the event catalogue (a type declared twice is a start-up error); imported
    here so that importing :class:`Unit` does not build codebus's payload models."""
    from schemas.events import EVENT_TYPES

    EVENT_TYPES.load()


class UnknownUnit(ConfigError):
    """No worker unit has this name."""


def get_unit(name: str) -> Unit:
    """The unit called ``name``, or loaded from a ``package.module:attribute`` reference;
    :class:`UnknownUnit` lists the known ones."""
    if ":" in name:
        return load_app(name)
    _read_event_catalogue()  # start-up errors of the catalogue before anything connects
    try:
        return UNITS[name]
    except KeyError:
        known = ", ".join(UNITS)
        raise UnknownUnit(f"unknown worker unit {name!r}; known units: {known}") from None


def load_app(ref: str) -> Unit:
    """The :class:`Unit` at ``package.module:attribute`` (``codebus worker --app``)."""
    _read_event_catalogue()
    unit = _resolve(ref)
    if not isinstance(unit, Unit):
        raise ConfigError(f"--app {ref}: expected a codebus Unit, got {type(unit).__name__}")
    return unit


def with_unit_roles(config: Any, units: Any, *, undeclared: tuple[str, ...] | None = None) -> Any:
    """``config`` (a ToolboxConfig) with the role of each unit that declares its tools
    and that the configuration does not already define (a tools file may narrow it).
    ``undeclared``: the role given to units with ``tools=None`` (none: no role)."""
    roles = dict(config.roles)
    for unit in units:
        tools = unit.tools if unit.tools is not None else undeclared
        if tools is not None:
            roles.setdefault(unit.name, list(tools))
    return config.model_copy(update={"roles": roles})
