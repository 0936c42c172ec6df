"""``codebus events list``: the event catalogue, with where each type comes from."""

from __future__ import annotations

import click

from workers.cli_support import dump, friendly


@click.group("events")
def events_group() -> None:
    """Event types: codebus's own and those installed packages declare."""


@events_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def list_events(as_json: bool) -> None:
    """Every known event type, its payload model and the package that declares it."""
    from schemas.catalog import unknown_policy
    from schemas.events import EVENT_TYPES

    rows = [
        {
            "type": t,
            "model": f"{EVENT_TYPES[t].__module__}.{EVENT_TYPES[t].__qualname__}",
            "source": EVENT_TYPES.source(t),
        }
        for t in sorted(EVENT_TYPES)
    ]
    if as_json:
        click.echo(dump({"unknown_events": unknown_policy(), "types": rows}))
        return
    width = max(len(r["type"]) for r in rows)
    for r in rows:
        click.echo(f"{r['type']:<{width}}  {r['source']}")
    click.echo(f"unknown types: {unknown_policy()} (CODEBUS_UNKNOWN_EVENTS)", err=True)
