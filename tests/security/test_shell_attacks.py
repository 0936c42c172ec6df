"""Attack table of the shell tool (issue 14, V1): argument injection into allowlisted
programs that execute, read or write what their arguments name.

The server allowlists exactly what ``docs/tools.md`` shows (``git``, ``make``, ``ls``).
Each attack is judged by its effects, not by the error it got: a canary file created
(a command outside the allowlist ran), the outside marker seen in any output or copied
into the root (a read outside the roots), the outside tree changed (a write).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from schemas.tools.desktop_commander import ExecuteCommandArgs, MakeCommandArgs, WriteFileArgs
from tests.reports import report
from tests.security.conftest import MARKER, Arena, make_arena
from tools.adapters.desktop_commander import DesktopCommanderConfig, DesktopCommanderServer
from tools.errors import ToolError


@dataclass
class Attack:
    """One attack: files written first (``writes``), then a command or a make call."""

    name: str
    argv: list[str] | None = None
    make: tuple[str, dict[str, str]] | None = None
    writes: dict[str, str] = field(default_factory=dict)
    # Appended to the root repository's .git/config behind the tool's back (a repository
    # that arrived hostile): the forced git configuration must still win.
    repo_config: str = ""


ATTACKS = [
    Attack("git -c alias", ["git", "-c", "alias.x=!touch {canary}", "x"]),
    Attack(
        "git -c core.sshCommand",
        ["git", "-c", "core.sshCommand=touch {canary}; false", "fetch", "ssh://example.invalid/r"],
    ),
    Attack(
        "git fetch --upload-pack",
        ["git", "fetch", "--upload-pack=touch {canary}; false", "{outside}/repo"],
    ),
    Attack(
        "git clone --upload-pack",
        ["git", "clone", "-u", "touch {canary}; false", "{outside}/repo", "c2"],
    ),
    Attack(
        "git -c core.fsmonitor", ["git", "-c", "core.fsmonitor=touch {canary}; false", "status"]
    ),
    Attack(
        "git ext:: url",
        ["git", "-c", "protocol.ext.allow=always", "fetch", "ext::sh -c touch% {canary}"],
    ),
    Attack(
        "git ext:: url, default protocol policy", ["git", "fetch", "ext::sh -c touch% {canary}"]
    ),
    Attack("git -C outside", ["git", "-C", "{outside}/repo", "log"]),
    Attack("git --git-dir outside", ["git", "--git-dir={outside}/repo/.git", "log"]),
    Attack("git --work-tree outside", ["git", "--work-tree={outside}", "status", "-uall"]),
    Attack("git --exec-path", ["git", "--exec-path={outside}", "status"]),
    Attack("git config --file", ["git", "config", "--file", "{outside}/cfg", "a.b", "c"]),
    Attack("git config --global", ["git", "config", "--global", "user.name", "x"]),
    Attack("git log --output", ["git", "log", "--output={outside}/log.txt"]),
    Attack("git archive -o", ["git", "archive", "-o", "{outside}/a.tar", "HEAD"]),
    Attack("git diff --no-index", ["git", "diff", "--no-index", "{outside}/secret.txt", "app.py"]),
    Attack("git clone outside path", ["git", "clone", "{outside}/repo", "cloned"]),
    Attack("git clone file:// outside", ["git", "clone", "file://{outside}/repo", "cloned2"]),
    Attack("git global config alias", ["git", "st"]),
    Attack("git global config fsmonitor", ["git", "status"]),
    Attack(
        "git repo config written by write_file",
        ["git", "status"],
        writes={".git/config": "[core]\n\tfsmonitor = touch {canary}; false\n"},
    ),
    Attack(
        "git hook written by write_file",
        ["git", "commit", "--allow-empty", "-m", "x"],
        writes={".git/hooks/pre-commit": "#!/bin/sh\ntouch {canary}\n"},
    ),
    Attack(
        "git diff relative escape", ["git", "diff", "--no-index", "../outside/secret.txt", "app.py"]
    ),
    Attack("make --eval shell", ["make", "--eval=$(shell touch {canary})", "show"]),
    Attack("make --eval file", ["make", "--eval=$(file >{outside}/made,x)", "show"]),
    Attack("make -f outside", ["make", "-f", "{outside}/evil.mk"]),
    Attack("make -C outside", ["make", "-C", "{outside}", "-f", "evil.mk"]),
    Attack(
        "make SHELL= operand",
        ["make", "SHELL=/bin/sh", ".SHELLFLAGS=-c", "show", "V=x; touch {canary}"],
    ),
    Attack("make variable operand into recipe", ["make", "test", "PYTHON=touch {canary}; true"]),
    Attack("make_command variable into recipe", make=("test", {"PYTHON": "touch {canary}; true"})),
    Attack("make_command backtick variable", make=("test", {"PYTHON": "`touch {canary}`"})),
    Attack("make_command SHELL variable", make=("test", {"SHELL": "/usr/bin/touch"})),
    Attack("make_command MAKEFLAGS variable", make=("show", {"MAKEFLAGS": "--eval=$$(shell x)"})),
    Attack("ls outside", ["ls", "{outside}"]),
    Attack("ls relative escape", ["ls", "../outside"]),
    Attack(
        "hostile repo config: fsmonitor",
        ["git", "status"],
        repo_config="[core]\n\tfsmonitor = touch {canary}; false\n",
    ),
    Attack(
        "hostile repo config: hooksPath",
        ["git", "commit", "--allow-empty", "-m", "x"],
        repo_config="[core]\n\thooksPath = {outside}/hooks\n",
    ),
    Attack(
        "hostile repo config: gpg on commit",
        ["git", "commit", "--allow-empty", "-m", "x"],
        repo_config="[commit]\n\tgpgSign = true\n[gpg]\n\tprogram = {outside}/evil.sh\n",
    ),
    Attack("ls --hide option value", ["ls", "--hide=x", "{outside}"]),
    Attack("ls -R after --", ["ls", "-R", "--", "{outside}"]),
]


def _format(value: Any, arena: Arena) -> Any:
    fields = {"canary": arena.canary, "outside": arena.outside, "root": arena.root}
    if isinstance(value, str):
        return value.format(**fields)
    if isinstance(value, list):
        return [_format(v, arena) for v in value]
    if isinstance(value, dict):
        return {k: _format(v, arena) for k, v in value.items()}
    return value


async def call(server: DesktopCommanderServer, tool: str, args: Any) -> Any:
    """Call a tool through its bound method, as the registry would."""
    bound = {t.spec.name: t for t in server.tools()}[f"desktop-commander.{tool}"]
    return await bound.call(args)


async def run_attack(attack: Attack, arena: Arena) -> tuple[bool, bool, bool, str]:
    """(ran outside the allowlist, read outside, wrote outside, what the caller saw)."""
    server = DesktopCommanderServer(
        DesktopCommanderConfig(roots=[arena.root], allowed_executables=["git", "make", "ls"])
    )
    if attack.repo_config:
        with (arena.root / ".git" / "config").open("a") as config:
            config.write(_format(attack.repo_config, arena))
    before = arena.outside_snapshot()
    seen: list[str] = []
    try:
        for path, content in attack.writes.items():
            await call(
                server, "write_file", WriteFileArgs(path=path, content=_format(content, arena))
            )
        if attack.argv is not None:
            args = ExecuteCommandArgs(command=_format(attack.argv, arena), timeout=20)
            result = await call(server, "execute_command", args)
        else:
            assert attack.make is not None
            target, variables = attack.make
            result = await call(
                server,
                "make_command",
                MakeCommandArgs(target=target, variables=_format(variables, arena), timeout=20),
            )
        seen += [result.stdout, result.stderr]
    except (ToolError, ValueError) as exc:  # refused: what matters is what happened
        seen.append(str(exc))
    ran = arena.canary.exists()
    read = any(MARKER in text for text in seen) or arena.marker_in_root()
    wrote = arena.outside_snapshot() != before
    return ran, read, wrote, " | ".join(s.strip()[:120] for s in seen)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_shell_attack_has_no_effect_outside(attack: Attack, arena: Arena) -> None:
    ran, read, wrote, seen = await run_attack(attack, arena)
    assert (ran, read, wrote) == (False, False, False), seen


async def test_shell_attack_table_counts(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole table on fresh arenas; the counts go to the CI log."""
    ran = read = wrote = 0
    failures = []
    for attack in ATTACKS:
        arena = make_arena(tmp_path_factory.mktemp("a"), monkeypatch)
        r, d, w, seen = await run_attack(attack, arena)
        ran, read, wrote = ran + r, read + d, wrote + w
        if r or d or w:
            failures.append(f"{attack.name}: ran={r} read={d} wrote={w} ({seen})")
    report(
        "security-shell-tool",
        f"attacks={len(ATTACKS)} commands_outside_allowlist={ran} "
        f"reads_outside_roots={read} writes_outside_roots={wrote}",
    )
    assert failures == []
