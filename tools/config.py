"""Configuration of the guard chain: defaults, per-tool overrides and roles.

Every guard can be tuned or switched off per tool. Overrides are keyed by a full tool
name or an :mod:`fnmatch` pattern and hold only the fields they change::

    ToolboxConfig(
        tools={
            "kubernetes.kubectl_rollout_status": {"timeout": 600},
            "docker.*": {"cache": False},
        },
        roles={"deployer": ["kubernetes.*", "slack-notifications.send_notification"]},
    )

Resolution order for one tool: ``defaults``, then every matching wildcard pattern in the
order written, then the exact tool name (most specific wins).

The circuit breaker keeps one state per tool *server*; its thresholds are read from the
policy of the tool being called, so set them with a ``"server.*"`` pattern to keep them
consistent across a server's tools.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_GLOB_CHARS = frozenset("*?[")


class ToolPolicy(BaseModel):
    """The guard settings that apply to one tool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Each guard has an on/off switch named after it, then its settings.
    permission: bool = True  # check the caller's role against ``roles``
    audit: bool = True  # write an audit record for every call

    cache: bool = True  # cache results; applies to read-only tools only
    cache_ttl: float = Field(default=60.0, gt=0)  # seconds

    breaker: bool = True
    breaker_failures: int = Field(default=5, ge=1)  # consecutive transient failures to open
    # Failures further apart than this (seconds) restart the count; None = never.
    breaker_window: float | None = Field(default=None, gt=0)
    breaker_reset_timeout: float = Field(default=30.0, gt=0)  # seconds open before a probe
    # Max seconds one half-open probe holds its lease; derived from timeout/retry if unset.
    breaker_probe_lease: float | None = Field(default=None, gt=0)

    retry: bool = True
    retry_attempts: int = Field(default=3, ge=1)  # in total, the first attempt included
    retry_base_delay: float = Field(default=0.2, ge=0)  # seconds
    retry_max_delay: float = Field(default=10.0, ge=0)  # cap of one backoff sleep

    timeout: float | None = Field(default=30.0, gt=0)  # seconds per attempt; None = no limit

    def probe_lease_seconds(self) -> float:
        """How long a half-open probe may run before another worker may probe.

        Derived from the worst case of the retry loop under the breaker when not set, so a
        slow but live probe does not let a second probe in.
        """
        if self.breaker_probe_lease is not None:
            return self.breaker_probe_lease
        attempts = self.retry_attempts if self.retry else 1
        per_attempt = self.timeout if self.timeout is not None else 300.0
        return attempts * per_attempt + (attempts - 1) * self.retry_max_delay + 1.0


class ToolPolicyOverride(BaseModel):
    """The fields of :class:`ToolPolicy` that one override changes (typos are errors)."""

    model_config = ConfigDict(extra="forbid")

    permission: bool | None = None
    audit: bool | None = None
    cache: bool | None = None
    cache_ttl: float | None = None
    breaker: bool | None = None
    breaker_failures: int | None = None
    breaker_window: float | None = None
    breaker_reset_timeout: float | None = None
    breaker_probe_lease: float | None = None
    retry: bool | None = None
    retry_attempts: int | None = None
    retry_base_delay: float | None = None
    retry_max_delay: float | None = None
    timeout: float | None = None


class ToolboxConfig(BaseModel):
    """Guard defaults, per-tool overrides, role permissions and audit limits."""

    model_config = ConfigDict(extra="forbid")

    defaults: ToolPolicy = Field(default_factory=lambda: ToolPolicy())
    tools: dict[str, ToolPolicyOverride] = Field(
        default_factory=dict, description="tool name or fnmatch pattern -> changed fields"
    )
    roles: dict[str, list[str]] = Field(
        default_factory=dict, description="role -> allowed tool names or fnmatch patterns"
    )
    # Role of calls that name none; None means such calls are trusted (internal code).
    default_role: str | None = None
    # Results longer than this (as JSON) are audited as a summary of their fields.
    audit_result_max_chars: int = Field(default=4000, ge=0)

    @model_validator(mode="after")
    def _check_overrides(self) -> ToolboxConfig:
        # Validate every override merged onto the defaults now, so a bad value fails at
        # startup with the pattern in the message instead of on the first call.
        for pattern in self.tools:
            try:
                self._merge(self.tools[pattern])
            except ValueError as exc:
                raise ValueError(f"tools[{pattern!r}]: {exc}") from exc
        if self.default_role is not None and self.default_role not in self.roles:
            raise ValueError(f"default_role {self.default_role!r} is not one of roles")
        return self

    def _merge(self, *overrides: ToolPolicyOverride) -> ToolPolicy:
        data: dict[str, Any] = self.defaults.model_dump()
        for override in overrides:
            data.update(override.model_dump(exclude_unset=True))
        return ToolPolicy.model_validate(data)

    def policy_for(self, tool: str) -> ToolPolicy:
        """The merged policy of ``tool`` (a full ``server.tool`` name)."""
        wildcard = [
            o for p, o in self.tools.items() if _GLOB_CHARS.intersection(p) and fnmatchcase(tool, p)
        ]
        exact = [self.tools[tool]] if tool in self.tools else []
        return self._merge(*wildcard, *exact)

    def requires_redis(self) -> bool:
        """Whether any tool may use the cache or the breaker (both keep state in Redis)."""
        if self.defaults.cache or self.defaults.breaker:
            return True
        return any(o.cache or o.breaker for o in self.tools.values())
