"""Commands that move events: worker, publish, tail, topology, units, demo."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from typing import Any

import click
from click.shell_completion import CompletionItem

from bus.abc import Delivery
from bus.router import describe
from schemas.envelope import Event, new_event
from schemas.events import EVENT_TYPES, validate_payload
from workers.cli_support import CliError, dump, friendly, run_async, settings_of
from workers.settings import ConfigError
from workers.units import UNITS, UnknownUnit, get_unit, load_app, with_unit_roles


def complete_units(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion of worker unit names."""
    return [
        CompletionItem(n, help=u.description) for n, u in UNITS.items() if n.startswith(incomplete)
    ]


def complete_event_types(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion of the known event types."""
    return [CompletionItem(t) for t in sorted(EVENT_TYPES) if t.startswith(incomplete)]


def complete_patterns(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion of topic patterns: '#', each family's ``family.*`` and each type."""
    families = sorted({t.split(".", 1)[0] + ".*" for t in EVENT_TYPES})
    every = ["#", *families, *sorted(EVENT_TYPES)]
    return [CompletionItem(p) for p in every if p.startswith(incomplete)]


@click.command()
@click.argument("unit", required=False, shell_complete=complete_units)
@click.option("--concurrency", type=click.IntRange(1, 10_000), help="Prefetch per subscription.")
@click.option("--app", help="Run the Unit at package.module:attribute (not installed).")
@click.pass_context
@friendly
def worker(ctx: click.Context, unit: str | None, concurrency: int | None, app: str | None) -> None:
    """Run the subscriptions of worker UNIT until SIGTERM, then drain.

    Units: codebus's own and those installed packages declare (see `codebus units`).
    """
    from bus import tracing
    from workers.app import connect_redis, run_unit
    from workers.logs import configure
    from workers.toolbox import build_toolbox, configured_servers, guard_config, load_tools_file

    settings = settings_of(ctx)
    if concurrency:
        settings = settings.model_copy(update={"concurrency": concurrency})
    if (unit is None) == (app is None):
        raise CliError("give a UNIT name or --app package.module:unit (one of them)")
    try:
        the_unit = load_app(app) if app is not None else get_unit(unit or "")
    except UnknownUnit as exc:  # a misspelt UNIT argument: a usage error, not config
        raise CliError(str(exc)) from None
    unit = the_unit.name
    tools_file = load_tools_file(settings.tools_config)
    guards = with_unit_roles(guard_config(tools_file), [the_unit])
    if unit not in guards.roles:
        # Checked before connecting: otherwise the toolbox refuses the role at start-up
        # with a ToolPermissionDenied traceback.
        raise ConfigError(
            f"unit {unit!r} has no tool role: declare the tools it may call under"
            f" guards.roles.{unit} in the tools file (CODEBUS_TOOLS_CONFIG), e.g."
            f" `{unit}: []` for none"
        )
    try:
        tracing.setup(f"codebus-{unit}")
    except ValueError as exc:  # an exporter codebus does not ship: one line naming it
        raise ConfigError(str(exc)) from None
    configure(settings.log_level, settings.log_format)

    async def main() -> None:
        servers = configured_servers(settings.fake_tools, tools_file)
        redis = await connect_redis(settings.redis_url)
        toolbox = build_toolbox(servers, redis, settings.names, guards, f"worker/{unit}")
        deps: dict[str, object] = {"toolbox": toolbox.as_role(unit)}
        deps.update(the_unit.extra_deps(settings, redis))
        try:
            await run_unit(the_unit, settings, redis, deps)
        finally:
            await toolbox.close()
            await redis.aclose()

    run_async(main())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def units(as_json: bool) -> None:
    """List worker units (codebus's and installed packages'), with where each comes
    from, their tools and subscriptions."""
    data: dict[str, dict[str, Any]] = {
        name: {
            "description": u.description,
            "source": UNITS.source(name),
            "tools": None if u.tools is None else list(u.tools),
            "subscriptions": [describe(s) for s in u.subscriptions()],
        }
        for name, u in UNITS.items()
    }
    if as_json:
        click.echo(dump(data))
        return
    for name, info in data.items():
        click.echo(f"{name}: {info['description']}  [{info['source']}]")
        for s in info["subscriptions"]:
            click.echo(f"  {s['name']:<22} {', '.join(s['patterns'])}")


@click.command()
@click.argument("event_type", shell_complete=complete_event_types)
@click.option("--data", "data_json", required=True, help="The payload, a JSON object.")
@click.option("--subject", help="CloudEvents subject.")
@click.option("--source", help="CloudEvents source (default: CODEBUS_SOURCE).")
@click.option("--correlation-id", help="Workflow id to join (default: the new event's id).")
@click.option("--id", "event_id", help="Event id (default: a new UUID).")
@click.option(
    "--traceparent",
    envvar="TRACEPARENT",
    help="W3C traceparent of the caller's trace to join (default: a new trace).",
)
@click.pass_context
@friendly
def publish(
    ctx: click.Context,
    event_type: str,
    data_json: str,
    subject: str | None,
    source: str | None,
    correlation_id: str | None,
    event_id: str | None,
    traceparent: str | None,
) -> None:
    """Validate and publish one event of EVENT_TYPE; prints its id once confirmed."""
    from bus import tracing
    from gateway.limits import JsonLimitExceeded, loads_bounded
    from workers.logs import configure

    try:
        # The same bounds as the gateway's: what it refuses, the CLI refuses too.
        data = loads_bounded(data_json)
    except JsonLimitExceeded as exc:
        raise CliError(f"--data: {exc.limit}: {exc.detail} (at {exc.path})") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"--data is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise CliError("--data must be a JSON object")
    validate_payload(event_type, data)  # SchemaError names the field
    if traceparent and tracing.valid_traceparent(traceparent) is None:
        raise CliError(f"--traceparent: not a W3C traceparent: {traceparent!r}")
    settings = settings_of(ctx)
    configure(settings.log_level, settings.log_format)
    try:
        tracing.setup("codebus-cli")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    event = new_event(
        event_type,
        data,
        source=source or settings.source,
        subject=subject,
        correlationid=correlation_id,
        id=event_id,
        traceparent=traceparent,
    )

    async def main() -> None:
        from workers.app import make_broker

        # A producer span (a new trace unless --traceparent): the event carries it.
        broker = tracing.TracingBroker(make_broker(settings, connection_name="codebus-cli"))
        await broker.connect()
        try:
            await broker.publish(event)
        finally:
            await broker.close()

    try:
        run_async(main())
    finally:
        tracing.shutdown()
    click.echo(event.id)


def format_event(event: Event) -> str:
    """One readable line per event for `codebus tail`."""
    when = event.time.astimezone().strftime("%H:%M:%S.%f")[:-3]
    data = json.dumps(event.data, separators=(",", ":"), default=str)
    if len(data) > 160:
        data = data[:157] + "..."
    corr = (event.correlationid or "")[:8]
    return f"{when} {event.type:<26} {event.id[:8]} corr={corr} {data}"


def tail_line(body: bytes, message_id: str | None, *, as_json: bool) -> str:
    """What `codebus tail` prints for one message: JSON with only the attributes that
    were on the wire (no ``null`` for absent optional ones), or one readable line."""
    try:
        ev = Event.from_json(body)
        return ev.model_dump_json(exclude_unset=True) if as_json else format_event(ev)
    except Exception as exc:  # a tap shows whatever is published, even garbage
        return f"(undecodable message {message_id}: {exc})"


@click.command()
@click.argument("patterns", nargs=-1, shell_complete=complete_patterns)
@click.option("--json", "as_json", is_flag=True, help="Print each event as JSON.")
@click.option("--count", type=click.IntRange(1), help="Exit after this many events.")
@click.pass_context
@friendly
def tail(ctx: click.Context, patterns: tuple[str, ...], as_json: bool, count: int | None) -> None:
    """Print events as they are published (PATTERNS default to '#').

    Uses a private auto-delete queue: it never takes events from workers.
    """
    settings = settings_of(ctx)
    from bus.matching import validate_pattern

    try:
        pats = [validate_pattern(p) for p in (patterns or ("#",))]
    except ValueError as exc:
        raise CliError(str(exc)) from None

    async def main() -> None:
        from workers.app import make_broker

        broker = make_broker(settings, connection_name="codebus-tail")
        await broker.connect()
        done = asyncio.Event()
        seen = 0

        async def show(d: Delivery) -> None:
            nonlocal seen
            click.echo(tail_line(d.message.body, d.message.message_id, as_json=as_json))
            sys.stdout.flush()
            await d.ack()
            seen += 1
            if count and seen >= count:
                done.set()

        tap = await broker.tap(pats, show)
        click.echo(
            f"tailing {', '.join(pats)} on {settings.names.events_exchange} (Ctrl-C to stop)",
            err=True,
        )
        try:
            await done.wait()
        finally:
            await tap.cancel()
            await broker.close()

    try:
        run_async(main())
    except KeyboardInterrupt:
        pass


@click.command()
@click.option("--declare", is_flag=True, help="Declare every unit's queues now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@friendly
def topology(ctx: click.Context, declare: bool, as_json: bool) -> None:
    """Show (and optionally declare) exchanges, queues and bindings."""
    from schemas.names import MAX_DELAY_TIER, MIN_DELAY_TIER
    from workers.app import make_broker

    settings = settings_of(ctx)
    n = settings.names
    broker = make_broker(settings, connection_name="codebus-topology")
    subs = [s for u in UNITS.values() for s in u.subscriptions()]
    data: dict[str, Any] = {
        "exchanges": {
            n.events_exchange: "topic (routing key = event type)",
            n.retry_exchange: "direct (routing key = queue name)",
            n.delay_exchange: "headers (by delay tier)",
            n.dead_exchange: "fanout -> dead-letter queue",
        },
        "queues": {
            n.subscription_queue(s.name): {
                "unit": s.unit,
                "bindings": list(s.patterns),
                "arguments": broker.subscription_queue_args(),
            }
            for s in subs
        },
        "delay_queues": [n.delay_queue(t) for t in range(MIN_DELAY_TIER, MAX_DELAY_TIER + 1)],
        "dead_letter_queue": {
            "name": n.dead_letter_queue,
            "arguments": broker.dead_letter_queue_args(),
        },
        "event_types": sorted(EVENT_TYPES),
    }
    if declare:

        async def main() -> None:
            await broker.connect()
            try:
                for s in subs:
                    await broker.declare_queue(n.subscription_queue(s.name), s.patterns)
            finally:
                await broker.close()

        run_async(main())
    if as_json:
        click.echo(dump(data))
        return
    click.echo("exchanges:")
    for name, kind in data["exchanges"].items():
        click.echo(f"  {name:<28} {kind}")
    click.echo("subscription queues:")
    for q, info in data["queues"].items():
        click.echo(f"  {q:<34} [{info['unit']}] <- {', '.join(info['bindings'])}")
    click.echo(f"delay queues: {n.delay_queue(MIN_DELAY_TIER)} .. {n.delay_queue(MAX_DELAY_TIER)}")
    click.echo(f"dead-letter queue: {n.dead_letter_queue}")
    if declare:
        click.echo(f"declared at {datetime.now().isoformat(timespec='seconds')}")


@click.command()
@click.option(
    "--units",
    "extra",
    default="",
    shell_complete=complete_units,
    help="More units to run beside codebus's (comma-separated names, e.g. your own).",
)
@friendly
def demo(extra: str) -> None:
    """Run the whole system in one process on embedded defaults (in-memory broker,
    fakeredis, fake tool servers): deployments (rolling, a canary rolled back on a metric
    breach, a blue-green promoted after approval), then the guide's pipeline failing at its
    scan step and its saga compensated in reverse order."""
    from workers.demo import run_demo
    from workers.demo_workflows import run_workflows_demo

    try:
        units = [get_unit(n.strip()) for n in extra.split(",") if n.strip()]
    except UnknownUnit as exc:
        raise CliError(f"--units: {exc}") from None
    code = asyncio.run(run_demo(sys.stdout, extra_units=units))
    sys.stdout.write("\n")
    code = asyncio.run(run_workflows_demo(sys.stdout)) or code
    sys.exit(code)


COMMANDS = (worker, units, publish, tail, topology, demo)
