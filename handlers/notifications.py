"""Notifications (unit ``notify``): deployment and security events become
notification.requested, which is sent with slack-notifications.send_notification."""

from __future__ import annotations

from typing import Any

from bus.context import HandlerContext
from bus.errors import Reject
from bus.router import Router
from handlers.toolcalls import call_tool
from schemas.envelope import Event
from schemas.errors import SchemaError
from schemas.events import NotificationRequested, validate_payload

router = Router("notify")

DEPLOY_CHANNEL = "#deployments"
SECURITY_CHANNEL = "#security-alerts"

_STYLE: dict[str, tuple[str, str, str | None]] = {
    # type -> (channel, notification_type, colour)
    "deployment.started": (DEPLOY_CHANNEL, "info", None),
    "deployment.completed": (DEPLOY_CHANNEL, "success", "good"),
    "deployment.failed": (DEPLOY_CHANNEL, "error", "danger"),
    "deployment.rolled_back": (DEPLOY_CHANNEL, "warning", "warning"),
    "deployment.approval_requested": (DEPLOY_CHANNEL, "warning", "warning"),
    "deployment.promoted": (DEPLOY_CHANNEL, "info", "good"),
    "deployment.aborted": (DEPLOY_CHANNEL, "warning", "warning"),
    "deployment.stalled": (DEPLOY_CHANNEL, "error", "danger"),
    "deployment.paused": (DEPLOY_CHANNEL, "info", None),
    "security.issue_found": (SECURITY_CHANNEL, "security_alert", "danger"),
}


def matters(event_type: str, d: dict[str, Any]) -> bool:
    """One notification per state change people act on: not per measurement or step,
    and a timed pause (a bake) is no news; a pause until someone promotes is."""
    return not (event_type == "deployment.paused" and d.get("until") is not None)


def title_for(event_type: str, d: dict[str, Any]) -> str:
    """A one-line human title for an event, from its validated payload (defaults
    included: an environment left out on the wire is the model's default, never None)."""
    who = f"{d.get('app', '?')} {d.get('version', '')}".strip()
    return {
        "deployment.started": f"Deployment started: {who} to {d.get('environment')}",
        "deployment.completed": f"Deployment completed: {who} in {d.get('environment')}",
        "deployment.failed": f"Deployment failed: {who} ({d.get('stage')})",
        "deployment.rolled_back": f"Deployment rolled back: {who}: {d.get('reason')}",
        "deployment.approval_requested": f"Approval needed: {who} ({d.get('reason')})",
        "deployment.promoted": f"Deployment promoted: {who} in {d.get('environment')}",
        "deployment.aborted": f"Deployment aborted: {who}: {d.get('reason')}",
        "deployment.stalled": f"Deployment stalled: {who} in {d.get('phase')}",
        "deployment.paused": f"Deployment paused: {who} ({d.get('reason')})",
        "security.issue_found": f"Security issue: {d.get('issue')}",
    }.get(event_type, event_type)


@router.subscribe(*_STYLE, name="notify.compose")
async def compose(event: Event, ctx: HandlerContext) -> None:
    """Turn a deployment or security event into a notification request."""
    try:
        data = validate_payload(event.type, event.data).model_dump(mode="json")
    except SchemaError as exc:
        raise Reject(str(exc)) from exc
    if not matters(event.type, data):
        ctx.logger.debug("%s is not worth a notification", event.type)
        return
    channel, kind, color = _STYLE[event.type]
    await ctx.publish(
        "notification.requested",
        NotificationRequested(
            channel=channel,
            title=title_for(event.type, data)[:300],
            notification_type=kind,  # type: ignore[arg-type]
            details={
                k: v for k, v in data.items() if v is not None and not isinstance(v, dict | list)
            },
            color=color,  # type: ignore[arg-type]
        ),
    )


@router.subscribe("notification.requested", name="notify.send")
async def send(note: NotificationRequested, ctx: HandlerContext) -> None:
    """Deliver a notification to Slack."""
    args: dict[str, Any] = {
        "channel": note.channel,
        "notification_type": note.notification_type,
        "title": note.title,
        "details": {**note.details, **({"text": note.text} if note.text else {})},
    }
    if note.color:
        args["color"] = note.color
    await call_tool(ctx, "slack-notifications.send_notification", args)
