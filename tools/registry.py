"""The registry of tools: ``server.tool`` names -> bound adapter methods.

It knows nothing about guards or I/O; it registers :class:`~tools.spec.ToolServer`
instances, finds tools (with close-match suggestions for typos), describes them with
their JSON schemas and validates call arguments against a tool's model.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from tools.errors import ToolArgumentError, ToolNotFound
from tools.spec import BoundTool, ToolServer, ToolSpec


@dataclass(frozen=True)
class ToolInfo:
    """Description of one tool as ``list_tools()`` returns it."""

    name: str
    description: str
    read_only: bool
    args_schema: dict[str, Any]
    result_schema: dict[str, Any]


def not_found(name: str, known: Iterable[str]) -> ToolNotFound:
    """A :class:`ToolNotFound` for ``name`` that lists the closest known names."""
    matches = difflib.get_close_matches(name, list(known), n=3, cutoff=0.75)
    hint = f"; did you mean {', '.join(matches)}?" if matches else ""
    return ToolNotFound(f"no tool named {name!r}{hint}", tool=name)


def validate_args(spec: ToolSpec, args: Mapping[str, Any] | BaseModel) -> BaseModel:
    """Validate ``args`` with the tool's argument model, before any I/O.

    Raises :class:`ToolArgumentError` naming the tool and every failing field, e.g.
    ``docker.docker_build: image_tag: Field required``.
    """
    model = spec.args_model
    if isinstance(args, model):
        return args
    if isinstance(args, BaseModel):
        # Another model type (or a subclass drifted from the contract): check its data.
        data: Any = args.model_dump()
    elif isinstance(args, Mapping):
        data = dict(args)
    else:
        raise ToolArgumentError(
            f"{spec.name}: arguments must be a mapping or {model.__name__}, "
            f"not {type(args).__name__}",
            tool=spec.name,
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields: list[str] = []
        details: list[str] = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
            fields.append(loc)
            details.append(f"{loc}: {err.get('msg', 'invalid')}")
        raise ToolArgumentError(
            f"{spec.name}: " + "; ".join(details), tool=spec.name, fields=tuple(fields)
        ) from None


def describe(spec: ToolSpec) -> ToolInfo:
    """The :class:`ToolInfo` of one spec."""
    return ToolInfo(
        name=spec.name,
        description=spec.description,
        read_only=spec.read_only,
        args_schema=spec.args_model.model_json_schema(),
        result_schema=spec.result_model.model_json_schema(),
    )


class Registry:
    """Tool servers and their tools, by full name."""

    def __init__(self, servers: Iterable[ToolServer] = ()) -> None:
        self._servers: dict[str, ToolServer] = {}
        self._tools: dict[str, BoundTool] = {}
        for server in servers:
            self.register(server)

    def register(self, server: ToolServer) -> None:
        """Add a server and all its tools; a name already taken is a ``ValueError``."""
        if server.name in self._servers:
            raise ValueError(f"tool server {server.name!r} is already registered")
        bound = server.tools()
        for item in bound:
            if item.spec.name in self._tools:
                raise ValueError(f"tool {item.spec.name!r} is already registered")
        seen: set[str] = set()
        for item in bound:
            if item.spec.name in seen:
                raise ValueError(f"tool {item.spec.name!r} is declared twice by {server.name!r}")
            seen.add(item.spec.name)
        self._servers[server.name] = server
        for item in bound:
            self._tools[item.spec.name] = item

    @property
    def servers(self) -> list[ToolServer]:
        """Registered servers, in registration order."""
        return list(self._servers.values())

    def names(self) -> list[str]:
        """Every tool name, sorted."""
        return sorted(self._tools)

    def get(self, name: str) -> BoundTool:
        """The tool called ``name``; :class:`ToolNotFound` lists close matches."""
        try:
            return self._tools[name]
        except KeyError:
            raise not_found(name, self._tools) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def specs(self) -> list[ToolSpec]:
        """Every tool spec, sorted by name."""
        return [self._tools[n].spec for n in self.names()]

    def list_tools(self) -> list[ToolInfo]:
        """Name, description, read-only flag and JSON schemas of every tool."""
        return [describe(spec) for spec in self.specs()]
