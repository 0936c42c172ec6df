"""How a tool server declares its tools.

An adapter is a :class:`ToolServer` subclass with a ``name`` (``"docker"``) and async
methods decorated with :func:`tool`. Each method takes one pydantic argument model and
returns one pydantic result model; both are read from its annotations::

    class DockerServer(ToolServer):
        name = "docker"

        @tool(read_only=True)
        async def docker_ps(self, args: DockerPsArgs) -> DockerPsResult:
            ...

The registry (``tools.registry``) turns these into ``docker.docker_ps`` and so on.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

_MARK = "__codebus_tool__"


@dataclass(frozen=True)
class ToolSpec:
    """Static description of one tool."""

    server: str
    tool: str
    description: str
    args_model: type[BaseModel]
    result_model: type[BaseModel]
    read_only: bool = False

    @property
    def name(self) -> str:
        """The full ``server.tool`` name, as in the integration guide."""
        return f"{self.server}.{self.tool}"


@dataclass(frozen=True)
class BoundTool:
    """A tool spec with the adapter method that implements it."""

    spec: ToolSpec
    call: Callable[[BaseModel], Awaitable[BaseModel]]


@dataclass(frozen=True)
class _Mark:
    name: str | None
    read_only: bool
    description: str | None


def tool(
    name: str | None = None, *, read_only: bool = False, description: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark an adapter method as a tool. ``read_only`` tools may be cached."""

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"tool {func.__qualname__} must be an async method")
        setattr(func, _MARK, _Mark(name, read_only, description))
        return func

    return mark


class ToolServer:
    """Base class of adapters: one per tool server (docker, kubernetes, ...)."""

    name: ClassVar[str] = ""

    async def start(self) -> None:
        """Open clients; called once before the first call. Default: nothing."""

    async def close(self) -> None:
        """Release clients. Default: nothing."""

    def tools(self) -> list[BoundTool]:
        """Every method marked with :func:`tool`, bound to this instance."""
        if not self.name:
            raise TypeError(f"{type(self).__name__} must set a server name")
        found: list[BoundTool] = []
        for attr in dir(type(self)):
            func = getattr(type(self), attr, None)
            mark = getattr(func, _MARK, None)
            if mark is None or func is None:
                continue
            hints = typing.get_type_hints(func)
            params = [p for p in inspect.signature(func).parameters if p != "self"]
            if len(params) != 1 or params[0] not in hints or "return" not in hints:
                raise TypeError(f"tool {func.__qualname__} must be (self, args: Model) -> Model")
            doc = inspect.getdoc(func) or ""
            spec = ToolSpec(
                server=self.name,
                tool=mark.name or func.__name__,
                description=mark.description or doc.split("\n\n")[0],
                args_model=hints[params[0]],
                result_model=hints["return"],
                read_only=mark.read_only,
            )
            found.append(BoundTool(spec, getattr(self, attr)))
        return found
