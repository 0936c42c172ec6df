"""``codebus flows``: start pipelines and sagas from YAML, list and show runs, re-run a
saga's failed compensations. Commands go through the bus as events; reads come from
Redis and, once Redis has let a run go, from the repository (``CODEBUS_FLOWS_BUCKET``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError

from flows.pipeline import WorkflowInputError, new_run, run_id
from schemas.envelope import new_event
from schemas.errors import field_errors
from schemas.workflows import FlowRecord, RecordFilter, WorkflowSpec, WorkflowState
from workers.cli_support import CliError, dump, friendly, run_async, settings_of


def load_spec(path: Path) -> WorkflowSpec:
    """The spec in a YAML file; errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {exc}") from None
    try:
        return WorkflowSpec.model_validate(raw)
    except ValidationError as exc:
        raise CliError(f"invalid workflow {path}: {field_errors(exc)}") from None


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{option} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise CliError(f"{option} must be a JSON object")
    return data


async def _publish(ctx: click.Context, type: str, data: dict[str, Any]) -> str:
    from workers.app import make_broker

    settings = settings_of(ctx)
    event = new_event(type, data, source=settings.source)
    broker = make_broker(settings, connection_name="codebus-cli")
    await broker.connect()
    try:
        await broker.publish(event)
    finally:
        await broker.close()
    return event.id


@click.group("flows")
def flows_group() -> None:
    """Pipelines and sagas: run, list, show, compensate."""


@flows_group.command("run")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--data", "data_json", default="{}", help="The run's inputs, a JSON object.")
@click.option("--by", help="Who asks (recorded with the run).")
@click.pass_context
@friendly
def run(ctx: click.Context, file: Path, data_json: str, by: str | None) -> None:
    """Validate FILE and its inputs, then start the run; prints the run id."""
    spec = load_spec(file)
    data = _json_object(data_json, "--data")
    try:
        new_run("check", spec, data, 0.0)  # the worker checks again; fail here first
    except WorkflowInputError as exc:
        raise CliError(f"--data: {exc}") from None
    payload = {"spec": spec.model_dump(mode="json"), "data": data, "requested_by": by}
    event_id = run_async(_publish(ctx, "workflow.run_requested", payload))
    click.echo(run_id(event_id, spec.kind))


@flows_group.command("compensate")
@click.argument("flow_id")
@click.option("--by", help="Who asks (recorded in the journal).")
@click.pass_context
@friendly
def compensate(ctx: click.Context, flow_id: str, by: str | None) -> None:
    """Re-run the failed compensations of saga FLOW_ID (after fixing their cause)."""
    event_id = run_async(_publish(ctx, "saga.compensate_requested", {"flow_id": flow_id, "by": by}))
    click.echo(event_id)


async def _live(ctx: click.Context) -> tuple[Any, Any]:
    from flows.pipeline_store import WorkflowStore
    from workers.app import connect_redis

    settings = settings_of(ctx)
    redis = await connect_redis(settings.redis_url)
    return redis, WorkflowStore(redis, settings.names)


async def open_repository(ctx: click.Context) -> tuple[Any, Any] | None:
    """The S3 repository through the operator's toolbox, if a bucket is configured."""
    settings = settings_of(ctx)
    if not settings.flows_bucket:
        return None
    from flows.repository_s3 import S3Repository

    toolbox = await ctx.find_root().obj["toolbox_factory"]()
    await toolbox.start()
    return toolbox, S3Repository(toolbox, settings.flows_bucket)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _row(state: WorkflowState) -> dict[str, Any]:
    step = (
        state.spec.steps[state.index].name
        if state.mode == "forward" and state.index < len(state.spec.steps)
        else (
            state.compensations[state.index].step
            if state.mode == "compensate" and state.index < len(state.compensations)
            else None
        )
    )
    return {
        "id": state.id,
        "kind": state.spec.kind,
        "name": state.spec.name,
        "phase": state.phase,
        "step": step,
        "mode": state.mode,
        "created": _when(state.created_at),
        "source": "redis",
    }


def _record_row(record: FlowRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": record.kind,
        "name": record.name,
        "phase": record.phase,
        "step": record.step_name,
        "mode": record.detail.get("mode"),
        "created": _when(record.created_at),
        "source": "repository",
    }


