"""Argument policies of the shell tool: what each allowlisted program may be asked to do.

An allowlist of programs is not a policy for programs that execute, read or write what
their arguments name (``git -c alias.x=!cmd``, ``make --eval``, ``git log --output``).
So every argument of an allowed program is checked against that program's policy
before anything runs:

* Options are refused unless the policy names them (``refuse unknown by default``). An
  option is a ``flag`` (no value), takes a ``value`` (data), a ``path`` (must lie inside
  the roots) or an ``optional`` value (only in the ``--name=value`` form).
* A program with ``subcommands`` (git) takes only those; each has its own options, and
  the program's own options stay valid after it.
  Aliases are therefore never invoked, and ``config``, ``archive``, ``submodule``...
  are simply not there.
* Operands are ``paths`` (each must resolve inside the roots, relative to the working
  directory; ``::`` transport syntax and URLs other than ``https://`` are refused),
  ``text`` (data only, for ``echo``), ``none``, or ``make`` (targets and ``VAR=value``
  assignments whose value is plain data, see :func:`check_make_variable`).

The built-in policies (git, make, ls, echo) are in :mod:`tools.adapters.shell_programs`.
A program without a policy of its own gets :data:`DEFAULT_POLICY`: no options at all,
operands checked as paths. Operators add or replace policies in
``DesktopCommanderConfig.argument_policies``; the residual risk of each built-in policy
is written down in ``docs/security.md``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.tools.desktop_commander import MAKE_TARGET_RE, check_make_variable

OptionKind = Literal["flag", "value", "path", "optional"]
OperandKind = Literal["paths", "text", "none", "make"]


class CommandPolicy(BaseModel):
    """Options and operands one program (or one of its subcommands) accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    options: dict[str, OptionKind] = Field(
        default_factory=dict, description="'-l', '--format', ... -> kind of the option"
    )
    operands: OperandKind = "paths"
    subcommands: dict[str, CommandPolicy] | None = Field(
        default=None, description="set: the first operand must be one of these"
    )


class ArgumentRefused(ValueError):
    """An argument the program's policy does not allow; ``argument`` says which."""

    def __init__(self, program: str, argument: str, reason: str) -> None:
        super().__init__(f"{program}: argument {argument!r} refused: {reason}")
        self.program = program
        self.argument = argument


#: An allowlisted program nobody wrote a policy for: operands only, each inside the roots.
DEFAULT_POLICY = CommandPolicy()

# "scheme://", the transport syntax "helper::address", and scp-like "host:path".
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
_SCP_LIKE = re.compile(r"^[^/:]+@[^/:]+:")
ALLOWED_URL_SCHEMES = frozenset({"https"})

PathCheck = Callable[[str], None]
"""Raises unless the path (relative to the working directory) lies inside the roots."""


def check_argv(argv: list[str], policies: Mapping[str, CommandPolicy], path_ok: PathCheck) -> None:
    """Raise :class:`ArgumentRefused` unless ``argv[1:]`` fits ``argv[0]``'s policy."""
    program = argv[0]
    policy = policies.get(program, DEFAULT_POLICY)
    rest = iter(argv[1:])
    options_done = False
    for arg in rest:
        if not options_done and arg == "--":
            options_done = True
            continue
        if not options_done and arg.startswith("-") and arg != "-":
            _check_option(program, policy, arg, rest, path_ok)
            continue
        if policy.subcommands is not None:
            sub = policy.subcommands.get(arg)
            if sub is None:
                allowed = ", ".join(sorted(policy.subcommands))
                raise ArgumentRefused(program, arg, f"not an allowed subcommand ({allowed})")
            # The program's own options stay valid after the subcommand (kubectl get -n x).
            merged = {**policy.options, **sub.options}
            program, options_done = f"{program} {arg}", False
            policy = sub.model_copy(update={"options": merged})
            continue
        _check_operand(program, policy.operands, arg, path_ok)


