"""The guide's follow-up handlers (unit ``workitems``): Azure DevOps work items for people,
and the ``codebus_deployment_info`` metric for Prometheus.

- ``deployment.completed``: record the deployment in ``codebus_deployment_info``, ask
  Prometheus (the guide's ``deployment_info`` query) which versions of the app it
  currently sees in that environment, and open the post-deployment validation Task;
- ``security.issue_found``: an Azure DevOps Bug with the findings (the Slack alert is
  the ``notify`` unit's ``notify.compose``, on the same event);
- ``deployment.failed`` / ``deployment.rolled_back``: a Task with the evidence.

Work items are not idempotent on the Azure DevOps side, so each carries a tag derived
from the event that caused it and is created only if no item has that tag yet: a
redelivered event (a crash between creating and acking) finds its item and stops.
"""

from __future__ import annotations

import html
import uuid
from typing import Any

from bus.context import HandlerContext
from bus.router import Router
from handlers.deployment_info import deployment_info, promql_label
from handlers.deps import WorkitemsDeps, metrics_registry, unit_deps_of
from handlers.toolcalls import call_tool
from schemas.events import (
    DeploymentCompleted,
    DeploymentFailed,
    DeploymentRolledBack,
    SecurityIssueFound,
)
from tools.errors import ToolError

router = Router("workitems")

DEFAULT_PROJECT = "Operations"
_REFS = uuid.UUID("5b0f3c1e-8a2d-4c6b-9e7f-1d2a3b4c5d6e")
_SEVERITY = {"critical": 1, "high": 2, "medium": 3, "low": 4}
_SEVERITY_NAME = {1: "1 - Critical", 2: "2 - High", 3: "3 - Medium", 4: "4 - Low"}
#: Bugs show ``Microsoft.VSTS.TCM.ReproSteps`` on their form, not ``System.Description``.
REPRO_STEPS = "Microsoft.VSTS.TCM.ReproSteps"


def unit_deps(settings: Any, redis: Any) -> WorkitemsDeps:
    """The unit's settings: the Azure DevOps project (``CODEBUS_WORKITEMS_PROJECT``),
    as the typed object its handlers read (``ctx.unit_deps(WorkitemsDeps)``)."""
    return WorkitemsDeps(workitems_project=settings.workitems_project)


def ref_tag(ctx: HandlerContext, purpose: str) -> str:
    """The tag that marks the work item ``purpose`` caused by this delivery's event."""
    return "codebus-" + uuid.uuid5(_REFS, f"{ctx.event.id}\x1f{purpose}").hex[:20]


def _project(ctx: HandlerContext) -> str:
    return unit_deps_of(ctx, WorkitemsDeps).workitems_project or DEFAULT_PROJECT


def _rows(pairs: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in pairs
        if v not in (None, "", [], {})
    )
    return f"<table>{cells}</table>"


async def create_once(ctx: HandlerContext, purpose: str, args: dict[str, Any]) -> tuple[int, bool]:
    """Create the work item unless one with this event's tag exists; (id, created)."""
    tag = ref_tag(ctx, purpose)
    query = (
        "SELECT [System.Id] FROM workitems WHERE [System.TeamProject] = @project "
        f"AND [System.Tags] CONTAINS '{tag}'"
    )
    found = await call_tool(
        ctx,
        "azure-devops.manage_work_items",
        {"action": "list", "project": args["project"], "query": query, "top": 1},
    )
    if found.work_items:
        ctx.logger.info(
            "work item %d exists for %s; not created again", found.work_items[0].id, tag
        )
        return found.work_items[0].id, False
    tags = [*args.pop("tags", []), tag]
    item = await call_tool(ctx, "azure-devops.create_work_item", {**args, "tags": tags})
    return item.id, True


async def versions_in_prometheus(ctx: HandlerContext, app: str, environment: str) -> str:
    """What Prometheus shows for the app in the environment, in words; a query that fails
    is said, not fatal: the work item matters more than this line in it."""
    selector = f"app={promql_label(app)},environment={promql_label(environment)}"
    query = f"codebus_deployment_info{{{selector}}}"
    # Evaluated at the event's time: a redelivery asks the same question, and a cached
    # answer to an earlier completion's query (read-only tools are cached) cannot be
    # handed out for this one.
    args = {"query": query, "time": ctx.event.time.isoformat()}
    try:
        result = await call_tool(
            ctx, "prometheus-monitoring.prometheus_query", args, passthrough=(ToolError,)
        )
    except ToolError as exc:
        return f"unknown (Prometheus query failed: {exc})"
    versions = sorted({s.metric.get("version", "?") for s in result.series})
    return ", ".join(versions) if versions else "none yet (not scraped)"


