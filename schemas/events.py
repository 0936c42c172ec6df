"""Payload models for the event families of the integration guide, and their registry.

Every model is strict (no type coercion) and forbids unknown fields, so a bad event
fails with an error naming the field, e.g. ``data.version: Field required``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import SchemaError, UnknownEventType

Severity = Literal["low", "medium", "high", "critical"]
Environment = str
Strategy = Literal["rolling", "blue_green", "canary"]

_NAME = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"


class Payload(BaseModel):
    """Base class of event payloads: strict, closed, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Deployment(Payload):
    app: str = Field(pattern=_NAME, description="application name (DNS-label-like)")
    version: str = Field(min_length=1, max_length=128)
    environment: Environment = Field(default="production", min_length=1, max_length=63)


class DeploymentRequested(_Deployment):
    """Someone asks for ``app`` at ``version`` to be deployed to ``environment``."""

    strategy: Strategy = "rolling"
    image: str | None = Field(default=None, max_length=500)
    context_path: str | None = Field(default=None, description="build context directory")
    manifest_path: str | None = None
    requested_by: str | None = None


class DeploymentStarted(_Deployment):
    """A deployment began."""

    strategy: Strategy = "rolling"
    image: str | None = None


class DeploymentCompleted(_Deployment):
    """A deployment finished and is healthy."""

    image: str | None = None
    duration_seconds: float | None = Field(default=None, ge=0)
    result: dict[str, Any] = Field(default_factory=dict)


class DeploymentFailed(_Deployment):
    """A deployment failed at ``stage``."""

    stage: str = Field(min_length=1)
    reason: str = Field(min_length=1)


class DeploymentRolledBack(_Deployment):
    """A deployment was undone (saga compensation or an operator's rollback)."""

    reason: str = Field(min_length=1)
    to_version: str | None = None


class ImageBuilt(Payload):
    """A container image was built."""

    app: str = Field(pattern=_NAME)
    version: str = Field(min_length=1, max_length=128)
    image_tag: str = Field(min_length=1, max_length=500)
    image_id: str | None = None


class SecurityScanRequested(Payload):
    """Scan ``image`` for vulnerabilities at or above ``severity``."""

    image: str = Field(min_length=1, max_length=500)
    severity: Severity = "high"
    app: str | None = None
    version: str | None = None


class SecurityScanCompleted(Payload):
    """An image scan finished."""

    image: str = Field(min_length=1, max_length=500)
    severity: Severity = "high"
    total_vulnerabilities: int = Field(ge=0)
    passed: bool
    app: str | None = None
    version: str | None = None
    vulnerability_ids: list[str] = Field(default_factory=list)


class SecurityIssueFound(Payload):
    """A security problem that people must look at."""

    issue: str = Field(min_length=1)
    severity: Severity = "high"
    app: str | None = None
    version: str | None = None
    image: str | None = None
    vulnerability_ids: list[str] = Field(default_factory=list)


class NotificationRequested(Payload):
    """Tell people something, e.g. on Slack."""

    channel: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=300)
    text: str = Field(default="", max_length=4000)
    notification_type: Literal["info", "success", "warning", "error", "security_alert"] = "info"
    details: dict[str, Any] = Field(default_factory=dict)
    color: Literal["good", "warning", "danger"] | None = None


#: Event type -> payload model. The routing key of an event is its type.
EVENT_TYPES: dict[str, type[Payload]] = {
    "deployment.requested": DeploymentRequested,
    "deployment.started": DeploymentStarted,
    "deployment.completed": DeploymentCompleted,
    "deployment.failed": DeploymentFailed,
    "deployment.rolled_back": DeploymentRolledBack,
    "image.built": ImageBuilt,
    "security.scan_requested": SecurityScanRequested,
    "security.scan_completed": SecurityScanCompleted,
    "security.issue_found": SecurityIssueFound,
    "notification.requested": NotificationRequested,
}


def payload_model(type: str) -> type[Payload]:
    """The payload model for ``type``; :class:`UnknownEventType` lists the known ones."""
    try:
        return EVENT_TYPES[type]
    except KeyError:
        known = ", ".join(sorted(EVENT_TYPES))
        raise UnknownEventType(
            f"unknown event type {type!r}; known types: {known}", fields=("type",), what="event"
        ) from None


def validate_payload(type: str, data: dict[str, Any]) -> Payload:
    """Validate ``data`` against the model of ``type``; errors name ``data.<field>``."""
    model = payload_model(type)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SchemaError.from_validation(f"{type} payload", exc, prefix="data.") from exc
