"""``FakeToolbox``: a stand-in for :class:`~tools.toolbox.Toolbox` in users' own tests.

It has the same ``call_tool`` / ``as_role`` interface. Given the real specs (or servers),
it validates arguments and responses with the real models, so a test cannot drift from
the contract::

    fake = FakeToolbox(DockerServer().tools() + SecurityScannerServer().tools())
    fake.set_response("security-scanner.docker_security_scan", {"total_vulnerabilities": 2})
    fake.fail("docker.docker_build", times=1)          # first build: ToolTransientError
    await run_deployment(fake, "myapp", "1.0.0")
    fake.assert_called_with("docker.docker_build", image_tag="myapp:1.0.0")
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.errors import field_errors
from tools.errors import ToolError, ToolPermissionDenied, ToolTransientError
from tools.guards.permission import Permissions
from tools.registry import not_found, validate_args
from tools.spec import BoundTool, ToolServer, ToolSpec
from tools.toolbox import Args

Response = BaseModel | Mapping[str, Any] | Callable[[Any], Any]
"""A canned result, a dict validated into the result model, or ``callable(args)``."""


class NoFakeResponse(ToolError, LookupError):
    """The fake has no response for a tool and cannot build a default one."""


@dataclass
class FakeCall:
    """One recorded call: arguments as a dict, the role, and the outcome."""

    tool: str
    args: dict[str, Any]
    role: str | None
    result: BaseModel | Any = None
    error: BaseException | None = None


class FakeToolbox:
    """An in-memory toolbox with canned responses, call history and fault injection.

    ``specs`` are :class:`ToolSpec`, :class:`BoundTool` or :class:`ToolServer` items.
    With specs, unknown tool names raise ``ToolNotFound`` and arguments and responses are
    validated by the real models; without any, every name is accepted as is. ``roles``
    (role -> tool patterns) makes role views enforce permissions like the real one.
    """

    def __init__(
        self,
        specs: Iterable[ToolSpec | BoundTool | ToolServer] = (),
        *,
        responses: Mapping[str, Response] | None = None,
        roles: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.specs: dict[str, ToolSpec] = {}
        for item in specs:
            for spec in _specs_of(item):
                self.specs[spec.name] = spec
        self.responses: dict[str, Response] = {}
        self.permissions = Permissions(roles) if roles is not None else None
        self.calls: list[FakeCall] = []
        self._failures: dict[str, list[BaseException]] = {}
        self._delays: dict[str, float] = {}
        for tool, response in (responses or {}).items():
            self.set_response(tool, response)

    # --- configuring -------------------------------------------------------------
    def set_response(self, tool: str, response: Response) -> None:
        """Answer ``tool`` with ``response`` from now on (checked now if it is data)."""
        self._spec(tool)
        if not callable(response) or isinstance(response, BaseModel):
            self._coerce(tool, response)  # fail at set-up time, not inside the code under test
        self.responses[tool] = response

    def fail(self, tool: str, times: int = 1, error: BaseException | None = None) -> None:
        """Make the next ``times`` calls of ``tool`` raise ``error`` (a transient error by
        default), before any response is produced."""
        self._spec(tool)
        exc = error or ToolTransientError(f"injected failure of {tool}", tool=tool)
        self._failures.setdefault(tool, []).extend([exc] * times)

    def delay(self, tool: str, seconds: float) -> None:
        """Make every call of ``tool`` take ``seconds`` longer."""
        self._spec(tool)
        self._delays[tool] = seconds

    def reset(self) -> None:
        """Forget calls, responses, failures and delays."""
        self.calls.clear()
        self.responses.clear()
        self._failures.clear()
        self._delays.clear()

    # --- the ToolCaller interface --------------------------------------------------
    async def call_tool(self, name: str, args: Args, *, role: str | None = None) -> BaseModel:
        """Record the call, then apply delay, injected failure and the response."""
        spec = self._spec(name)
        if spec is not None:
            validated: Any = validate_args(spec, args)
            args_dict = validated.model_dump()
        else:
            args_dict = args.model_dump() if isinstance(args, BaseModel) else dict(args)
            validated = args_dict
        record = FakeCall(name, args_dict, role)
        self.calls.append(record)
        try:
            if self.permissions is not None:
                self.permissions.check(role, name)
            if name in self._delays:
                await asyncio.sleep(self._delays[name])
            pending = self._failures.get(name)
            if pending:
                raise pending.pop(0)
            record.result = await self._respond(name, validated)
        except BaseException as exc:
            record.error = exc
            raise
        return record.result

    def as_role(self, role: str) -> FakeRoleView:
        """A view that calls as ``role``, sharing this fake's history and setup."""
        if self.permissions is not None and role not in self.permissions.roles:
            raise ToolPermissionDenied(f"unknown role {role!r}")
        return FakeRoleView(self, role)

    # --- assertions ----------------------------------------------------------------
    def calls_of(self, tool: str) -> list[FakeCall]:
        """Recorded calls of one tool, oldest first."""
        return [c for c in self.calls if c.tool == tool]

    def call_count(self, tool: str) -> int:
        """How many times ``tool`` was called (failed calls included)."""
        return len(self.calls_of(tool))

    def assert_called_with(self, tool: str, **partial_args: Any) -> FakeCall:
        """Assert some call of ``tool`` had all of ``partial_args``; returns that call."""
        for call in self.calls_of(tool):
            if all(k in call.args and call.args[k] == v for k, v in partial_args.items()):
                return call
        seen = [c.args for c in self.calls_of(tool)]
        raise AssertionError(f"{tool} was not called with {partial_args}; calls: {seen}")

    def assert_not_called(self, tool: str) -> None:
        """Assert ``tool`` was never called."""
        count = self.call_count(tool)
        if count:
            raise AssertionError(f"{tool} was called {count} time(s)")

    # --- internals -----------------------------------------------------------------
    def _spec(self, tool: str) -> ToolSpec | None:
        if not self.specs:
            return None
        if tool not in self.specs:
            raise not_found(tool, self.specs)
        return self.specs[tool]

    async def _respond(self, tool: str, args: Any) -> Any:
        if tool in self.responses:
            response = self.responses[tool]
            if callable(response) and not isinstance(response, BaseModel):
                response = response(args)
                if inspect.isawaitable(response):
                    response = await response
            return self._coerce(tool, response)
        spec = self._spec(tool)
        if spec is not None:
            try:
                return spec.result_model.model_validate({})
            except ValidationError:
                pass
        raise NoFakeResponse(
            f"FakeToolbox has no response for {tool}; call set_response({tool!r}, ...)",
            tool=tool,
        )

    def _coerce(self, tool: str, response: Any) -> Any:
        spec = self._spec(tool)
        if spec is None:
            return response
        model = spec.result_model
        if isinstance(response, model):
            return response
        data = response.model_dump() if isinstance(response, BaseModel) else response
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise TypeError(
                f"fake response for {tool} is not a valid {model.__name__}: {field_errors(exc)}"
            ) from None


class FakeRoleView:
    """``FakeToolbox.as_role(role)``: every call runs as ``role``."""

    def __init__(self, fake: FakeToolbox, role: str) -> None:
        self.fake = fake
        self.role = role

    async def call_tool(self, name: str, args: Args, *, role: str | None = None) -> BaseModel:
        """Call as this view's role; asking for another role is denied."""
        if role is not None and role != self.role:
            raise ToolPermissionDenied(f"a {self.role!r} view cannot call as {role!r}", tool=name)
        return await self.fake.call_tool(name, args, role=self.role)

    def as_role(self, role: str) -> FakeRoleView:
        """The same view; a restricted view cannot switch to another role."""
        if role != self.role:
            raise ToolPermissionDenied(f"a {self.role!r} view cannot become {role!r}")
        return self


def _specs_of(item: ToolSpec | BoundTool | ToolServer) -> list[ToolSpec]:
    if isinstance(item, ToolSpec):
        return [item]
    if isinstance(item, BoundTool):
        return [item.spec]
    if isinstance(item, ToolServer):
        return [bound.spec for bound in item.tools()]
    raise TypeError(f"expected ToolSpec, BoundTool or ToolServer, not {type(item).__name__}")
