"""Least privilege: a role may call only the tools its patterns allow.

Patterns are full tool names or :mod:`fnmatch` wildcards (``docker.*``, ``*.kubectl_get``,
``*``). A call without a role uses the configured default role; when there is none the
caller is trusted (internal code that did not ask for a restricted view). Denials are
audited even when the tool's own audit is switched off: they are what an auditor looks for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from pydantic import BaseModel

from tools.errors import ToolPermissionDenied
from tools.guards import Next, ToolCall
from tools.guards.audit import Auditor


def allowed(patterns: Iterable[str], tool: str) -> bool:
    """Whether any pattern matches the full tool name (case-sensitive)."""
    return any(fnmatchcase(tool, p) for p in patterns)


class Permissions:
    """Role -> allowed tool patterns."""

    def __init__(self, roles: Mapping[str, Iterable[str]], default_role: str | None = None):
        self.roles = {role: tuple(patterns) for role, patterns in roles.items()}
        self.default_role = default_role

    def effective_role(self, role: str | None) -> str | None:
        """The role a call runs under: its own, else the default one."""
        return role if role is not None else self.default_role

    def check(self, role: str | None, tool: str) -> None:
        """Raise :class:`ToolPermissionDenied` unless ``role`` may call ``tool``."""
        role = self.effective_role(role)
        if role is None:
            return
        if role not in self.roles:
            raise ToolPermissionDenied(f"unknown role {role!r} may not call {tool}", tool=tool)
        if not allowed(self.roles[role], tool):
            raise ToolPermissionDenied(f"role {role!r} may not call {tool}", tool=tool)

    def permits(self, role: str | None, tool: str) -> bool:
        """Boolean form of :meth:`check`."""
        try:
            self.check(role, tool)
        except ToolPermissionDenied:
            return False
        return True


class PermissionGuard:
    """Outermost guard: rejects calls the role may not make, and audits the rejection."""

    def __init__(self, permissions: Permissions, auditor: Auditor | None = None) -> None:
        self.permissions = permissions
        self.auditor = auditor

    def enabled(self, call: ToolCall) -> bool:
        """Switched off per tool with ``permission: false``."""
        return call.policy.permission

    async def __call__(self, call: ToolCall, call_next: Next) -> BaseModel:
        """Check the role, then continue down the chain."""
        try:
            self.permissions.check(call.role, call.name)
        except ToolPermissionDenied as exc:
            if self.auditor is not None:
                await self.auditor.denied(call, exc)
            raise
        return await call_next(call)
