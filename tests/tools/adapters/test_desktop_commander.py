"""The ``desktop-commander`` runner: allowlist, no shell, roots, bounds; and its fake."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.tools.desktop_commander import (
    CheckFileExistsArgs,
    CommandResult,
    ExecuteCommandArgs,
    ListDirectoryArgs,
    MakeCommandArgs,
    ReadFileArgs,
    WriteFileArgs,
)
from tools.adapters.desktop_commander import (
    ArgumentNotAllowed,
    DesktopCommanderConfig,
    DesktopCommanderServer,
    ExecutableNotAllowed,
    PathOutsideRoots,
)
from tools.errors import ToolArgumentError, ToolFailed, ToolTimeout
from tools.fakes.desktop_commander import FakeDesktopCommanderServer


async def call(server: Any, tool: str, args: BaseModel) -> Any:
    """Call ``desktop-commander.<tool>`` through its bound method, as the registry would."""
    bound = {t.spec.name: t for t in server.tools()}[f"desktop-commander.{tool}"]
    return await bound.call(args)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The only root of the server under test."""
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the root, with a secret in it."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("top secret")
    return path


def server_for(root: Path, *allowed: str, **config: Any) -> DesktopCommanderServer:
    """A real server whose single root is ``root``."""
    return DesktopCommanderServer(
        DesktopCommanderConfig(roots=[root], allowed_executables=list(allowed), **config)
    )


def real_paths(*names: str) -> set[str]:
    """Real paths of commands on this process's PATH."""
    return {os.path.realpath(shutil.which(n) or "") for n in names}


