"""``Toolbox.call_tool(name, args)``: the one entry point to every tool.

A call is validated against the tool's argument model before any I/O, then runs
through the guard chain (see :mod:`tools.guards`) and returns the tool's typed result::

    toolbox = Toolbox([DockerServer(), KubernetesServer()], redis=redis, config=config,
                      names=names, audit_sinks=[RedisStreamSink(redis, names)])
    async with toolbox:
        result = await toolbox.as_role("deployer").call_tool(
            "kubernetes.kubectl_apply", {"manifest_path": "./k8s/"})
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from schemas.names import DEFAULT_NAMES, Names
from tools.config import ToolboxConfig, ToolPolicy
from tools.errors import (
    ToolArgumentError,
    ToolFailed,
    ToolNotFound,
    ToolPermissionDenied,
    ToolTransientError,
)
from tools.guards import Guard, Next, ToolCall
from tools.guards.audit import AuditGuard, Auditor, AuditSink
from tools.guards.audit_context import OriginSource
from tools.guards.breaker import BreakerGuard, BreakerStore
from tools.guards.cache import CacheGuard, ResultCache
from tools.guards.metrics import MetricsGuard, ToolMetrics, default_metrics
from tools.guards.permission import PermissionGuard, Permissions
from tools.guards.retry import RetryGuard
from tools.guards.timeout import TimeoutGuard
from tools.guards.tracing import TracingGuard
from tools.redaction import redact_exception
from tools.registry import Registry, ToolInfo, validate_args
from tools.spec import BoundTool, ToolServer, ToolSpec

Args = Mapping[str, Any] | BaseModel


class ToolCaller(Protocol):
    """What flows and handlers depend on; :class:`Toolbox` and the fakes implement it."""

    async def call_tool(self, name: str, args: Args, *, role: str | None = None) -> BaseModel:
        """Call one tool and return its typed result."""
        ...

    def as_role(self, role: str) -> ToolCaller:
        """A view that calls every tool as ``role``."""
        ...


class Toolbox:
    """Registered tool servers behind the guard chain.

    ``redis`` (an asyncio ``redis.Redis``) holds the cache and breaker state; it may be
    None only when the config switches both off. ``principal`` names this process in
    audit records (for example the worker unit). ``metrics`` receives the call, cache and
    breaker series (default: the process's :func:`~tools.guards.metrics.default_metrics`).
    ``audit_origin`` tells which event is being handled, for the audit record's
    ``event_id`` / ``correlationid`` / ``causationid`` (see
    :mod:`tools.guards.audit_context`; a ``call_origin`` block takes precedence).
    """

    def __init__(
        self,
        servers: Iterable[ToolServer] | Registry,
        *,
        redis: Any = None,
        config: ToolboxConfig | None = None,
        names: Names = DEFAULT_NAMES,
        audit_sinks: Sequence[AuditSink] = (),
        principal: str = "codebus",
        rng: random.Random | None = None,
        metrics: ToolMetrics | None = None,
        audit_origin: OriginSource | None = None,
    ) -> None:
        self.registry = servers if isinstance(servers, Registry) else Registry(servers)
        self.config = config or ToolboxConfig()
        if redis is None and self.config.requires_redis():
            raise ValueError(
                "Toolbox needs a Redis client for the cache and circuit breaker; "
                "pass redis= or switch both off in ToolboxConfig"
            )
        self.names = names
        self.principal = principal
        self.auditor = Auditor(
            audit_sinks,
            result_max_chars=self.config.audit_result_max_chars,
            origin=audit_origin,
        )
        self.permissions = Permissions(self.config.roles, self.config.default_role)
        self.cache = ResultCache(redis, names) if redis is not None else None
        self.breakers = BreakerStore(redis, names) if redis is not None else None
        self.metrics = metrics if metrics is not None else default_metrics()
        guards: list[Guard] = [MetricsGuard(self.metrics), TracingGuard(self.metrics)]
        guards.append(PermissionGuard(self.permissions, self.auditor))
        guards.append(AuditGuard(self.auditor))
        if self.cache is not None:
            guards.append(CacheGuard(self.cache, self.metrics))
        if self.breakers is not None:
            guards.append(BreakerGuard(self.breakers, self.metrics))
        guards += [RetryGuard(rng=rng), TimeoutGuard()]
        self._guards = guards
        self._policies: dict[str, ToolPolicy] = {}
        self._started: list[ToolServer] = []
        self._running = False
        self._lifecycle = asyncio.Lock()

    # --- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Start every server once (later calls do nothing); a failure stops those started."""
        async with self._lifecycle:
            if self._running:
                return
            try:
                for server in self.registry.servers:
                    await server.start()
                    self._started.append(server)
            except BaseException:
                await self._close_servers()
                raise
            self._running = True

    async def close(self) -> None:
        """Close the started servers (in reverse order) and flush the audit sinks."""
        async with self._lifecycle:
            await self._close_servers()
            self._running = False
            await self.auditor.close()

    async def _close_servers(self) -> None:
        while self._started:
            await self._started.pop().close()

    async def __aenter__(self) -> Toolbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- tools -------------------------------------------------------------------
    def list_tools(self) -> list[ToolInfo]:
        """Name, description, read-only flag and JSON schemas of every tool."""
        return self.registry.list_tools()

    def spec(self, name: str) -> ToolSpec:
        """The spec of one tool (:class:`ToolNotFound` with close matches if unknown)."""
        return self.registry.get(name).spec

    def policy(self, name: str) -> ToolPolicy:
        """The merged guard policy of one tool."""
        if name not in self._policies:
            self._policies[name] = self.config.policy_for(name)
        return self._policies[name]

    async def call_tool(
        self, name: str, args: Args, *, role: str | None = None, principal: str | None = None
    ) -> BaseModel:
        """Validate ``args``, run the guard chain and return the tool's result model.

        ``principal`` names who asked (a user behind the gateway, say) in the audit
        record; it defaults to the toolbox's own principal.

        Raises ``ToolNotFound``, ``ToolArgumentError`` (before any I/O),
        ``ToolPermissionDenied``, ``CircuitOpen``, ``ToolTimeout``,
        ``ToolTransientError`` (after the last retry) or ``ToolFailed``.
        """
        try:
            return await self._call(name, args, role, principal)
        except Exception as exc:
            # Whoever catches, logs or publishes this error sees it without secrets.
            redact_exception(exc)
            raise

    async def _call(
        self, name: str, args: Args, role: str | None, principal: str | None
    ) -> BaseModel:
        bound = self.registry.get(name)
        validated = validate_args(bound.spec, args)
        call = ToolCall(
            spec=bound.spec,
            args=validated,
            policy=self.policy(name),
            role=self.permissions.effective_role(role),
            principal=principal or self.principal,
        )
        if not self._running:
            await self.start()
        handler: Next = functools.partial(self._invoke, bound)
        for guard in reversed(self._guards):
            if guard.enabled(call):
                handler = functools.partial(guard.__call__, call_next=handler)
        return await handler(call)

    async def _invoke(self, bound: BoundTool, call: ToolCall) -> BaseModel:
        try:
            result = await bound.call(call.args)
        except (ConnectionError, TimeoutError) as exc:
            # Adapters should map their client errors themselves; these two escape often
            # enough (socket refused, a client-side read timeout) to be worth a safety net
            # so that retry and the breaker see them for what they are.
            raise ToolTransientError(f"{call.name}: {exc!r}", tool=call.name) from exc
        model = bound.spec.result_model
        if isinstance(result, model):
            return result
        # An adapter returning a dict or a look-alike model is coerced, so the cache and
        # the callers always see the declared type.
        data = result.model_dump() if isinstance(result, BaseModel) else result
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ToolFailed(
                f"{call.name}: adapter returned an invalid {model.__name__}: {exc}",
                tool=call.name,
            ) from exc

    async def audit_denial(
        self,
        name: str,
        args: Args,
        role: str | None,
        error: ToolPermissionDenied,
        principal: str | None = None,
    ) -> None:
        """Audit a call rejected outside the chain (a role view asked to escalate).

        Unknown tools and invalid arguments are not audited: nothing could have run.
        """
        try:
            bound = self.registry.get(name)
            validated = validate_args(bound.spec, args)
        except (ToolNotFound, ToolArgumentError):
            return
        call = ToolCall(bound.spec, validated, self.policy(name), role, principal or self.principal)
        await self.auditor.denied(call, error)

    def as_role(self, role: str, *, principal: str | None = None) -> RoleToolbox:
        """A least-privilege view: every call runs as ``role`` (and ``principal``)."""
        if role not in self.permissions.roles:
            raise ToolPermissionDenied(f"unknown role {role!r}")
        return RoleToolbox(self, role, principal=principal)

    # --- cache -------------------------------------------------------------------
    async def invalidate(self, name: str) -> int:
        """Delete every cached result of tool ``name``; returns how many."""
        self.registry.get(name)
        return await self.cache.invalidate(name) if self.cache is not None else 0

    async def invalidate_all(self) -> int:
        """Delete every cached result of every tool."""
        return await self.cache.invalidate_all() if self.cache is not None else 0


class RoleToolbox:
    """A :class:`Toolbox` restricted to one role (the guide's restricted manager)."""

    def __init__(self, toolbox: Toolbox, role: str, *, principal: str | None = None) -> None:
        self.toolbox = toolbox
        self.role = role
        self.principal = principal

    async def call_tool(self, name: str, args: Args, *, role: str | None = None) -> BaseModel:
        """Call a tool as this view's role; asking for another role is denied."""
        if role is not None and role != self.role:
            denial = ToolPermissionDenied(
                f"a {self.role!r} view cannot call {name} as {role!r}", tool=name
            )
            await self.toolbox.audit_denial(name, args, self.role, denial, self.principal)
            raise denial
        return await self.toolbox.call_tool(name, args, role=self.role, principal=self.principal)

    def as_role(self, role: str) -> RoleToolbox:
        """The same view; a restricted view cannot switch to another role."""
        if role != self.role:
            raise ToolPermissionDenied(f"a {self.role!r} view cannot become {role!r}")
        return self

    def list_tools(self) -> list[ToolInfo]:
        """The tools this role may call."""
        return [
            info
            for info in self.toolbox.list_tools()
            if not self.toolbox.policy(info.name).permission
            or self.toolbox.permissions.permits(self.role, info.name)
        ]