@router.subscribe("deployment.completed", name="workitems.completed")
async def on_completed(done: DeploymentCompleted, ctx: HandlerContext) -> None:
    """Record the deployment in ``codebus_deployment_info`` and open the guide's
    post-deployment validation Task."""
    deployment_info(metrics_registry(ctx)).record(
        done.app, done.environment, done.version, ctx.event.time.timestamp()
    )
    seen = await versions_in_prometheus(ctx, done.app, done.environment)
    check = (
        f"codebus_deployment_info{{app={promql_label(done.app)},"
        f"version={promql_label(done.version)}}}"
    )
    description = (
        f"<p>Validate deployment of {html.escape(done.app)} v{html.escape(done.version)}</p>"
        + _rows(
            [
                ("environment", done.environment),
                ("image", done.image),
                ("duration (s)", done.duration_seconds),
                ("flow", done.flow_id),
                ("versions Prometheus shows", seen),
                ("check in Prometheus", check),
                ("event", ctx.event.id),
            ]
        )
    )
    await create_once(
        ctx,
        "post-deployment",
        {
            "project": _project(ctx),
            "work_item_type": "Task",
            "title": f"Post-deployment validation for {done.app} {done.version} "
            f"({done.environment})"[:255],
            "description": description,
            "tags": ["codebus", "post-deployment", done.app, done.environment],
        },
    )


@router.subscribe("security.issue_found", name="workitems.security")
async def on_security_issue(found: SecurityIssueFound, ctx: HandlerContext) -> None:
    """An Azure DevOps Bug with the findings."""
    level = _SEVERITY[found.severity]
    ids = found.vulnerability_ids
    findings = "".join(
        f'<li><a href="https://osv.dev/vulnerability/{html.escape(v)}">{html.escape(v)}</a></li>'
        for v in ids
    )
    body = (
        f"<p>{html.escape(found.issue)}</p>"
        + _rows(
            [
                ("severity", found.severity),
                ("image", found.image),
                ("app", found.app),
                ("version", found.version),
                ("vulnerabilities", len(ids)),
                ("event", ctx.event.id),
            ]
        )
        + (f"<ul>{findings}</ul>" if findings else "")
    )
    tags = ["codebus", "security", found.severity, *([found.app] if found.app else [])]
    await create_once(
        ctx,
        "security-bug",
        {
            "project": _project(ctx),
            "work_item_type": "Bug",
            "title": f"Security: {found.issue}"[:255],
            "description": body,
            "priority": level,
            "tags": tags,
            "fields": {REPRO_STEPS: body, "Microsoft.VSTS.Common.Severity": _SEVERITY_NAME[level]},
        },
    )


@router.subscribe("deployment.failed", "deployment.rolled_back", name="workitems.failures")
async def on_failure(ev: DeploymentFailed | DeploymentRolledBack, ctx: HandlerContext) -> None:
    """A Task to investigate a failed or rolled-back deployment, with the evidence."""
    rows: list[tuple[str, Any]]
    if isinstance(ev, DeploymentFailed):
        what, rows = "failed", [("stage", ev.stage), ("reason", ev.reason)]
    else:
        what = "rolled back"
        rows = [("reason", ev.reason), ("evidence", ev.evidence), ("back to", ev.to_version)]
    flow = ev.flow_id
    rows += [
        ("environment", ev.environment),
        ("flow", flow),
        ("explain", f"codebus deployments why {flow}" if flow else None),
        ("event", ctx.event.id),
    ]
    await create_once(
        ctx,
        "deployment-" + what.replace(" ", "-"),
        {
            "project": _project(ctx),
            "work_item_type": "Task",
            "title": f"Investigate: {ev.app} {ev.version} {what} in {ev.environment}"[:255],
            "description": f"<p>Deployment of {html.escape(ev.app)} v{html.escape(ev.version)} "
            f"{what}.</p>" + _rows(rows),
            "priority": 2,
            "tags": ["codebus", "deployment-" + what.replace(" ", "-"), ev.app, ev.environment],
        },
    )
