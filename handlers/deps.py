"""Typed dependencies of codebus's own units, so that no handler reads the string-keyed
``ctx.deps`` dict (which stays, for compatibility, as what a worker is built with).

Each unit's handlers ask for one frozen dataclass: :func:`unit_deps_of` returns the
object the unit's dependency factory made when it is of that type (``ctx.unit_deps``),
else builds one from the worker's ``deps`` entries named like its fields (the embedded
system, the demo and tests give those). Toolbox, Redis and names come from the typed
context itself (``ctx.toolbox``, ``ctx.redis``, ``ctx.names``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from bus.context import HandlerContext

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from flows.repository import FlowRepository
    from flows.repository_outbox import RecordOutbox
    from schemas.flows import FlowsConfig
    from schemas.gateway_config import GatewayConfig
    from schemas.workflows import WorkflowSpec
    from tools.webhooks.delivery import WebhookSender
    from tools.webhooks.log import DeliveryLog

D = TypeVar("D")

#: What the runtime gives every unit besides toolbox, Redis and names (workers.app).
METRICS_REGISTRY = "metrics_registry"


def unit_deps_of(ctx: HandlerContext, kind: type[D]) -> D:
    """The unit's ``kind`` object: the one its factory made, or one built from the
    worker's ``deps`` entries named like the fields of ``kind`` (a dataclass)."""
    made = ctx.deps.get("unit_deps")
    if isinstance(made, kind):
        return made
    names = [f.name for f in dataclasses.fields(kind)]  # type: ignore[arg-type]
    return kind(**{n: ctx.deps[n] for n in names if n in ctx.deps})


def metrics_registry(ctx: HandlerContext) -> CollectorRegistry:
    """The registry the worker serves on ``/metrics`` (for handlers' own series)."""
    from prometheus_client import CollectorRegistry

    registry = ctx.deps.get(METRICS_REGISTRY)
    if not isinstance(registry, CollectorRegistry):
        raise LookupError(f"subscription {ctx.subscription}: the worker has no metrics registry")
    return registry


def seconds(value: float | None, default: float) -> float:
    """A timing dependency, or the handler module's default when it is not given."""
    return default if value is None else float(value)


@dataclass(frozen=True)
class FlowDeps:
    """The ``deploy`` and ``workflows`` units: flows configuration and records, the
    deploy pipeline, and sweep timings (None: the handler module's default)."""

    flows_config: FlowsConfig | None = None
    flows_bucket: str | None = None
    flow_repository: FlowRepository | None = None
    deploy_pipeline: WorkflowSpec | None = None
    flows_sweep_interval: float | None = None
    flows_sweep_grace: float | None = None
    workflows_sweep_interval: float | None = None
    workflows_sweep_grace: float | None = None

    @classmethod
    def of(cls, ctx: HandlerContext) -> FlowDeps:
        """This delivery's unit's flow dependencies."""
        return unit_deps_of(ctx, cls)


def _records(ctx: HandlerContext) -> dict[str, Any]:
    """The flows layer's view of where records go (flows.repository_s3.repository_from)."""
    deps = FlowDeps.of(ctx)
    found: dict[str, Any] = {"flow_repository": deps.flow_repository}
    if deps.flow_repository is None and deps.flows_bucket:
        found.update(flows_bucket=deps.flows_bucket, toolbox=ctx.toolbox)
    return found


def repository(ctx: HandlerContext) -> FlowRepository | None:
    """Where flows and runs leave their records: an injected repository (embedded
    system, tests), else S3 through the unit's toolbox when ``flows_bucket`` is set."""
    from flows.repository_s3 import repository_from

    return repository_from(_records(ctx))


def outbox(ctx: HandlerContext) -> RecordOutbox | None:
    """The records' outbox of the unit's repository (None without a repository)."""
    from flows.repository_outbox import outbox_from

    return outbox_from({**_records(ctx), "redis": ctx.redis, "names": ctx.names})


async def flush_records(ctx: HandlerContext, logger: Any) -> int:
    """Write what the records' outbox holds (a sweep's chore); the number left."""
    from flows.repository_outbox import flush_records as flush

    return await flush({**_records(ctx), "redis": ctx.redis, "names": ctx.names}, logger)


@dataclass(frozen=True)
class WorkitemsDeps:
    """The ``workitems`` unit: its Azure DevOps project (None: the default)."""

    workitems_project: str | None = None


@dataclass(frozen=True)
class WebhookDeps:
    """The ``webhooks`` unit: the gateway configuration's outbound subscriptions, the
    signing sender and the delivery log (the last two made from the first, and from
    the worker's Redis, when absent)."""

    webhook_config: GatewayConfig | None = None
    webhook_sender: WebhookSender | None = None
    delivery_log: DeliveryLog | None = None

    @classmethod
    def of(cls, ctx: HandlerContext) -> WebhookDeps:
        """This delivery's unit's webhook dependencies."""
        return unit_deps_of(ctx, cls)