def process_state(pid: int) -> str | None:
    """The state letter of a process (``Z`` for zombie), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return None


# --- command injection ---------------------------------------------------------------

INJECTIONS = [
    "echo hi; touch {canary}",
    "echo $(touch {canary})",
    "echo `touch {canary}`",
    "echo hi && touch {canary}",
    "echo hi || touch {canary}",
    "echo hi | sh -c 'touch {canary}'",
    "echo hi > {canary}",
    "echo hi\ntouch {canary}",
    "ls; touch {canary}",
    "sh -c 'touch {canary}'",
    "/bin/sh -c 'touch {canary}'",
    "../../../../../../../../../../bin/sh -c 'touch {canary}'",
    "./echo -c 'touch {canary}'",  # planted symlink named like an allowed command
    "ls -c 'touch {canary}'",  # planted ./ls must not shadow the real one
    "PATH=. echo -c 'touch {canary}'",
    "env sh -c 'touch {canary}'",
    "IFS=, echo,hi;touch,{canary}",
    "$(which sh) -c 'touch {canary}'",
    "busybox sh -c 'touch {canary}'",
    ["sh", "-c", "touch {canary}"],
    ["echo", "hi", ";", "touch", "{canary}"],
]


@pytest.mark.parametrize("command", INJECTIONS, ids=range(len(INJECTIONS)))
async def test_command_injection_runs_nothing_outside_the_allowlist(
    command: str | list[str], root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = root / "CANARY"
    # Programs planted in the working directory, named like allowed commands.
    (root / "echo").symlink_to("/bin/sh")
    (root / "ls").symlink_to("/bin/sh")
    # A search path with "." and an empty entry: both mean the working directory.
    server = server_for(root, "echo", "ls", search_path=f".::{os.environ['PATH']}")
    allowed = real_paths("echo", "ls")
    launched: list[str] = []
    real_exec = asyncio.create_subprocess_exec

    async def spy(*argv: Any, **kwargs: Any) -> Any:
        launched.append(kwargs["executable"])
        return await real_exec(*argv, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spy)
    if isinstance(command, list):
        args = ExecuteCommandArgs(command=[part.format(canary=canary) for part in command])
    else:
        args = ExecuteCommandArgs(command=command.format(canary=canary))

    try:
        result = await call(server, "execute_command", args)
    except (ExecutableNotAllowed, ArgumentNotAllowed, ToolArgumentError):
        assert launched == []
    else:
        assert result.argv[0] in {"echo", "ls"}
        assert set(launched) <= allowed and len(launched) == 1
    assert not canary.exists()


async def test_echo_gets_metacharacters_as_plain_words(root: Path) -> None:
    server = server_for(root, "echo")
    result = await call(server, "execute_command", ExecuteCommandArgs(command="echo a;b $(c) `d`"))
    assert result.stdout == "a;b $(c) `d`\n"
    assert result.exit_code == 0 and not result.truncated


async def test_rejection_names_the_executable(root: Path) -> None:
    with pytest.raises(ExecutableNotAllowed) as caught:
        await call(server_for(root, "echo"), "execute_command", ExecuteCommandArgs(command="cat x"))
    assert caught.value.executable == "cat"
    assert "'cat'" in str(caught.value) and caught.value.status == 403


async def test_environment_is_only_the_passthrough(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEBUS_SECRET", "hunter2")
    server = server_for(root, "env", env_passthrough=["PATH"])
    result = await call(server, "execute_command", ExecuteCommandArgs(command=["env"]))
    assert "hunter2" not in result.stdout
    assert [line.split("=")[0] for line in result.stdout.splitlines()] == ["PATH"]


# --- bounds --------------------------------------------------------------------------


# An operator who allowlists a shell must say so in its policy: ``sh -c`` runs anything.
SH_POLICY = {"sh": {"options": {"-c": "value"}, "operands": "text"}}


async def test_timeout_kills_the_whole_process_group(root: Path) -> None:
    server = server_for(root, "sh", argument_policies=SH_POLICY)
    script = "sleep 30 & echo $! > child.pid; wait"
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        await call(
            server, "execute_command", ExecuteCommandArgs(command=["sh", "-c", script], timeout=0.5)
        )
    assert time.monotonic() - started < 3
    child = int((root / "child.pid").read_text())
    # The backgrounded grandchild died with the group (a zombie awaiting its reaper is dead).
    for _ in range(50):
        if process_state(child) in {None, "Z"}:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail(f"grandchild {child} still running")


async def test_timeout_above_the_maximum_is_refused(root: Path) -> None:
    server = server_for(root, "sleep", max_timeout=5)
    with pytest.raises(ToolArgumentError) as caught:
        await call(server, "execute_command", ExecuteCommandArgs(command="sleep 1", timeout=60))
    assert caught.value.fields == ("timeout",)


async def test_output_is_capped_and_flagged(root: Path) -> None:
    server = server_for(root, "seq", max_output_bytes=1000)
    result = await call(server, "execute_command", ExecuteCommandArgs(command="seq 1 200000"))
    assert result.exit_code == 0  # the program was drained to the end, not blocked
    assert result.truncated and len(result.stdout) == 1000
    assert result.stdout.startswith("1\n2\n3\n")


async def test_working_directory_must_be_inside_the_roots(root: Path, outside: Path) -> None:
    server = server_for(root, "ls")
    args = ExecuteCommandArgs(command="ls", working_directory=str(outside))
    with pytest.raises(PathOutsideRoots):
        await call(server, "execute_command", args)
    (root / "sub").mkdir()
    (root / "sub" / "f.txt").write_text("x")
    listed = await call(
        server, "execute_command", ExecuteCommandArgs(command="ls", working_directory="sub")
    )
    assert listed.stdout == "f.txt\n"


# --- make ----------------------------------------------------------------------------


async def test_make_runs_target_with_literal_variables(root: Path) -> None:
    (root / "Makefile").write_text("show:\n\t@echo V=$(V)\n")
    server = server_for(root, "make")
    value = "python3.11:a/b,c@d%e+f=g-h"
    result = await call(
        server, "make_command", MakeCommandArgs(target="show", variables={"V": value})
    )
    assert result.exit_code == 0
    assert result.stdout == f"V={value}\n"


@pytest.mark.parametrize(
    "value",
    ["$(shell touch x)", "touch x; true", "`touch x`", "a b", "-f", "$$x", "a|b", "a>b", "~"],
)
def test_make_variable_values_are_single_literal_words(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        MakeCommandArgs(target="show", variables={"V": value})
    assert caught.value.errors()[0]["loc"] == ("variables",)
    assert "value of V" in str(caught.value)


@pytest.mark.parametrize("name", ["SHELL", "MAKEFLAGS", "MAKEFILES", "MFLAGS", "VPATH"])
def test_make_variables_that_control_make_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=f"make variable {name} controls make"):
        MakeCommandArgs(target="show", variables={name: "x"})


async def test_make_needs_make_on_the_allowlist(root: Path) -> None:
    with pytest.raises(ExecutableNotAllowed) as caught:
        await call(server_for(root, "echo"), "make_command", MakeCommandArgs(target="all"))
    assert caught.value.executable == "make"


@pytest.mark.parametrize("target", ["-f/etc/passwd", "--eval=x", "a b", ""])
def test_make_target_cannot_be_an_option(target: str) -> None:
    with pytest.raises(ValidationError) as caught:
        MakeCommandArgs(target=target)
    assert caught.value.errors()[0]["loc"] == ("target",)


# --- files ---------------------------------------------------------------------------


async def test_write_read_append_and_create_dirs(root: Path) -> None:
    server = server_for(root)
    written = await call(
        server, "write_file", WriteFileArgs(path="a/b/c.txt", content="héllo\n", create_dirs=True)
    )
    assert written.bytes_written == len("héllo\n".encode())
    await call(
        server, "write_file", WriteFileArgs(path="a/b/c.txt", content="more\n", mode="append")
    )
    read = await call(server, "read_file", ReadFileArgs(path=str(root / "a/b/c.txt")))
    assert read.content == "héllo\nmore\n" and not read.truncated
    with pytest.raises(ToolFailed) as caught:
        await call(server, "write_file", WriteFileArgs(path="x/y.txt", content="no parent"))
    assert caught.value.status == 404


async def test_read_truncates_without_breaking_characters(root: Path) -> None:
    (root / "t.txt").write_text("aé" * 10)  # 'é' is two bytes
    read = await call(server_for(root), "read_file", ReadFileArgs(path="t.txt", max_bytes=5))
    # 5 bytes end inside the third character: it is dropped, not mangled.
    assert read.truncated and read.size == 30 and read.content == "aéa"
    (root / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ToolFailed, match="not utf-8 text"):
        await call(server_for(root), "read_file", ReadFileArgs(path="bin"))


@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "{outside}/secret.txt",
        "link/secret.txt",
        "file-link",
        "/etc/passwd",
    ],
)
async def test_paths_cannot_escape_the_roots(path: str, root: Path, outside: Path) -> None:
    (root / "link").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "secret.txt")
    server = server_for(root)
    target = path.format(outside=outside)
    with pytest.raises(PathOutsideRoots):
        await call(server, "read_file", ReadFileArgs(path=target))
    with pytest.raises(PathOutsideRoots):
        await call(server, "write_file", WriteFileArgs(path=target, content="pwned"))
    with pytest.raises(PathOutsideRoots):
        await call(server, "check_file_exists", CheckFileExistsArgs(path=target))
    assert (outside / "secret.txt").read_text() == "top secret"
    with pytest.raises(PathOutsideRoots):
        await call(server, "list_directory", ListDirectoryArgs(path="link"))


async def test_dotdot_inside_the_root_is_fine(root: Path) -> None:
    (root / "sub").mkdir()
    (root / "a.txt").write_text("A")
    server = server_for(root)
    read = await call(server, "read_file", ReadFileArgs(path="sub/../a.txt"))
    assert read.content == "A"
    found = await call(server, "check_file_exists", CheckFileExistsArgs(path="sub"))
    assert (found.exists, found.is_directory, found.is_file) == (True, True, False)
    missing = await call(server, "check_file_exists", CheckFileExistsArgs(path="nope"))
    assert not missing.exists


async def test_list_directory_depth_and_symlinks(root: Path, outside: Path) -> None:
    (root / "d1" / "d2" / "d3").mkdir(parents=True)
    (root / "d1" / "d2" / "d3" / "deep.txt").write_text("x")
    (root / "top.txt").write_text("12345")
    (root / "out").symlink_to(outside)
    server = server_for(root)
    flat = await call(server, "list_directory", ListDirectoryArgs(path="."))
    assert [(e.path, e.type) for e in flat.entries] == [
        ("d1", "directory"),
        ("out", "symlink"),
        ("top.txt", "file"),
    ]
    assert flat.entries[2].size == 5
    deep = await call(
        server, "list_directory", ListDirectoryArgs(path=".", recursive=True, max_depth=2)
    )
    paths = [e.path for e in deep.entries]
    assert "d1/d2" in paths and "d1/d2/d3" not in paths
    assert not any(p.startswith("out/") for p in paths)  # the symlink is not followed


def test_read_only_marks() -> None:
    server = FakeDesktopCommanderServer()
    specs = {t.spec.tool: t.spec.read_only for t in server.tools()}
    assert specs == {
        "execute_command": False,
        "make_command": False,
        "write_file": False,
        "read_file": True,
        "list_directory": True,
        "check_file_exists": True,
    }
    real = {
        t.spec.name
        for t in DesktopCommanderServer(DesktopCommanderConfig(roots=[Path("/")])).tools()
    }
    assert real == {t.spec.name for t in server.tools()}


# --- the fake ------------------------------------------------------------------------


async def test_fake_commands_are_canned_per_program() -> None:
    kubectl = CommandResult(
        argv=[], exit_code=1, stdout="", stderr="forbidden", duration_seconds=0, truncated=False
    )
    fake = FakeDesktopCommanderServer(
        allowed_executables=["kubectl", "echo"], results={"kubectl": kubectl}
    )
    result = await call(fake, "execute_command", ExecuteCommandArgs(command="kubectl create ns x"))
    assert (result.exit_code, result.stderr, result.argv) == (
        1,
        "forbidden",
        ["kubectl", "create", "ns", "x"],
    )
    echoed = await call(fake, "execute_command", ExecuteCommandArgs(command="echo a;b"))
    assert echoed.stdout == "a;b\n"
    with pytest.raises(ExecutableNotAllowed):
        await call(fake, "execute_command", ExecuteCommandArgs(command="sh -c x"))
    assert fake.commands == [["kubectl", "create", "ns", "x"], ["echo", "a;b"]]


async def test_fake_file_system_enforces_roots() -> None:
    fake = FakeDesktopCommanderServer(files={"/workspace/app/Makefile": "all:\n"})
    listed = await call(
        fake, "list_directory", ListDirectoryArgs(path="/workspace", recursive=True)
    )
    assert [(e.path, e.type) for e in listed.entries] == [
        ("app", "directory"),
        ("app/Makefile", "file"),
    ]
    await call(fake, "write_file", WriteFileArgs(path="app/out.txt", content="x"))
    read = await call(fake, "read_file", ReadFileArgs(path="/workspace/app/out.txt"))
    assert read.content == "x"
    with pytest.raises(PathOutsideRoots):
        await call(fake, "read_file", ReadFileArgs(path="../etc/passwd"))
    with pytest.raises(ToolFailed) as caught:
        await call(fake, "read_file", ReadFileArgs(path="missing"))
    assert caught.value.status == 404
    made = await call(fake, "make_command", MakeCommandArgs(target="build", variables={"V": "x"}))
    assert made.argv == ["make", "build", "V=x"]
    with pytest.raises(ArgumentNotAllowed):
        await call(fake, "execute_command", ExecuteCommandArgs(command="make --eval=x build"))
    with pytest.raises(ArgumentNotAllowed):
        await call(fake, "execute_command", ExecuteCommandArgs(command="ls /etc"))
    with pytest.raises(PathOutsideRoots, match="write-protected"):
        await call(fake, "write_file", WriteFileArgs(path="app/.git/config", content="x"))


@pytest.fixture
def busybox_bin(tmp_path: Path) -> Path:
    """A bin directory where ``echo`` and ``sh`` are both links to one busybox."""
    busybox = Path("/usr/bin/busybox")
    if not busybox.exists():
        pytest.skip("needs /usr/bin/busybox (Debian busybox-static)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for applet in ("echo", "sh"):
        (bin_dir / applet).symlink_to(busybox)
    return bin_dir


async def test_multi_call_binary_is_allowed_only_under_its_allowed_name(
    root: Path, busybox_bin: Path
) -> None:
    bin_dir = busybox_bin
    server = server_for(root, "echo", search_path=str(bin_dir))
    # Same real file as the allowed "echo", but it would run as a shell: refused.
    with pytest.raises(ExecutableNotAllowed):
        await call(server, "execute_command", ExecuteCommandArgs(command="sh -c 'touch CANARY'"))
    with pytest.raises(ExecutableNotAllowed):
        await call(server, "execute_command", ExecuteCommandArgs(command="busybox sh"))
    # The allowed name runs busybox as that applet (argv[0] is "echo").
    result = await call(server, "execute_command", ExecuteCommandArgs(command="echo hi"))
    assert result.stdout == "hi\n" and result.argv == ["echo", "hi"]
    assert not (root / "CANARY").exists()


# --- argument policies ---------------------------------------------------------------


async def test_everyday_git_make_and_ls_calls_pass_the_policy(tmp_path: Path) -> None:
    from tests.security.conftest import git_init

    root = tmp_path / "root"
    git_init(root / "web", {"Makefile": "test:\n\t@$(PYTHON) -c 'print(42)'\n"}, "first")
    (root / "web" / "sub").mkdir()
    server = server_for(root, "git", "make", "ls")
    web = str(root / "web")
    for command in [
        "git status --porcelain",
        "git --no-pager log --oneline -n 1",
        "git log -n1 --format=%s",
        "git diff --stat HEAD",
        "git rev-parse --abbrev-ref HEAD",
        "git branch --list",
        "git ls-files -z",
        "ls -la sub",
        "ls --color=never -- sub",
    ]:
        result = await call(
            server, "execute_command", ExecuteCommandArgs(command=command, working_directory=web)
        )
        assert result.exit_code == 0, (command, result.stderr)
    log = await call(
        server,
        "execute_command",
        ExecuteCommandArgs(command="git log -n 1 --format=%s", working_directory=web),
    )
    assert log.stdout == "first\n"
    cloned = await call(
        server,
        "execute_command",
        ExecuteCommandArgs(
            command=["git", "clone", "-q", web, "copy"], working_directory=str(root)
        ),
    )
    assert cloned.exit_code == 0, cloned.stderr and (root / "copy" / "Makefile").exists()
    made = await call(
        server,
        "make_command",
        MakeCommandArgs(target="test", working_directory=web, variables={"PYTHON": "python3"}),
    )
    assert (made.exit_code, made.stdout) == (0, "42\n")


async def test_git_runs_without_system_or_global_config(
    root: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.security.conftest import git_init

    (outside / ".gitconfig").write_text("[user]\n\tname = from-global-config\n")
    monkeypatch.setenv("HOME", str(outside))
    git_init(root, {"a": "a"}, "m")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.fsmonitor'='touch x'")
    argument_policies = {
        "git": {"subcommands": {"var": {"options": {"-l": "flag"}, "operands": "text"}}}
    }
    server = server_for(
        root,
        "git",
        env_passthrough=["PATH", "HOME", "GIT_CONFIG_PARAMETERS"],
        argument_policies=argument_policies,
    )
    ident = await call(server, "execute_command", ExecuteCommandArgs(command="git var -l"))
    assert "from-global-config" not in ident.stdout
    assert "core.fsmonitor=false" in ident.stdout and "core.hookspath=/dev/null" in ident.stdout
    assert not (root / "x").exists()


@pytest.mark.parametrize(
    ("command", "argument"),
    [
        ("git -c a.b=c status", "-c"),
        ("git status --ignored", "--ignored"),
        ("git log -1", "-1"),
        ("git notes list", "notes"),
        ("ls -I x", "-I"),
        ("ls /etc", "/etc"),
        ("make -j", "-j"),
        ("make 'a b'", "a b"),
        ("echo -e x", "-e"),
    ],
)
async def test_refusals_name_the_argument(root: Path, command: str, argument: str) -> None:
    server = server_for(root, "git", "make", "ls", "echo")
    with pytest.raises(ArgumentNotAllowed) as caught:
        await call(server, "execute_command", ExecuteCommandArgs(command=command))
    assert caught.value.argument == argument and caught.value.status == 403
    assert repr(argument) in str(caught.value)


async def test_a_program_without_a_policy_takes_no_options(root: Path) -> None:
    server = server_for(root, "cat", "echo")
    (root / "a.txt").write_text("a")
    assert (
        await call(server, "execute_command", ExecuteCommandArgs(command="cat a.txt"))
    ).stdout == "a"
    with pytest.raises(ArgumentNotAllowed, match="unknown option -n"):
        await call(server, "execute_command", ExecuteCommandArgs(command="cat -n a.txt"))
    # After "--" everything is an operand, and operands are paths inside the roots.
    with pytest.raises(ArgumentNotAllowed, match="outside the allowed roots"):
        await call(server, "execute_command", ExecuteCommandArgs(command="cat -- /etc/hostname"))
    # echo's operands are text, never opened.
    said = await call(server, "execute_command", ExecuteCommandArgs(command="echo /etc/hostname"))
    assert said.stdout == "/etc/hostname\n"


DOCS_TOOLS = Path(__file__).resolve().parents[3] / "docs" / "tools.md"


async def test_the_documented_policy_example_loads_and_applies() -> None:
    import re

    import yaml

    from workers.toolbox import ToolsFile

    docs = DOCS_TOOLS.read_text()
    block = re.search(r"```yaml\n(desktop_commander:\n  roots: \[/srv/repos\].*?)```", docs, re.S)
    assert block is not None
    config = ToolsFile.model_validate(yaml.safe_load(block.group(1))).desktop_commander
    assert config is not None
    fake = FakeDesktopCommanderServer(
        roots=["/srv/repos"],
        allowed_executables=config.allowed_executables,
        argument_policies=config.argument_policies,
    )
    ok = ExecuteCommandArgs(command="kubectl get pods -n staging -o json")
    assert (await call(fake, "execute_command", ok)).exit_code == 0
    for refused in ("kubectl delete pods x", "kubectl apply -f /etc/x.yaml", "kubectl get --raw /"):
        with pytest.raises(ArgumentNotAllowed):
            await call(fake, "execute_command", ExecuteCommandArgs(command=refused))
