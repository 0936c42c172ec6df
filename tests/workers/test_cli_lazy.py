"""The CLI imports lazily (issue 11 item 6): ``codebus --help`` and ``import workers.cli``
pull in no bus, Redis or tool library, and a command's module is imported only when it
runs. A missing optional dependency is one line naming the extra (item 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tools.servers import SERVER_KINDS
from workers.cli import LAZY_COMMANDS, cli

ROOT = Path(__file__).parents[2]

#: Libraries a worker loads only when its unit or configuration needs them.
HEAVY = ("aio_pika", "redis", "kubernetes_asyncio", "aiobotocore", "aiodocker", "fakeredis")

#: Runs argv[1] as Python, then prints which HEAVY modules (and codebus modules) it loaded.
PROBE = """
import json, sys
heavy = {heavy!r}
try:
    exec(sys.argv[1])
except SystemExit:
    pass
print(json.dumps({{
    "heavy": sorted(m for m in heavy if m in sys.modules),
    "ours": sorted(m for m in sys.modules if m.split(".")[0] in
                   ("bus", "tools", "flows", "handlers", "gateway", "schemas")),
}}))
"""


def probe(code: str, *argv: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), code, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, list[str]] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_import_workers_cli_loads_no_heavy_library():
    loaded = probe("import workers.cli")
    assert loaded == {"heavy": [], "ours": []}


def test_codebus_help_loads_no_heavy_library_and_lists_every_command():
    loaded = probe("sys.argv = ['codebus', '--help']\nfrom workers.cli import main\nmain()")
    assert loaded == {"heavy": [], "ours": []}
    helptext = subprocess.run(
        [sys.executable, "-c", "from workers.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    ).stdout
    listed = helptext.split("Commands:")[1]
    for name in LAZY_COMMANDS:
        assert f"\n  {name} " in listed


def test_a_command_imports_only_its_own_module():
    loaded = probe("sys.argv = ['codebus', 'units']\nfrom workers.cli import main\nmain()")
    # `units` lists the worker units (handlers, bus.router) but connects to nothing.
    assert "aio_pika" not in loaded["heavy"]
    adapters = {ref.split(":")[0] for k in SERVER_KINDS.values() for ref in (k.adapter, k.config)}
    assert adapters.isdisjoint(loaded["ours"])


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_recorded_short_help_is_the_commands_own(name):
    ref, short_help = LAZY_COMMANDS[name]
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    assert command.get_short_help_str(limit=10_000) == short_help, (
        f"LAZY_COMMANDS[{name!r}] drifted from {ref}'s docstring"
    )


def run_blocked(blocked: str, *args: str, env: dict[str, str] | None = None):
    """``codebus ARGS`` with ``blocked`` made unimportable (as if not installed)."""
    code = f"import sys; sys.modules[{blocked!r}] = None; from workers.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_demo_without_fakeredis_names_the_embedded_extra():
    out = run_blocked("fakeredis", "demo")
    assert out.returncode == 3, out.stderr
    assert out.stderr.strip().splitlines() == [
        "Error: this command needs fakeredis, which is not installed:"
        " pip install 'codebus[embedded]'"
    ]


@pytest.mark.parametrize(
    ("section", "blocked", "extra"),
    [
        ("kubernetes:\n  kubeconfig: /nonexistent\n", "kubernetes_asyncio", "kubernetes"),
        ("docker: {}\n", "aiodocker", "docker"),
        ("s3_storage: {}\n", "aiobotocore", "s3"),
        ("security_scanner: {}\n", "semver", "scanner"),
    ],
)
def test_a_configured_tool_server_without_its_library_names_the_extra(
    tmp_path, section, blocked, extra
):
    tools = tmp_path / "tools.yaml"
    tools.write_text(section)
    out = run_blocked(blocked, "worker", "audit", env={"CODEBUS_TOOLS_CONFIG": str(tools)})
    assert out.returncode == 3, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"needs {blocked}, which is not installed: pip install 'codebus[{extra}]'" in lines[0]


def test_completing_a_command_name_imports_no_command_module():
    loaded = probe(
        "import os\n"
        "os.environ.update(_CODEBUS_COMPLETE='bash_complete', COMP_WORDS='codebus d',"
        " COMP_CWORD='1')\n"
        "sys.argv = ['codebus']\n"
        "from workers.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "commands = sorted(m for m in sys.modules if m.startswith('workers.cli_'))\n"
        "assert commands == [], commands\n"
    )
    assert loaded == {"heavy": [], "ours": []}
