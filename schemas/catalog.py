"""The event catalogue: event type -> payload model, extended by installed packages.

Packages declare their event types under the entry-point group ``codebus.events``; an
entry point loads to a mapping ``{type: PayloadModel}`` or to a callable returning one.
codebus declares its own types the same way (``pyproject.toml``)::

    [project.entry-points."codebus.events"]
    changelog = "changelog_events.events:EVENT_TYPES"

The catalogue is read once, on first use. A type declared twice (with different models)
is a :class:`DuplicateEventType` naming both sources. Types nobody declared follow
``CODEBUS_UNKNOWN_EVENTS``: ``reject`` (the default: publishing one fails naming the
type) or ``pass`` (published and routed unvalidated, to handlers that take ``Event``).

Reading the entry points (installed distributions' metadata) is the one I/O of
``schemas/``; it happens once, on first use, never at import.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from schemas.errors import ConfigError

GROUP = "codebus.events"
POLICY_VARIABLE = "CODEBUS_UNKNOWN_EVENTS"
UnknownPolicy = Literal["reject", "pass"]

_TYPE = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$")
#: Where codebus's own entry points are declared when it runs from a source tree that
#: was never installed (PYTHONPATH=.): the same declarations, read from the file.
_SOURCE_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


class CatalogError(ConfigError):
    """An entry point of ``codebus.events`` is broken (cannot load, bad mapping)."""


class DuplicateEventType(CatalogError):
    """Two sources declare the same event type with different models."""


class RawPayload(BaseModel):
    """The data of an event whose type nobody declared (``CODEBUS_UNKNOWN_EVENTS=pass``):
    kept as it came, unvalidated. Only handlers that take ``Event`` receive such events."""

    model_config = ConfigDict(extra="allow", frozen=True)


def unknown_policy(environ: Mapping[str, str] | None = None) -> UnknownPolicy:
    """``CODEBUS_UNKNOWN_EVENTS`` (``reject`` unless set); a bad value is a ConfigError."""
    value = (environ if environ is not None else os.environ).get(POLICY_VARIABLE, "reject")
    value = value.strip().lower() or "reject"
    if value not in ("reject", "pass"):
        raise ConfigError(f"{POLICY_VARIABLE}: expected reject or pass, got {value!r}")
    return "pass" if value == "pass" else "reject"


def source_entry_points(group: str) -> dict[str, str]:
    """codebus's own declarations of ``group``, read from the pyproject.toml of this
    source tree (when it runs uninstalled, ``PYTHONPATH=.``)."""
    try:
        project = tomllib.loads(_SOURCE_PYPROJECT.read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return {}
    if project.get("name") != "codebus":
        return {}
    return dict(project.get("entry-points", {}).get(group, {}))


def _source_entry_points() -> list[metadata.EntryPoint]:
    return [metadata.EntryPoint(n, v, GROUP) for n, v in source_entry_points(GROUP).items()]


@functools.cache
def _installed() -> tuple[tuple[str, bool, tuple[metadata.EntryPoint, ...]], ...]:
    """``(distribution, is codebus's own copy, entry points)`` of every installed
    distribution, read once per process (scanning them all is the slow part)."""
    found = []
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or "?"
        own = name == "codebus" and _is_this_copy(dist)
        found.append((name, own, tuple(dist.entry_points)))
    return tuple(found)


def discover(group: str, own: Callable[[], list[metadata.EntryPoint]]) -> list[tuple[str, Any]]:
    """``(source, entry point)`` for every entry point of ``group``, one per declaration.

    codebus's own declarations come from the installed codebus distribution when it is
    this copy of the code, and otherwise from ``own()`` (this source tree's
    pyproject.toml): built-ins are found the same way either way."""
    found: dict[str, Any] = {}
    own_eps: list[metadata.EntryPoint] = []
    for name, is_own, entry_points in _installed():
        eps = [ep for ep in entry_points if ep.group == group]
        if name == "codebus":
            if is_own:
                own_eps = own_eps or eps
            continue
        for ep in eps:
            found.setdefault(f"{name}: {ep.name} = {ep.value}", ep)
    own_found = {f"codebus: {ep.name} = {ep.value}": ep for ep in (own_eps or own())}
    return list({**own_found, **found}.items())


def _is_this_copy(dist: metadata.Distribution) -> bool:
    """The distribution's code is this file's (a regular or an editable install)."""
    here = Path(__file__).resolve()
    try:
        if Path(str(dist.locate_file("schemas/catalog.py"))).resolve() == here:
            return True
    except OSError:
        pass
    text = dist.read_text("direct_url.json") or ""
    return f'"file://{here.parent.parent}"' in text


class EventCatalog(MutableMapping[str, type[BaseModel]]):
    """Event type -> payload model, with where each type comes from.

    Built from the ``codebus.events`` entry points on first use; ``register`` adds types
    directly (tests, a module's own registration)."""

    def __init__(self, group: str = GROUP) -> None:
        self.group = group
        self._models: dict[str, type[BaseModel]] = {}
        self._sources: dict[str, str] = {}
        #: Types added by ``update`` (a module registering itself): an entry point that
        #: declares the same model names the source instead.
        self._provisional: set[str] = set()
        self._loaded = False
        self._loading = False

    # --- loading -------------------------------------------------------------------
    def load(self) -> EventCatalog:
        """Read every entry point once; errors name the entry point (and both sources)."""
        if self._loaded or self._loading:
            return self
        self._loading = True
        try:
            for source, ep in discover(self.group, _source_entry_points):
                self.register_all(_load_mapping(source, ep), source)
            self._loaded = True
        finally:
            self._loading = False
        return self

    def register(self, event_type: str, model: Any, source: str) -> None:
        """Declare one type; the same model again is a no-op, another model an error."""
        if not isinstance(event_type, str) or not _TYPE.fullmatch(event_type):
            raise CatalogError(
                f"{source}: event type {event_type!r}: use lower-case dotted names like"
                " 'family.event_name'"
            )
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise CatalogError(
                f"{source}: event type {event_type!r}: {model!r} is not a pydantic model"
            )
        known = self._models.get(event_type)
        if known is not None and known is not model:
            raise DuplicateEventType(
                f"event type {event_type!r} is declared twice: by {self._sources[event_type]}"
                f" and by {source}"
            )
        self._models[event_type] = model
        if event_type not in self._sources or event_type in self._provisional:
            self._sources[event_type] = source
            self._provisional.discard(event_type)

    def register_all(self, models: Mapping[str, type[BaseModel]], source: str) -> None:
        """Declare several types from one source."""
        for event_type, model in models.items():
            self.register(event_type, model, source)

    def unregister(self, event_type: str) -> None:
        """Forget one type (tests that declared it for a while)."""
        self._models.pop(event_type, None)
        self._sources.pop(event_type, None)
        self._provisional.discard(event_type)

    def update(self, models: Mapping[str, type[BaseModel]]) -> None:  # type: ignore[override]
        """``dict.update`` compatibility: declare ``models`` from the caller's module."""
        module = next(iter(models.values())).__module__ if models else "?"
        fresh = [t for t in models if t not in self._models]
        self.register_all(models, f"module {module}")
        self._provisional.update(fresh)

    def source(self, event_type: str) -> str:
        """Where ``event_type`` is declared (``distribution: entry point = module:attr``)."""
        self.load()
        return self._sources[event_type]

    # --- Mapping ---------------------------------------------------------------------
    def __getitem__(self, event_type: str) -> type[BaseModel]:
        self.load()
        return self._models[event_type]

    def __setitem__(self, event_type: str, model: type[BaseModel]) -> None:
        """``catalog[type] = model``: declare it at run time (same checks as register)."""
        self.load()
        self.register(event_type, model, "added at run time")

    def __delitem__(self, event_type: str) -> None:
        self.load()
        if event_type not in self._models:
            raise KeyError(event_type)
        self.unregister(event_type)

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._models))

    def __len__(self) -> int:
        self.load()
        return len(self._models)

    def __contains__(self, event_type: object) -> bool:
        self.load()
        return event_type in self._models


def _load_mapping(source: str, ep: Any) -> Mapping[str, type[BaseModel]]:
    try:
        obj = ep.load()
        if callable(obj) and not isinstance(obj, Mapping):
            obj = obj()
    except Exception as exc:
        raise CatalogError(f"{source}: cannot load: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise CatalogError(
            f"{source}: must load to a mapping {{type: model}} (or a callable returning one),"
            f" got {type(obj).__name__}"
        )
    return obj
