"""Payload models for the event families of the integration guide, and their registry.

Every model is strict (no type coercion) and forbids unknown fields, so a bad event
fails with an error naming the field, e.g. ``data.version: Field required``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from schemas.catalog import EventCatalog, RawPayload, unknown_policy
from schemas.errors import SchemaError, UnknownEventType
from schemas.flows import FlowOverrides
from schemas.payload import Payload

Severity = Literal["low", "medium", "high", "critical"]
Environment = str
Strategy = Literal["rolling", "blue_green", "canary"]

_NAME = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"


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
    overrides: FlowOverrides | None = Field(
        default=None, description="per-request changes to the configured strategy spec"
    )


class DeploymentStarted(_Deployment):
    """A deployment began."""

    strategy: Strategy = "rolling"
    image: str | None = None
    flow_id: str | None = None


class DeploymentCompleted(_Deployment):
    """A deployment finished and is healthy."""

    image: str | None = None
    duration_seconds: float | None = Field(default=None, ge=0)
    result: dict[str, Any] = Field(default_factory=dict)
    flow_id: str | None = None


class DeploymentFailed(_Deployment):
    """A deployment failed at ``stage``."""

    stage: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    flow_id: str | None = None


class DeploymentRolledBack(_Deployment):
    """A deployment was undone (saga compensation or an operator's rollback)."""

    reason: str = Field(min_length=1)
    to_version: str | None = None
    flow_id: str | None = None
    evidence: str | None = None


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
    flow_id: str | None = Field(default=None, description="the deployment flow waiting for it")


class SecurityScanCompleted(Payload):
    """An image scan finished."""

    image: str = Field(min_length=1, max_length=500)
    severity: Severity = "high"
    total_vulnerabilities: int = Field(ge=0)
    passed: bool
    app: str | None = None
    version: str | None = None
    vulnerability_ids: list[str] = Field(default_factory=list)
    flow_id: str | None = None


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


# ---- progressive delivery: flow state changes, measurements, commands ----------------


class _Flow(_Deployment):
    flow_id: str = Field(min_length=1, max_length=100)


class DeploymentStepStarted(_Flow):
    """A flow entered a step of its plan."""

    step: int = Field(ge=0)
    kind: str
    description: str = ""


class DeploymentStepCompleted(DeploymentStepStarted):
    """A flow finished a step of its plan."""


class DeploymentWeightSet(_Flow):
    """A canary reached a weight: desired % and actual share of ready pods."""

    desired_weight: int = Field(ge=0, le=100)
    actual_weight: float = Field(ge=0, le=100)
    canary_replicas: int = Field(ge=0)
    stable_replicas: int = Field(ge=0)


class DeploymentPaused(_Flow):
    """A flow waits: for a duration (``until``) or for a person (``until`` null)."""

    reason: str
    until: float | None = None


class DeploymentApprovalRequested(_Flow):
    """A flow waits for deployment.approval_granted / approval_denied."""

    reason: str
    timeout_at: float | None = None
    timeout_action: str | None = None


class DeploymentPromoted(_Flow):
    """Traffic moved to the new version (blue-green switch, canary promotion)."""

    by: str | None = None
    full: bool = False


class DeploymentAborted(_Flow):
    """A flow was stopped by a person or an approval timeout; the old version serves."""

    reason: str = Field(min_length=1)
    by: str | None = None
    evidence: str | None = None


class DeploymentStalled(_Flow):
    """A flow has stayed in one phase past its deadline (it still holds its state)."""

    phase: str
    since: float
    seconds: float = Field(ge=0)


class DeploymentCommandRejected(_Flow):
    """A command arrived in a phase where it means nothing; it changed nothing."""

    command: str
    phase: str
    reason: str
    by: str | None = None


class DeploymentAnalysisMeasured(_Flow):
    """One analysis measurement (metric, value, phase, the rendered query)."""

    metric: str
    phase: str
    value: Any = None
    message: str = ""
    query: str = ""


class DeploymentAnalysisCompleted(_Flow):
    """An analysis step ended; ``message`` is the deciding evidence in one line."""

    phase: str
    message: str = ""
    metrics: list[dict[str, Any]] = Field(default_factory=list)


class _Command(Payload):
    flow_id: str = Field(min_length=1, max_length=100)
    by: str = Field(min_length=1, max_length=200, description="who asks")
    reason: str = Field(default="", max_length=2000)


class DeploymentPromoteRequested(_Command):
    """Promote: leave a pause (``full``: skip every remaining step)."""

    full: bool = False


class DeploymentAbortRequested(_Command):
    """Abort: the old version keeps (or goes back to) serving."""


class DeploymentRetryRequested(_Command):
    """Run an aborted, rolled-back or failed flow again from its first step."""


class DeploymentApprovalGranted(_Command):
    """Approve a flow waiting for approval."""


class DeploymentApprovalDenied(_Command):
    """Deny a flow waiting for approval: it aborts."""


class FlowTimerFired(Payload):
    """Internal wake-up of a flow's timer (sent through the delay tiers)."""

    flow_id: str = Field(min_length=1, max_length=100)
    timer: str = Field(min_length=1, max_length=50)
    token: int


class FlowsSweep(Payload):
    """Internal: time to re-send overdue wake-ups and report stalled flows."""

    slot: int = Field(ge=0)


FLOW_EVENT_TYPES: dict[str, type[Payload]] = {
    "deployment.step_started": DeploymentStepStarted,
    "deployment.step_completed": DeploymentStepCompleted,
    "deployment.weight_set": DeploymentWeightSet,
    "deployment.paused": DeploymentPaused,
    "deployment.approval_requested": DeploymentApprovalRequested,
    "deployment.promoted": DeploymentPromoted,
    "deployment.aborted": DeploymentAborted,
    "deployment.stalled": DeploymentStalled,
    "deployment.command_rejected": DeploymentCommandRejected,
    "deployment.analysis_measured": DeploymentAnalysisMeasured,
    "deployment.analysis_completed": DeploymentAnalysisCompleted,
    "deployment.promote_requested": DeploymentPromoteRequested,
    "deployment.abort_requested": DeploymentAbortRequested,
    "deployment.retry_requested": DeploymentRetryRequested,
    "deployment.approval_granted": DeploymentApprovalGranted,
    "deployment.approval_denied": DeploymentApprovalDenied,
    "deployment.flow_timer": FlowTimerFired,
    "deployment.flows_sweep": FlowsSweep,
}

#: The core event families (declared as the ``codebus.events`` entry point ``core``).
CORE_EVENT_TYPES: dict[str, type[Payload]] = {
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

#: Event type -> payload model: every ``codebus.events`` entry point of the installed
#: packages, codebus's own included (see :mod:`schemas.catalog`). The routing key of an
#: event is its type.
EVENT_TYPES: EventCatalog = EventCatalog()


def payload_model(type: str) -> type[BaseModel]:
    """The payload model for ``type``; :class:`UnknownEventType` lists the known ones."""
    try:
        return EVENT_TYPES[type]
    except KeyError:
        known = ", ".join(sorted(EVENT_TYPES))
        raise UnknownEventType(
            f"unknown event type {type!r} (no installed package declares it;"
            f" CODEBUS_UNKNOWN_EVENTS=pass lets it through); known types: {known}",
            fields=("type",),
            what="event",
        ) from None


def validate_payload(type: str, data: dict[str, Any]) -> BaseModel:
    """Validate ``data`` against the model of ``type``; errors name ``data.<field>``.

    A type nobody declared is an :class:`UnknownEventType` naming it, or, with
    ``CODEBUS_UNKNOWN_EVENTS=pass``, the data as a :class:`RawPayload`, unvalidated."""
    if type not in EVENT_TYPES and unknown_policy() == "pass":
        if not isinstance(data, dict):
            raise SchemaError(f"invalid {type} payload: data: must be an object", fields=("data",))
        return RawPayload.model_validate(data)
    model = payload_model(type)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SchemaError.from_validation(f"{type} payload", exc, prefix="data.") from exc


# Pipeline and saga events register themselves in EVENT_TYPES (schemas/workflows.py);
# imported last, once Payload and EVENT_TYPES exist, so either module may be imported first.
import schemas.workflows  # noqa: E402, F401
