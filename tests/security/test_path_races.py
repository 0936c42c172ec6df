"""Attack table of the file tools (issue 14, V11): a directory swapped for a symbolic link
between the check and the open, hard links, and OS errors that must be tool errors.

The race runs once with ``openat2`` (when the kernel has it) and once with the
``O_NOFOLLOW`` walk that replaces it elsewhere; both must give 0 reads and 0 writes
outside the root.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from schemas.tools.desktop_commander import (
    CheckFileExistsArgs,
    ExecuteCommandArgs,
    ListDirectoryArgs,
    ReadFileArgs,
    WriteFileArgs,
)
from tests.reports import report
from tests.security.conftest import MARKER
from tools.adapters.confined_fs import openat2_available
from tools.adapters.desktop_commander import DesktopCommanderConfig, DesktopCommanderServer
from tools.errors import ToolError

TRIES = 300  # per operation; the outside attack needed 847 tries for 117 escapes
TIME_BUDGET = 20.0  # seconds per resolver, whatever TRIES says


async def call(server: DesktopCommanderServer, tool: str, args: Any) -> Any:
    """Call a tool through its bound method, as the registry would."""
    bound = {t.spec.name: t for t in server.tools()}[f"desktop-commander.{tool}"]
    return await bound.call(args)


def make_server(root: Path, resolver: str) -> DesktopCommanderServer:
    """A server on ``root`` using ``resolver`` ("openat2" or "walk")."""
    server = DesktopCommanderServer(
        DesktopCommanderConfig(roots=[root], allowed_executables=["ls"])
    )
    fs = getattr(server, "fs", None)
    if fs is not None:
        fs.use_openat2 = resolver == "openat2"
    return server


_libc = ctypes.CDLL(None, use_errno=True)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> None:
    """Swap two names atomically (``renameat2(RENAME_EXCHANGE)``, glibc 2.28+)."""
    if _libc.renameat2(_AT_FDCWD, bytes(a), _AT_FDCWD, bytes(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class Swapper(threading.Thread):
    """Swaps ``root/d`` (a directory) with a link to ``outside``, atomically, until stopped:
    ``root/d`` always exists and is, at any instant, one or the other."""

    def __init__(self, root: Path, outside: Path) -> None:
        super().__init__(daemon=True)
        self.d, self.link = root / "d", root / "d-link"
        self.link.symlink_to(outside)
        self.stop = threading.Event()
        self.flips = 0

    def run(self) -> None:
        while not self.stop.is_set():
            exchange(self.d, self.link)
            self.flips += 1
            time.sleep(0)
        if self.flips % 2:  # leave the directory in place
            exchange(self.d, self.link)


@pytest.mark.parametrize("resolver", ["openat2", "walk"])
async def test_directory_swapped_for_a_symlink_never_leads_outside(
    tmp_path: Path, resolver: str
) -> None:
    if resolver == "openat2" and not openat2_available():
        pytest.fail("openat2 is not available on this kernel; the walk variant still runs")
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("inside\n")
    (root / "d" / "sub").mkdir()
    outside.mkdir()
    (outside / "f.txt").write_text(f"{MARKER}\n")
    outside_size = (outside / "f.txt").stat().st_size  # differs from the inside file's
    (outside / "sub").mkdir()
    (outside / f"{MARKER}.name").write_text("x")
    server = make_server(root, resolver)
    swapper = Swapper(root, outside)
    counts = {"tries": 0, "reads_outside": 0, "writes_outside": 0, "raw_errors": 0, "ok": 0}
    raw: list[str] = []

    async def attempt(tool: str, args: Any) -> Any:
        counts["tries"] += 1
        try:
            result = await call(server, tool, args)
        except ToolError:
            return None
        except Exception as exc:  # an OSError the adapter did not map
            counts["raw_errors"] += 1
            raw.append(f"{tool}: {exc!r}")
            return None
        counts["ok"] += 1
        return result

    swapper.start()
    deadline = time.monotonic() + TIME_BUDGET
    try:
        for i in range(TRIES):
            if time.monotonic() > deadline:
                break
            read = await attempt("read_file", ReadFileArgs(path="d/f.txt"))
            if read is not None and MARKER in read.content:
                counts["reads_outside"] += 1
            listed = await attempt("list_directory", ListDirectoryArgs(path="d"))
            if listed is not None and any(MARKER in e.path for e in listed.entries):
                counts["reads_outside"] += 1
            await attempt("write_file", WriteFileArgs(path=f"d/w{i}.txt", content="x"))
            await attempt(
                "write_file", WriteFileArgs(path=f"d/sub/n{i}/w.txt", content="x", create_dirs=True)
            )
            found = await attempt("check_file_exists", CheckFileExistsArgs(path="d/f.txt"))
            if found is not None and found.size == outside_size:  # metadata from outside
                counts["reads_outside"] += 1
            if i % 5 == 0:  # a program started in the swapped directory
                ran = await attempt(
                    "execute_command", ExecuteCommandArgs(command="ls", working_directory="d")
                )
                if ran is not None and MARKER in ran.stdout:
                    counts["reads_outside"] += 1
    finally:
        swapper.stop.set()
        await asyncio.to_thread(swapper.join)
    written = [p for p in outside.rglob("*") if p.name.startswith(("w", "n"))]
    counts["writes_outside"] = len(written)
    report(
        f"security-path-race-{resolver}",
        f"tries={counts['tries']} flips={swapper.flips} succeeded={counts['ok']} "
        f"reads_outside_roots={counts['reads_outside']} "
        f"writes_outside_roots={counts['writes_outside']} raw_os_errors={counts['raw_errors']}",
    )
    assert swapper.flips > 0 and counts["ok"] > 0  # the race really ran, and calls got through
    assert (counts["reads_outside"], counts["writes_outside"]) == (0, 0), written
    assert raw == []


async def test_hard_linked_files_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(f"{MARKER}\n")
    os.link(secret, root / "h.txt")
    server = make_server(root, "walk")
    for resolver in ("openat2", "walk") if openat2_available() else ("walk",):
        server.fs.use_openat2 = resolver == "openat2"
        with pytest.raises(ToolError, match="hard link"):
            await call(server, "read_file", ReadFileArgs(path="h.txt"))
        for mode in ("overwrite", "append"):
            with pytest.raises(ToolError, match="hard link"):
                await call(
                    server, "write_file", WriteFileArgs(path="h.txt", content="x", mode=mode)
                )
    assert secret.read_text() == f"{MARKER}\n"


async def test_os_errors_are_tool_errors(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("a")
    (root / "dir").mkdir()
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    server = make_server(root, "walk")
    long = "x" * 300
    cases: list[tuple[str, Any]] = [
        ("read_file", ReadFileArgs(path="a.txt/x")),
        ("read_file", ReadFileArgs(path=long)),
        ("read_file", ReadFileArgs(path="fifo")),  # must not block on the FIFO
        ("read_file", ReadFileArgs(path="sock")),
        ("read_file", ReadFileArgs(path="dir")),
        ("read_file", ReadFileArgs(path="missing/x")),
        ("write_file", WriteFileArgs(path="dir", content="x")),
        ("write_file", WriteFileArgs(path="fifo", content="x")),
        ("write_file", WriteFileArgs(path="a.txt/x", content="x", create_dirs=True)),
        ("write_file", WriteFileArgs(path=f"{long}/x", content="x", create_dirs=True)),
        ("write_file", WriteFileArgs(path="missing/x", content="x")),
        ("write_file", WriteFileArgs(path=".", content="x")),
        ("list_directory", ListDirectoryArgs(path="a.txt")),
        ("list_directory", ListDirectoryArgs(path=long)),
        ("list_directory", ListDirectoryArgs(path="missing")),
        ("check_file_exists", CheckFileExistsArgs(path=long)),
        ("check_file_exists", CheckFileExistsArgs(path="a.txt/x")),
        ("execute_command", ExecuteCommandArgs(command="ls", working_directory="a.txt")),
        ("execute_command", ExecuteCommandArgs(command="ls", working_directory=long)),
        ("execute_command", ExecuteCommandArgs(command="ls", working_directory="missing")),
    ]
    raw: list[str] = []
    try:
        for resolver in ("openat2", "walk") if openat2_available() else ("walk",):
            server.fs.use_openat2 = resolver == "openat2"
            for tool, args in cases:
                try:
                    await asyncio.wait_for(call(server, tool, args), 5)
                except ToolError:
                    pass
                except Exception as exc:
                    raw.append(f"{resolver} {tool}({args}): {exc!r}")
    finally:
        sock.close()
    report("security-os-errors", f"cases={len(cases)} raw_os_errors={len(raw)}")
    assert raw == []
