"""The ``codebus`` command line: one root group, commands in their own modules.

Errors people can act on print one line instead of a traceback, with an exit status
that says what to fix: 2 the command line, 3 the configuration, 4 a service (see
``workers.cli_support.EXIT_CODES_HELP``, shown by ``codebus --help``).
"""

from __future__ import annotations

import importlib
import sys

import click
from click.shell_completion import CompletionItem
from click.utils import make_default_short_help

from workers.exit_codes import EXIT_CODES_HELP, EXIT_CONFIG

#: Every command: name -> ("module:attribute", its short help). A command's module is
#: imported only when that command runs (or its own --help is asked), so `codebus
#: --help` and shell completion of command names import no bus, Redis or tool library.
#: tests/workers/test_cli_lazy.py checks each short help against the command's docstring.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "asyncapi": (
        "workers.cli_asyncapi:asyncapi",
        "Print the AsyncAPI 3.0 document of every registered event type.",
    ),
    "breaker": (
        "workers.cli_tools:breaker_group",
        "Inspect and reset the circuit breakers of the tool servers (state in Redis).",
    ),
    "demo": (
        "workers.cli_bus:demo",
        "Run the whole system in one process on embedded defaults (in-memory broker,"
        " fakeredis, fake tool servers): deployments (rolling, a canary rolled back on a"
        " metric breach, a blue-green promoted after approval), then the guide's pipeline"
        " failing at its scan step and its saga compensated in reverse order.",
    ),
    "console": (
        "workers.cli_console:console",
        "Serve the web console: live events, correlation view, dead letters, breakers, rollouts.",
    ),
    "deployments": (
        "workers.cli_deployments:deployments",
        "Progressive-delivery flows: what they are doing and why; commands to steer them.",
    ),
    "dlq": ("workers.cli_dlq:dlq", "Inspect and recover dead-lettered events."),
    "events": (
        "workers.cli_catalog:events_group",
        "Event types: codebus's own and those installed packages declare.",
    ),
    "flows": ("workers.cli_flows:flows_group", "Pipelines and sagas: run, list, show, compensate."),
    "gateway": (
        "workers.cli_gateway:gateway_command",
        "Run the webhook gateway: inbound webhooks and POST /events -> events.",
    ),
    "publish": (
        "workers.cli_bus:publish",
        "Validate and publish one event of EVENT_TYPE; prints its id once confirmed.",
    ),
    "tail": (
        "workers.cli_bus:tail",
        "Print events as they are published (PATTERNS default to '#').",
    ),
    "tools": ("workers.cli_tools:tools_group", "Inspect the registered tools."),
    "topology": (
        "workers.cli_bus:topology",
        "Show (and optionally declare) exchanges, queues and bindings.",
    ),
    "units": (
        "workers.cli_bus:units",
        "List worker units (codebus's and installed packages'), with where each comes"
        " from, their tools and subscriptions.",
    ),
    "webhooks": ("workers.cli_gateway:webhooks_group", "Inspect outbound webhook deliveries."),
    "worker": (
        "workers.cli_bus:worker",
        "Run the subscriptions of worker UNIT until SIGTERM, then drain.",
    ),
}


class LazyGroup(click.Group):
    """A group whose commands (``LAZY_COMMANDS``) are imported on first use; the command
    list of ``--help`` is written from the recorded short helps."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[cmd_name][0].partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return command

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Command names complete from ``LAZY_COMMANDS`` without importing them."""
        items = []
        for name in self.list_commands(ctx):
            if not name.startswith(incomplete):
                continue
            loaded = self.commands.get(name)
            if loaded is None:
                items.append(CompletionItem(name, help=LAZY_COMMANDS[name][1]))
            elif not loaded.hidden:
                items.append(CompletionItem(name, help=loaded.get_short_help_str()))
        # The group's own options (``--help``, ``--version``) when ``incomplete`` is one.
        items += click.Command.shell_complete(self, ctx, incomplete)
        return items

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None:
                if loaded.hidden:
                    continue
                help_ = loaded.get_short_help_str(limit)
            else:
                help_ = make_default_short_help(LAZY_COMMANDS[name][1], limit)
            rows.append((name, help_))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(package_name="codebus")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """codebus: event-driven workers for infrastructure automation.

    Configure with CODEBUS_* environment variables (CODEBUS_AMQP_URL,
    CODEBUS_REDIS_URL, CODEBUS_CONCURRENCY, ...); see the README. Shell completion:
    eval "$(_CODEBUS_COMPLETE=bash_source codebus)" (zsh_source, fish_source).
    """
    # One logging set-up for every command (CODEBUS_LOG_LEVEL / CODEBUS_LOG_FORMAT);
    # the connection libraries' tracebacks are silenced: commands report those as one
    # line themselves (`codebus worker` reconfigures logging).
    if not ctx.resilient_parsing:
        from workers.logs import configure_cli

        configure_cli()
    from workers.cli_support import LazyObj

    if not isinstance(ctx.obj, LazyObj):
        ctx.obj = LazyObj(ctx.obj or {})


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="codebus")
    except KeyboardInterrupt:
        sys.exit(130)
    except ModuleNotFoundError as exc:
        # An optional dependency (``codebus[extra]``) the command needs is not installed.
        from tools.extras import extra_for

        extra = extra_for(exc.name)
        if extra is None:
            raise
        click.echo(
            f"Error: this command needs {exc.name}, which is not installed:"
            f" pip install 'codebus[{extra}]'",
            err=True,
        )
        sys.exit(EXIT_CONFIG)
