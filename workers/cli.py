"""The ``codebus`` command line: one root group, commands in their own modules.

Errors people can act on print one line instead of a traceback, with an exit status
that says what to fix: 2 the command line, 3 the configuration, 4 a service (see
``workers.cli_support.EXIT_CODES_HELP``, shown by ``codebus --help``).
"""

from __future__ import annotations

import logging
import sys

import click

from workers.cli_support import EXIT_CODES_HELP, LazyObj


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="codebus")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """codebus: event-driven workers for infrastructure automation.

    Configure with CODEBUS_* environment variables (CODEBUS_AMQP_URL,
    CODEBUS_REDIS_URL, CODEBUS_CONCURRENCY, ...); see the README. Shell completion:
    eval "$(_CODEBUS_COMPLETE=bash_source codebus)" (zsh_source, fish_source).
    """
    # The connection libraries log tracebacks for refused connections; commands report
    # those as one line themselves (`codebus worker` reconfigures logging).
    for noisy in ("aio_pika", "aiormq"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    if not isinstance(ctx.obj, LazyObj):
        ctx.obj = LazyObj(ctx.obj or {})


def _register() -> None:
    from workers import cli_asyncapi, cli_bus, cli_dlq
    from workers.cli_catalog import events_group
    from workers.cli_deployments import deployments
    from workers.cli_flows import flows_group
    from workers.cli_gateway import gateway_command, webhooks_group
    from workers.cli_tools import breaker_group, tools_group

    for command in (*cli_bus.COMMANDS, cli_dlq.dlq):
        cli.add_command(command)
    cli.add_command(tools_group, "tools")
    cli.add_command(breaker_group, "breaker")
    cli.add_command(gateway_command, "gateway")
    cli.add_command(webhooks_group, "webhooks")
    cli.add_command(deployments, "deployments")
    cli.add_command(flows_group, "flows")
    cli.add_command(cli_asyncapi.asyncapi)
    cli.add_command(events_group)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="codebus")
    except KeyboardInterrupt:
        sys.exit(130)
