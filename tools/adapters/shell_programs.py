"""The built-in argument policies: ``git``, ``make``, ``ls`` and ``echo``.

These are the programs ``docs/tools.md`` shows on the allowlist. Each lists exactly what
may be passed; anything else is refused (see :mod:`tools.adapters.shell_policy` for the
rules and ``docs/security.md`` for what each program can still do).
"""

from __future__ import annotations

from tools.adapters.shell_policy import CommandPolicy, OptionKind


def _flags(*names: str) -> dict[str, OptionKind]:
    return dict.fromkeys(names, "flag")


_LOG_OPTIONS: dict[str, OptionKind] = {
    **_flags(
        "--oneline",
        "--stat",
        "--shortstat",
        "--name-only",
        "--name-status",
        "--graph",
        "--no-color",
        "--reverse",
        "--first-parent",
        "--no-merges",
        "--merges",
        "-p",
        "--patch",
        "--no-patch",
        "-s",
        "--abbrev-commit",
        "--no-ext-diff",
        "--no-textconv",
        "--all",
        "--tags",
        "--follow",
    ),
    "-n": "value",
    "--max-count": "value",
    "--skip": "value",
    "--since": "value",
    "--until": "value",
    "--after": "value",
    "--before": "value",
    "--author": "value",
    "--grep": "value",
    "--format": "value",
    "--pretty": "optional",
    "--date": "value",
    "--decorate": "optional",
    "-U": "value",
    "--unified": "value",
}
_DIFF_OPTIONS: dict[str, OptionKind] = {
    **_flags(
        "--stat",
        "--shortstat",
        "--numstat",
        "--name-only",
        "--name-status",
        "--cached",
        "--staged",
        "--no-color",
        "--exit-code",
        "--quiet",
        "--no-ext-diff",
        "--no-textconv",
        "-w",
        "--ignore-all-space",
        "-R",
    ),
    "-U": "value",
    "--unified": "value",
    "--diff-filter": "value",
}

#: git, hardened: only these subcommands and options. Never ``-c``, ``-C``,
#: ``--git-dir``, ``--work-tree``, ``--exec-path``, ``--upload-pack``, ``--output``,
#: ``--no-index``, ``--template``, ``--config``, ``config``, ``archive``, ``submodule``.
GIT_POLICY = CommandPolicy(
    options=_flags("--no-pager", "--version"),
    subcommands={
        "status": CommandPolicy(
            options={
                **_flags("-s", "--short", "-b", "--branch", "--long", "-z"),
                "--porcelain": "optional",
                "--untracked-files": "optional",
                "-u": "optional",
            }
        ),
        "log": CommandPolicy(options=_LOG_OPTIONS),
        "show": CommandPolicy(options=_LOG_OPTIONS),
        "diff": CommandPolicy(options=_DIFF_OPTIONS),
        "rev-parse": CommandPolicy(
            options={
                **_flags(
                    "--abbrev-ref",
                    "--verify",
                    "-q",
                    "--quiet",
                    "--show-toplevel",
                    "--is-inside-work-tree",
                    "--symbolic-full-name",
                ),
                "--short": "optional",
            }
        ),
        "rev-list": CommandPolicy(
            options={
                **_flags("--count", "--all", "--first-parent", "--no-merges"),
                "-n": "value",
                "--max-count": "value",
            }
        ),
        "describe": CommandPolicy(
            options={
                **_flags("--tags", "--always", "--long", "--exact-match"),
                "--dirty": "optional",
                "--abbrev": "optional",
                "--match": "value",
            }
        ),
        "ls-files": CommandPolicy(
            options=_flags(
                "--cached",
                "--modified",
                "--deleted",
                "--others",
                "--exclude-standard",
                "-z",
                "-c",
                "-m",
                "-o",
                "-d",
            )
        ),
        "branch": CommandPolicy(
            options={
                **_flags(
                    "--list",
                    "-l",
                    "-a",
                    "--all",
                    "-r",
                    "--remotes",
                    "-v",
                    "--verbose",
                    "--show-current",
                    "--no-color",
                ),
                "--sort": "value",
                "--format": "value",
                "--contains": "value",
            }
        ),
        "tag": CommandPolicy(
            options={
                **_flags("--list", "-l"),
                "-n": "optional",
                "--sort": "value",
                "--points-at": "value",
                "--contains": "value",
                "-a": "flag",
                "-m": "value",
                "--message": "value",
            }
        ),
        "fetch": CommandPolicy(
            options={
                **_flags("--prune", "--tags", "--no-tags", "-q", "--quiet", "--all"),
                "--depth": "value",
            }
        ),
        "clone": CommandPolicy(
            options={
                **_flags("-q", "--quiet", "--single-branch", "--no-tags", "--bare"),
                "--depth": "value",
                "-b": "value",
                "--branch": "value",
            }
        ),
        "checkout": CommandPolicy(options={**_flags("-q", "--quiet", "-f"), "-b": "value"}),
        "switch": CommandPolicy(
            options={**_flags("-q", "--quiet", "--detach"), "-c": "value", "--create": "value"}
        ),
        "add": CommandPolicy(options=_flags("-A", "--all", "-u", "--update", "-n", "--dry-run")),
        "commit": CommandPolicy(
            options={
                **_flags("-a", "--all", "--allow-empty", "-q", "--quiet"),
                "-m": "value",
                "--message": "value",
            }
        ),
    },
)

#: make: recipes are the Makefile's; arguments cannot add code, files or directories.
#: Never ``--eval``, ``-f``, ``-C``, ``-I``, ``-e``, ``-o``/``-W`` (paths outside).
MAKE_POLICY = CommandPolicy(
    options={
        **_flags(
            "-n",
            "--dry-run",
            "--just-print",
            "-k",
            "--keep-going",
            "-s",
            "--silent",
            "--quiet",
            "-B",
            "--always-make",
            "--no-print-directory",
            "-q",
            "--question",
        ),
        "-j": "value",
        "--jobs": "optional",
    },
    operands="make",
)

LS_POLICY = CommandPolicy(
    options={
        **_flags(
            "-l",
            "-a",
            "-A",
            "-h",
            "--human-readable",
            "-R",
            "--recursive",
            "-1",
            "-t",
            "-r",
            "--reverse",
            "-S",
            "-d",
            "--directory",
            "-F",
            "-i",
            "-n",
            "-p",
            "-U",
        ),
        "--color": "optional",
        "--sort": "value",
        "--time-style": "value",
    }
)

ECHO_POLICY = CommandPolicy(options=_flags("-n"), operands="text")

#: Policies of the programs ``docs/tools.md`` shows (and ``echo``).
BUILTIN_POLICIES: dict[str, CommandPolicy] = {
    "git": GIT_POLICY,
    "make": MAKE_POLICY,
    "ls": LS_POLICY,
    "echo": ECHO_POLICY,
}