@flows_group.command("list")
@click.option("--kind", type=click.Choice(["pipeline", "saga"]))
@click.option("--phase", help="Only runs in this phase.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@friendly
def list_runs(
    ctx: click.Context, kind: str | None, phase: str | None, limit: int, as_json: bool
) -> None:
    """Pipeline and saga runs, newest first (Redis, then the repository)."""

    async def main() -> list[dict[str, Any]]:
        redis, store = await _live(ctx)
        rows: dict[str, dict[str, Any]] = {}
        try:
            for flow_id in await store.ids(limit=limit * 4):
                state = await store.load(flow_id)
                if state is None or (kind and state.spec.kind != kind):
                    continue
                if phase and state.phase != phase:
                    continue
                rows[state.id] = _row(state)
        finally:
            await redis.aclose()
        repo = await open_repository(ctx)
        if repo is not None:
            toolbox, repository = repo
            try:
                for wanted in [kind] if kind else ["pipeline", "saga"]:
                    filters = RecordFilter(kind=wanted, phase=phase, limit=limit)  # type: ignore[arg-type]
                    for record in await repository.list(filters):
                        rows.setdefault(record.id, _record_row(record))
            finally:
                await toolbox.close()
        return sorted(rows.values(), key=lambda r: r["created"], reverse=True)[:limit]

    rows = run_async(main())
    if as_json:
        click.echo(dump(rows))
        return
    for r in rows:
        click.echo(
            f"{r['id']}  {r['kind']:<8} {r['name']:<20} {r['phase']:<20} "
            f"{r['step'] or '-':<16} {r['created']}"
        )


@flows_group.command("show")
@click.argument("flow_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@friendly
def show(ctx: click.Context, flow_id: str, as_json: bool) -> None:
    """One run: phase, cursor, failed-step report, compensations and journal."""

    async def main() -> dict[str, Any]:
        redis, store = await _live(ctx)
        try:
            state = await store.load(flow_id)
        finally:
            await redis.aclose()
        if state is not None:
            data = state.model_dump(mode="json", exclude={"sent", "outbox"})
            return {"source": "redis", **data}
        repo = await open_repository(ctx)
        if repo is None:
            raise CliError(f"no run {flow_id!r} in Redis (and CODEBUS_FLOWS_BUCKET is not set)")
        toolbox, repository = repo
        try:
            record = await repository.get(flow_id)
            journal = await repository.journal(flow_id)
        finally:
            await toolbox.close()
        if record is None:
            raise CliError(f"no run {flow_id!r} in Redis or in the repository")
        return {
            "source": "repository",
            **record.model_dump(mode="json"),
            "journal": [e for j in journal for e in j.entries],
        }

    data = run_async(main())
    if as_json:
        click.echo(dump(data))
        return
    click.echo(_describe(data))


def _describe(data: dict[str, Any]) -> str:
    spec = data.get("spec") or {}
    name = spec.get("name") or data.get("name")
    kind = spec.get("kind") or data.get("kind")
    lines = [f"{data['id']}  {kind} {name}  phase {data['phase']}  (from {data['source']})"]
    failed = data.get("failed_step") or (data.get("detail") or {}).get("failed_step")
    if failed:
        lines.append(
            f"failed step: {failed['step']} (#{failed['index']}, {failed['attempts']} tries): "
            f"{failed['error']}"
        )
    comps = data.get("compensations") or (data.get("detail") or {}).get("compensations") or []
    for comp in comps:
        extra = f": {comp['error']}" if comp.get("error") else ""
        lines.append(f"undo {comp['step']:<16} {comp['status']:<8} {comp['tool']}{extra}")
    for entry in data.get("journal", [])[-30:]:
        detail = {k: v for k, v in entry.items() if k not in ("at", "kind")}
        lines.append(f"  {_when(float(entry['at']))}  {entry['kind']:<20} {detail}")
    return "\n".join(lines)


@flows_group.command("demo")
def demo() -> None:
    """The guide's pipeline failing at its scan, and its saga undone in reverse, on the
    embedded system (no services needed)."""
    import asyncio
    import sys

    from workers.demo_workflows import run_workflows_demo

    sys.exit(asyncio.run(run_workflows_demo(sys.stdout)))
