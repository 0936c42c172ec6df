"""Exceptions of the tool layer; each carries the tool name it concerns.

ToolError                     root of everything raised by tools/
├── ToolNotFound              no tool of that name (message lists close matches)
├── ToolArgumentError         arguments failed validation (names tool and field)
├── ToolPermissionDenied      the role may not call the tool
├── CircuitOpen               the tool server's breaker is open; not called
├── ToolTransientError        worth retrying: connection error, timeout, 5xx, 429
│   └── ToolTimeout           the call exceeded its timeout
│       └── RolloutTimeout    a Kubernetes rollout did not finish in time (last status)
└── ToolFailed                the tool ran and failed; retrying will not help (4xx, ...)
RolloutError(Exception)       a rollout action cannot be done (paused, no history)

Handlers depend on these, never on an adapter module: every error an adapter raises for
callers to tell apart is declared here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.tools.kubernetes import KubectlRolloutStatusResult


class ToolError(Exception):
    """Root of the tool exceptions."""

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool


class ToolNotFound(ToolError):
    """No registered tool has this name."""


class ToolArgumentError(ToolError, ValueError):
    """Arguments failed validation; ``fields`` names the failing ones."""

    def __init__(self, message: str, *, tool: str | None = None, fields: tuple[str, ...] = ()):
        super().__init__(message, tool=tool)
        self.fields = fields


class ToolPermissionDenied(ToolError):
    """The caller's role is not allowed to call this tool."""


class CircuitOpen(ToolError):
    """The circuit breaker of the tool's server is open."""

    def __init__(self, message: str, *, tool: str | None = None, retry_after: float = 0.0):
        super().__init__(message, tool=tool)
        self.retry_after = retry_after


class ToolTransientError(ToolError):
    """A failure that may go away: connection refused, timeout, HTTP 5xx or 429."""

    def __init__(self, message: str, *, tool: str | None = None, status: int | None = None):
        super().__init__(message, tool=tool)
        self.status = status


class ToolTimeout(ToolTransientError):
    """The call took longer than its timeout."""


class ToolFailed(ToolError):
    """The tool ran and reported a failure that retrying will not fix."""

    def __init__(self, message: str, *, tool: str | None = None, status: int | None = None):
        super().__init__(message, tool=tool)
        self.status = status


class RolloutTimeout(ToolTimeout):
    """The rollout did not finish in time; ``last_status`` is what was seen last."""

    def __init__(self, message: str, *, tool: str, last_status: KubectlRolloutStatusResult):
        super().__init__(message, tool=tool)
        self.last_status = last_status


class RolloutError(Exception):
    """The rollout action cannot be done (paused, no history, ...); permanent."""
