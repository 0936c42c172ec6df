"""The argument-policy parser: option forms, clusters, ``--``, subcommands, operands."""

from __future__ import annotations

import pytest

from tools.adapters.shell_policy import (
    ArgumentRefused,
    CommandPolicy,
    check_argv,
    program_environment,
)
from tools.adapters.shell_programs import BUILTIN_POLICIES

TOOL = CommandPolicy(
    options={
        "-a": "flag",
        "-b": "flag",
        "-n": "value",
        "-o": "path",
        "--color": "optional",
        "--format": "value",
        "--quiet": "flag",
    },
    subcommands={"run": CommandPolicy(options={"-x": "flag"}, operands="text")},
)
POLICIES = {"tool": TOOL, **BUILTIN_POLICIES}


def path_ok(arg: str) -> None:
    """Paths under "in/" are inside the roots; everything else is not."""
    if not arg.startswith("in/"):
        raise ValueError("resolves outside the allowed roots")


@pytest.mark.parametrize(
    "argv",
    [
        ["tool", "-ab", "run"],
        ["tool", "-n", "5", "-n5", "--format=%H", "--format", "%H", "run"],
        ["tool", "-o", "in/out.txt", "-oin/x", "run", "anything at all"],
        ["tool", "--color", "--color=never", "--quiet", "run", "-x", "-a"],  # inherited -a
        ["tool", "run", "--", "-not-an-option"],
        ["git", "log", "-n", "1", "--", "in/file"],
        ["make", "-j4", "build", "V=a/b:c"],
        ["ls", "-la", "--", "in/dir"],
    ],
)
def test_allowed(argv: list[str]) -> None:
    check_argv(argv, POLICIES, path_ok)


@pytest.mark.parametrize(
    ("argv", "argument", "reason"),
    [
        (["tool", "-c"], "-c", "unknown option -c"),
        (["tool", "-ac"], "-ac", "unknown option -c"),
        (["tool", "--colour"], "--colour", "unknown option"),
        (["tool", "--quiet=1"], "--quiet=1", "takes no value"),
        (["tool", "-n"], "-n", "needs a value"),
        (["tool", "-o", "/etc/x"], "/etc/x", "outside the allowed roots"),
        (["tool", "-o/etc/x"], "/etc/x", "outside the allowed roots"),
        (["tool", "build"], "build", "not an allowed subcommand"),
        (["tool", "run", "-y"], "-y", "unknown option -y"),
        (["ls", "--", "/etc"], "/etc", "outside the allowed roots"),
        (["ls", "ext::sh"], "ext::sh", "transport syntax"),
        (["git", "fetch", "http://example.com/r"], "http://example.com/r", "only https"),
        (["git", "fetch", "git@example.com:r.git"], "git@example.com:r.git", "ssh remotes"),
        (["git", "--no-pager", "-C", "in/x", "log"], "-C", "unknown option"),
        (["make", "x y"], "x y", "not a make target"),
        (["make", "V=$(shell id)"], "V=$(shell id)", "value of V"),
    ],
)
def test_refused(argv: list[str], argument: str, reason: str) -> None:
    with pytest.raises(ArgumentRefused) as caught:
        check_argv(argv, POLICIES, path_ok)
    assert caught.value.argument == argument
    assert reason in str(caught.value)


def test_environment_drops_loaders_and_hardens_git() -> None:
    base = {"PATH": "/usr/bin", "LD_PRELOAD": "x.so", "GIT_DIR": "/x", "MAKEFLAGS": "-e"}
    assert program_environment("ls", base) == {"PATH": "/usr/bin"}
    git = program_environment("git", base)
    assert git["GIT_CONFIG_NOSYSTEM"] == "1" and git["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert git["GIT_ALLOW_PROTOCOL"] == "https:file" and "GIT_DIR" not in git
    forced = {
        git[f"GIT_CONFIG_KEY_{i}"]: git[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(git["GIT_CONFIG_COUNT"]))
    }
    assert forced["core.fsmonitor"] == "false" and forced["core.hooksPath"] == "/dev/null"
