"""``codebus deployments``: list, show and explain flows; promote, abort, approve, deny
and retry them. Commands are events on the bus (the CLI never edits a flow's state);
reads come from the flow documents in Redis."""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from flows.report import current_step, summary, why
from flows.store import FlowStore
from schemas.envelope import new_event
from schemas.events import validate_payload
from schemas.flows import FlowState
from workers.cli_support import CliError, dump, friendly, run_async, settings_of

T = TypeVar("T")


def _with_store(ctx: click.Context, op: Callable[[FlowStore], Awaitable[T]]) -> T:
    settings = settings_of(ctx)

    async def main() -> T:
        from workers.app import connect_redis

        redis = await connect_redis(settings.redis_url)
        try:
            return await op(FlowStore(redis, settings.names))
        finally:
            await redis.aclose()

    return run_async(main())


def _load(ctx: click.Context, flow_id: str) -> FlowState:
    async def op(store: FlowStore) -> FlowState | None:
        return await store.load(flow_id)

    state = _with_store(ctx, op)
    if state is None:
        raise CliError(f"no deployment flow {flow_id!r} (see `codebus deployments list`)")
    return state


@click.group("deployments")
def deployments() -> None:
    """Progressive-delivery flows: what they are doing and why; commands to steer them."""


@deployments.command("list")
@click.option("--app", help="Only this app.")
@click.option("--phase", help="Only flows in this phase (e.g. paused, awaiting_approval).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@friendly
def list_(
    ctx: click.Context, app: str | None, phase: str | None, limit: int, as_json: bool
) -> None:
    """Flows, newest first."""

    async def op(store: FlowStore) -> list[FlowState]:
        found = []
        async for state in store.all(limit=10_000):
            if (app is None or state.app == app) and (phase is None or state.phase == phase):
                found.append(state)
            if len(found) >= limit:
                break
        return found

    flows = _with_store(ctx, op)
    if as_json:
        now = time.time()
        click.echo(
            dump([{k: v for k, v in summary(s, now).items() if k != "journal"} for s in flows])
        )
        return
    if not flows:
        click.echo("no deployment flows")
        return
    for s in flows:
        weight = f" weight {s.desired_weight}/{s.actual_weight}" if s.strategy == "canary" else ""
        click.echo(
            f"{s.id:<24} {s.app} {s.version} -> {s.environment:<11} {s.strategy:<10} "
            f"{s.phase:<18} {current_step(s)}{weight}"
        )


@deployments.command()
@click.argument("flow_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@friendly
def show(ctx: click.Context, flow_id: str, as_json: bool) -> None:
    """Phase, step, desired/actual weight, last measurements, timers and journal."""
    info = summary(_load(ctx, flow_id), time.time())
    if as_json:
        click.echo(dump(info))
        return
    click.echo(f"{info['id']}: {info['app']} {info['version']} -> {info['namespace']}")
    for key in ("strategy", "phase", "step", "desired_weight", "actual_weight", "attempt", "why"):
        if info[key] is not None:
            click.echo(f"  {key + ':':<15} {info[key]}")
    for name, t in info["timers"].items():
        click.echo(f"  timer {name:<9} due in {t['due_in']:.1f}s")
    for m in info["measurements"]:
        click.echo(f"  measured {m['metric']}: {m['phase']} {m.get('message', '')}")
    click.echo("  journal:")
    for j in info["journal"]:
        detail = {k: v for k, v in j.items() if k not in ("at", "kind")}
        click.echo(f"    {j['at']:.3f} {j['kind']:<10} {json.dumps(detail, default=str)[:160]}")


@deployments.command("why")
@click.argument("flow_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@friendly
def why_(ctx: click.Context, flow_id: str, as_json: bool) -> None:
    """The evidence behind the flow's last decision, in one line."""
    state = _load(ctx, flow_id)
    if as_json:
        click.echo(
            dump(
                {
                    "id": state.id,
                    "phase": state.phase,
                    "why": why(state),
                    "evidence": state.evidence,
                }
            )
        )
    else:
        click.echo(why(state))


def _send(ctx: click.Context, type_: str, flow_id: str, as_json: bool, **data: Any) -> None:
    """Publish a command event after checking the flow exists."""
    _load(ctx, flow_id)
    payload = {"flow_id": flow_id, **data}
    validate_payload(type_, payload)
    settings = settings_of(ctx)
    event = new_event(type_, payload, source=f"{settings.source}/cli")

    async def main() -> None:
        from workers.app import make_broker

        broker = make_broker(settings, connection_name="codebus-cli")
        await broker.connect()
        try:
            await broker.publish(event)
        finally:
            await broker.close()

    run_async(main())
    if as_json:
        click.echo(dump({"event_id": event.id, "type": type_, "flow_id": flow_id}))
    else:
        click.echo(f"{type_} {event.id} sent; `codebus deployments show {flow_id}` to follow")


def _by(value: str | None) -> str:
    try:
        return value or getpass.getuser()
    except OSError:
        return "cli"


_BY = click.option("--by", help="Who asks (default: the login name).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@deployments.command()
@click.argument("flow_id")
@click.option("--full", is_flag=True, help="Skip every remaining step.")
@click.option("--reason", default="", help="Why.")
@_BY
@_JSON
@click.pass_context
@friendly
def promote(
    ctx: click.Context, flow_id: str, full: bool, reason: str, by: str | None, as_json: bool
) -> None:
    """Leave a pause or approval gate (--full: promote to 100 % now)."""
    _send(
        ctx, "deployment.promote_requested", flow_id, as_json, by=_by(by), reason=reason, full=full
    )


@deployments.command()
@click.argument("flow_id")
@click.option("--reason", required=True, help="Why (recorded and announced).")
@_BY
@_JSON
@click.pass_context
@friendly
def abort(ctx: click.Context, flow_id: str, reason: str, by: str | None, as_json: bool) -> None:
    """Stop the flow; the old version keeps (or goes back to) serving."""
    _send(ctx, "deployment.abort_requested", flow_id, as_json, by=_by(by), reason=reason)


@deployments.command()
@click.argument("flow_id")
@click.option("--reason", default="", help="Why.")
@_BY
@_JSON
@click.pass_context
@friendly
def approve(ctx: click.Context, flow_id: str, reason: str, by: str | None, as_json: bool) -> None:
    """Approve a flow waiting for approval."""
    _send(ctx, "deployment.approval_granted", flow_id, as_json, by=_by(by), reason=reason)


@deployments.command()
@click.argument("flow_id")
@click.option("--reason", required=True, help="Why (recorded and announced).")
@_BY
@_JSON
@click.pass_context
@friendly
def deny(ctx: click.Context, flow_id: str, reason: str, by: str | None, as_json: bool) -> None:
    """Deny a flow waiting for approval: it aborts."""
    _send(ctx, "deployment.approval_denied", flow_id, as_json, by=_by(by), reason=reason)


@deployments.command()
@click.argument("flow_id")
@click.option("--reason", default="", help="Why.")
@_BY
@_JSON
@click.pass_context
@friendly
def retry(ctx: click.Context, flow_id: str, reason: str, by: str | None, as_json: bool) -> None:
    """Run an aborted, rolled-back or failed flow again from its first step."""
    _send(ctx, "deployment.retry_requested", flow_id, as_json, by=_by(by), reason=reason)
