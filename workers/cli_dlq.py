"""``codebus dlq``: list, show, replay and purge dead letters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from bus import deadletters
from bus.abc import Broker
from workers.cli_support import CliError, dump, friendly, run_async, settings_of

T = TypeVar("T")


def _with_broker(ctx: click.Context, op: Callable[[Broker], Awaitable[T]]) -> T:
    from workers.app import make_broker

    broker = make_broker(settings_of(ctx), connection_name="codebus-dlq")

    async def main() -> T:
        await broker.connect()
        try:
            return await op(broker)
        finally:
            await broker.close()

    return run_async(main())


def oldest_first(items: list[deadletters.DeadLetterInfo]) -> list[deadletters.DeadLetterInfo]:
    """Sorted by when each died, then id. Listing keeps the queue's order
    (``bus.deadletters`` puts the letters back as they were on every kind of queue), but
    the queue's order is arrival order, which is not always death order (a letter
    replayed and dead again goes to the back). Letters the broker dead-lettered itself
    carry no time and come first."""
    return sorted(items, key=lambda i: (i.dead_at or "", i.message_id or ""))


@click.group()
def dlq() -> None:
    """Inspect and recover dead-lettered events."""


@dlq.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@friendly
def list_(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List dead letters, oldest first (they stay in the queue)."""
    items = oldest_first(_with_broker(ctx, lambda b: deadletters.list_dead_letters(b, limit)))
    if as_json:
        click.echo(dump([i.as_dict() for i in items]))
        return
    if not items:
        click.echo("no dead letters")
        return
    for i in items:
        click.echo(
            f"{(i.message_id or '?')[:36]:<36} {i.event_type:<24} {i.kind:<15} "
            f"attempts={i.attempts or '-'} queue={i.queue or '-'}\n    {i.reason[:200]}"
        )


@dlq.command()
@click.argument("event_id")
@click.pass_context
@friendly
def show(ctx: click.Context, event_id: str) -> None:
    """Show one dead letter with its event."""
    items = _with_broker(ctx, lambda b: deadletters.list_dead_letters(b, 100_000))
    matches = [i for i in items if (i.message_id or "").startswith(event_id)]
    if not matches:
        raise CliError(f"no dead letter with id {event_id!r}")
    click.echo(dump([m.as_dict(with_body=True) for m in matches]))


@dlq.command()
@click.argument("event_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--kind", help="Only this kind (invalid, rejected, exhausted, ...).")
@click.option("--queue", help="Only those that died in this queue.")
@click.pass_context
@friendly
def replay(
    ctx: click.Context,
    event_ids: tuple[str, ...],
    replay_all: bool,
    kind: str | None,
    queue: str | None,
) -> None:
    """Send dead letters back to the queue they died in (attempts reset)."""
    if not (event_ids or replay_all or kind or queue):
        raise CliError("name EVENT_IDS, or use --all / --kind / --queue")

    def select(i: Any) -> bool:
        return (
            (not event_ids or any((i.message_id or "").startswith(e) for e in event_ids))
            and (kind is None or i.kind == kind)
            and (queue is None or i.queue == queue)
        )

    done = _with_broker(ctx, lambda b: deadletters.replay(b, select=select, limit=100_000))
    click.echo(f"replayed {len(done)} dead letter(s)")
    for i in done:
        click.echo(f"  {i.message_id} -> {i.queue}")


@dlq.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@friendly
def purge(ctx: click.Context, yes: bool) -> None:
    """Delete every dead letter."""
    if not yes:
        click.confirm("Delete every dead letter?", abort=True)
    n = _with_broker(ctx, deadletters.purge)
    click.echo(f"purged {n} dead letter(s)")