def _check_option(
    program: str, policy: CommandPolicy, arg: str, rest: object, path_ok: PathCheck
) -> None:
    if arg.startswith("--"):
        name, eq, value = arg.partition("=")
        kind = policy.options.get(name)
        if kind is None:
            raise ArgumentRefused(program, arg, "unknown option")
        if kind == "flag" and eq:
            raise ArgumentRefused(program, arg, f"{name} takes no value")
        if kind in ("value", "path"):
            if not eq:
                value = _next_value(program, name, rest)
            _check_value(program, kind, name, value, path_ok)
        return
    if arg in policy.options:  # a whole short option such as "-n" or "-U"
        kind = policy.options[arg]
        if kind in ("value", "path"):
            _check_value(program, kind, arg, _next_value(program, arg, rest), path_ok)
        return
    # A cluster of short options: "-la", "-n5", "-U3".
    for index, letter in enumerate(arg[1:], start=1):
        name = f"-{letter}"
        kind = policy.options.get(name)
        if kind is None:
            raise ArgumentRefused(program, arg, f"unknown option {name}")
        if kind in ("value", "path", "optional"):
            value = arg[index + 1 :]
            if not value and kind != "optional":
                value = _next_value(program, name, rest)
            if value:
                _check_value(program, "value" if kind == "optional" else kind, name, value, path_ok)
            return


def _next_value(program: str, name: str, rest: object) -> str:
    value = next(rest, None)  # type: ignore[call-overload]
    if value is None:
        raise ArgumentRefused(program, name, "needs a value")
    return str(value)


def _check_value(program: str, kind: OptionKind, name: str, value: str, path_ok: PathCheck) -> None:
    if kind == "path":
        _check_path(program, value, path_ok)


def _check_operand(program: str, kind: OperandKind, arg: str, path_ok: PathCheck) -> None:
    if kind == "none":
        raise ArgumentRefused(program, arg, "takes no operands")
    if kind == "text":
        return
    if kind == "make":
        name, eq, value = arg.partition("=")
        if eq:
            try:
                check_make_variable(name, value)
            except ValueError as exc:
                raise ArgumentRefused(program, arg, str(exc)) from None
        elif not MAKE_TARGET_RE.match(arg):
            raise ArgumentRefused(program, arg, "not a make target name")
        return
    _check_path(program, arg, path_ok)


def _check_path(program: str, arg: str, path_ok: PathCheck) -> None:
    if "::" in arg:
        raise ArgumentRefused(program, arg, "transport syntax '::' is not allowed")
    url = _URL.match(arg)
    if url:
        if url.group("scheme").lower() not in ALLOWED_URL_SCHEMES:
            raise ArgumentRefused(program, arg, "only https:// URLs are allowed")
        return
    if _SCP_LIKE.match(arg):
        raise ArgumentRefused(program, arg, "ssh remotes are not allowed")
    try:
        path_ok(arg)
    except ValueError as exc:
        raise ArgumentRefused(program, arg, str(exc)) from None


# --- environment ------------------------------------------------------------------------

# Variables that change what a program loads or runs, whatever the passthrough list says.
_NEVER_PASSED = re.compile(
    r"^(?:GIT_.*|LD_.*|BASH_ENV|ENV|MAKEFLAGS|MFLAGS|GNUMAKEFLAGS|MAKEFILES|MAKELEVEL|"
    r"PYTHONSTARTUP|PYTHONPATH|PERL5OPT|RUBYOPT|NODE_OPTIONS|SSH_ASKPASS|EDITOR|VISUAL|"
    r"PAGER|SHELLOPTS|BASHOPTS|PS4|IFS)$"
)

#: git configuration forced on every run; command-line-level config wins over the
#: repository's own ``.git/config`` (defence in depth: the file tools refuse ``.git/``).
GIT_FORCED_CONFIG = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.sshCommand", "false"),
    ("core.pager", "cat"),
    ("core.editor", "false"),
    ("core.askPass", "false"),
    ("diff.external", ""),
    ("protocol.allow", "never"),
    ("protocol.https.allow", "always"),
    ("protocol.file.allow", "always"),
    # .gitmodules comes with the repository: its URLs may name paths outside the roots.
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    # Programs git would start on its own: credential helpers, signing, signature display.
    ("credential.helper", ""),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("gpg.program", "false"),
)


def program_environment(program: str, base: Mapping[str, str]) -> dict[str, str]:
    """The environment ``program`` runs with: ``base`` minus dangerous variables, plus
    git's hardening (no system or global config, a protocol allowlist, no prompts)."""
    env = {k: v for k, v in base.items() if not _NEVER_PASSED.match(k)}
    if program == "git":
        env.update(
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_ALLOW_PROTOCOL="https:file",
            GIT_TERMINAL_PROMPT="0",
            GIT_PAGER="cat",
            GIT_CONFIG_COUNT=str(len(GIT_FORCED_CONFIG)),
        )
        for index, (key, value) in enumerate(GIT_FORCED_CONFIG):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def inside(path: Path, roots: list[Path]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies below one."""
    return any(path == root or path.is_relative_to(root) for root in roots)
