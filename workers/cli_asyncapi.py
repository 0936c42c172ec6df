"""``codebus asyncapi``: print the event catalogue as an AsyncAPI 3.0 document."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from urllib.parse import urlsplit

import click
import yaml

from workers.cli_support import settings_of


def _codebus_version() -> str:
    try:
        return package_version("codebus")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0.0.0"


@click.command("asyncapi")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="Output format.",
)
@click.pass_context
def asyncapi(ctx: click.Context, fmt: str) -> None:
    """Print the AsyncAPI 3.0 document of every registered event type.

    Channels are the routing keys on the events exchange (CODEBUS_PREFIX); the server
    is the host of CODEBUS_AMQP_URL, credentials never printed.
    """
    from schemas.asyncapi import build_asyncapi

    settings = settings_of(ctx)
    url = urlsplit(settings.amqp_url)
    server = f"{url.hostname or 'localhost'}:{url.port or 5672}"
    doc = build_asyncapi(version=_codebus_version(), server=server, names=settings.names)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), nl=False)
