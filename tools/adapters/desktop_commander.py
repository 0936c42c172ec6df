"""The ``desktop-commander`` tool server: a guarded runner for local programs and files.

What keeps it safe:

* No shell, ever. A string command is split into words with :func:`shlex.split` and run
  with ``asyncio.create_subprocess_exec``; ``;``, ``|``, ``$(...)``, backticks and newlines
  are plain characters in an argument.
* An executable allowlist. ``argv[0]`` is resolved (``shutil.which`` on a search path
  that never contains the working directory, or a path relative to it) and its real
  path, symlinks resolved, must be the real path of an allowlisted entry *under the same
  name*: a multi-call binary such as busybox that is allowed as ``echo`` cannot be run as
  ``sh``. The resolved file is what runs, with ``argv[0]`` set to that name.
* Roots. Every path (working directory, files) must, after ``os.path.realpath``, lie
  inside one of the configured roots, so ``..`` and symlinks cannot lead out. Files are
  then opened with ``O_NOFOLLOW`` so a symlink swapped in after the check is refused.
* Bounds. A timeout kills the whole process group; stdout and stderr are capped.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shlex
import shutil
import signal
import stat
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.tools.desktop_commander import (
    CheckFileExistsArgs,
    CheckFileExistsResult,
    CommandResult,
    DirectoryEntry,
    ExecuteCommandArgs,
    ListDirectoryArgs,
    ListDirectoryResult,
    MakeCommandArgs,
    ReadFileArgs,
    ReadFileResult,
    WriteFileArgs,
    WriteFileResult,
)
from tools.errors import ToolArgumentError, ToolFailed, ToolTimeout
from tools.spec import ToolServer, tool

SERVER = "desktop-commander"
_CHUNK = 64 * 1024


class DesktopCommanderConfig(BaseModel):
    """Allowlist, roots and limits of the runner."""

    model_config = ConfigDict(extra="forbid")

    allowed_executables: list[str] = Field(
        default_factory=list, description="command names (looked up on search_path) or paths"
    )
    roots: list[Path] = Field(min_length=1, description="directories every path must stay in")
    default_timeout: float = Field(default=30.0, gt=0)
    max_timeout: float = Field(default=600.0, gt=0)
    max_output_bytes: int = Field(default=1024 * 1024, gt=0, description="per stream")
    max_read_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_list_entries: int = Field(default=5000, gt=0)
    env_passthrough: list[str] = Field(
        default_factory=lambda: ["PATH", "HOME", "LANG", "LC_ALL", "TZ"],
        description="environment variables handed to programs; nothing else is",
    )
    search_path: str | None = Field(default=None, description="None: this process's PATH")

    @field_validator("roots")
    @classmethod
    def _absolute(cls, roots: list[Path]) -> list[Path]:
        for root in roots:
            if not root.is_absolute():
                raise ValueError(f"root {str(root)!r} must be an absolute path")
        return roots


class ExecutableNotAllowed(ToolFailed):
    """``argv[0]`` is not on the allowlist (or cannot be found)."""

    def __init__(self, executable: str, reason: str, *, tool: str) -> None:
        message = f"executable {executable!r} is not allowed: {reason}"
        super().__init__(message, tool=tool, status=403)
        self.executable = executable


class PathOutsideRoots(ToolFailed):
    """A path resolves to somewhere outside every configured root."""

    def __init__(self, path: str, *, tool: str) -> None:
        super().__init__(f"path {path!r} is outside the allowed roots", tool=tool, status=403)
        self.path = path


def split_command(command: str | list[str]) -> list[str]:
    """argv for ``command``: a string is split into words like a POSIX shell, nothing more."""
    if isinstance(command, list):
        return list(command)
    try:
        argv = shlex.split(command, posix=True)
    except ValueError as exc:  # unbalanced quotes
        raise ToolArgumentError(
            f"cannot split command: {exc}", tool=f"{SERVER}.execute_command", fields=("command",)
        ) from exc
    if not argv:
        raise ToolArgumentError(
            "command is empty", tool=f"{SERVER}.execute_command", fields=("command",)
        )
    return argv


def make_argv(args: MakeCommandArgs) -> list[str]:
    """``make <target> VAR=value ...``; ``$`` doubled so make never expands a value."""
    # Without the doubling, VAR='$(shell rm -rf x)' would run when the Makefile uses $(VAR).
    assignments = [f"{key}={value.replace('$', '$$')}" for key, value in args.variables.items()]
    return ["make", args.target, *assignments]


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _os_failure(exc: OSError, path: str, tool: str) -> ToolFailed:
    if isinstance(exc, FileNotFoundError):
        status = 404
    elif isinstance(exc, PermissionError):
        status = 403
    else:
        status = 400
    return ToolFailed(f"{path}: {exc.strerror or exc}", tool=tool, status=status)


class DesktopCommanderServer(ToolServer):
    """Runs allowlisted programs and touches files, all inside the configured roots."""

    name = SERVER

    def __init__(self, config: DesktopCommanderConfig) -> None:
        self.config = config
        self.roots = [Path(os.path.realpath(root)) for root in config.roots]

    # --- policy --------------------------------------------------------------------

    def resolve_path(self, raw: str, tool: str) -> Path:
        """The real path of ``raw`` (relative to the first root), if inside the roots."""
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate
        real = Path(os.path.realpath(candidate))
        if not _within(real, self.roots):
            raise PathOutsideRoots(raw, tool=tool)
        return real

    def _search_dirs(self) -> str:
        raw = self.config.search_path
        if raw is None:
            raw = os.environ.get("PATH", os.defpath)
        # "" and relative entries mean "the working directory": a planted ./ls must not win.
        return os.pathsep.join(d for d in raw.split(os.pathsep) if d and os.path.isabs(d))

    def _locate(self, name: str, cwd: Path) -> str | None:
        if "/" in name:
            return os.path.normpath(os.path.join(cwd, name))
        found = shutil.which(name, path=self._search_dirs())
        return None if found is None else os.path.normpath(os.path.abspath(found))

    def resolve_executable(self, name: str, cwd: Path, tool: str) -> tuple[str, str]:
        """``(argv0, real path)`` to run for ``name``, or :class:`ExecutableNotAllowed`."""
        found = self._locate(name, cwd)
        if found is None or not os.path.isfile(found):
            raise ExecutableNotAllowed(name, "not found", tool=tool)
        # Resolved at call time: the allowlist follows what the names point to now.
        allowed: set[tuple[str, str]] = set()
        for entry in self.config.allowed_executables:
            located = self._locate(entry, Path("/"))
            if located is not None:
                allowed.add((os.path.realpath(located), os.path.basename(located)))
        real = os.path.realpath(found)
        argv0 = os.path.basename(found)
        if (real, argv0) not in allowed:
            raise ExecutableNotAllowed(name, f"resolves to {real}, not on the allowlist", tool=tool)
        if not os.access(real, os.X_OK):
            raise ExecutableNotAllowed(name, f"{real} is not executable", tool=tool)
        return argv0, real

    def _working_directory(self, raw: str | None, tool: str) -> Path:
        cwd = self.resolve_path(raw, tool) if raw is not None else self.roots[0]
        if not cwd.is_dir():
            raise ToolArgumentError(
                f"working_directory {raw!r} is not a directory",
                tool=tool,
                fields=("working_directory",),
            )
        return cwd

    def _timeout(self, value: float | None, tool: str) -> float:
        limit = value or self.config.default_timeout
        if limit > self.config.max_timeout:
            raise ToolArgumentError(
                f"timeout {limit}s exceeds the maximum {self.config.max_timeout}s",
                tool=tool,
                fields=("timeout",),
            )
        return limit

    # --- processes -----------------------------------------------------------------

    async def run_argv(
        self, argv: list[str], cwd: Path, timeout: float, tool: str
    ) -> CommandResult:
        """Run ``argv`` (allowlist checked) in ``cwd``; capped output, group killed on timeout."""
        argv0, real = self.resolve_executable(argv[0], cwd, tool)
        env = {k: os.environ[k] for k in self.config.env_passthrough if k in os.environ}
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                argv0,
                *argv[1:],
                executable=real,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # own process group: a timeout kills all of it
            )
        except OSError as exc:
            raise _os_failure(exc, real, tool) from exc
        assert proc.stdout is not None and proc.stderr is not None
        limit = self.config.max_output_bytes
        readers = asyncio.gather(_drain(proc.stdout, limit), _drain(proc.stderr, limit))
        try:
            async with asyncio.timeout(timeout):
                exit_code = await proc.wait()
                # Children left in the group would hold the pipes open; they go with the leader.
                _kill_group(proc.pid)
                (out, out_cut), (err, err_cut) = await readers
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            readers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await readers
            raise ToolTimeout(
                f"{argv0} did not finish within {timeout}s; its process group was killed",
                tool=tool,
            ) from None
        except BaseException:  # cancelled: the programs must not outlive the call
            _kill_group(proc.pid)
            readers.cancel()
            raise
        return CommandResult(
            argv=[argv0, *argv[1:]],
            exit_code=exit_code,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            duration_seconds=round(time.monotonic() - started, 4),
            truncated=out_cut or err_cut,
        )

    @tool()
    async def execute_command(self, args: ExecuteCommandArgs) -> CommandResult:
        """Run one allowlisted program (never through a shell) and return its output."""
        name = f"{SERVER}.execute_command"
        argv = split_command(args.command)
        cwd = self._working_directory(args.working_directory, name)
        return await self.run_argv(argv, cwd, self._timeout(args.timeout, name), name)

    @tool()
    async def make_command(self, args: MakeCommandArgs) -> CommandResult:
        """Run ``make <target>`` with variables (``make`` must be allowlisted)."""
        name = f"{SERVER}.make_command"
        cwd = self._working_directory(args.working_directory, name)
        return await self.run_argv(make_argv(args), cwd, self._timeout(args.timeout, name), name)

    # --- files ---------------------------------------------------------------------

    @tool(read_only=True)
    async def read_file(self, args: ReadFileArgs) -> ReadFileResult:
        """Read a text file inside the roots, up to a byte limit."""
        name = f"{SERVER}.read_file"
        path = self.resolve_path(args.path, name)
        limit = min(args.max_bytes or self.config.max_read_bytes, self.config.max_read_bytes)
        try:
            data, size = await asyncio.to_thread(_read_bytes, path, limit)
        except OSError as exc:
            raise _os_failure(exc, args.path, name) from exc
        truncated = size > limit
        try:
            # A cut may split a multi-byte character: decode the cut text as unfinished.
            text = codecs.getincrementaldecoder(args.encoding)().decode(data, final=not truncated)
        except UnicodeDecodeError as exc:
            raise ToolFailed(
                f"{args.path} is not {args.encoding} text: {exc.reason}", tool=name, status=400
            ) from exc
        return ReadFileResult(path=str(path), content=text, size=size, truncated=truncated)

    @tool()
    async def write_file(self, args: WriteFileArgs) -> WriteFileResult:
        """Write or append text to a file inside the roots."""
        name = f"{SERVER}.write_file"
        path = self.resolve_path(args.path, name)
        data = args.content.encode(args.encoding)
        try:
            if args.create_dirs:
                await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
                # Re-check: a directory created on the way might have been swapped for a link.
                self.resolve_path(str(path.parent), name)
            await asyncio.to_thread(_write_bytes, path, data, args.mode == "append")
        except OSError as exc:
            raise _os_failure(exc, args.path, name) from exc
        return WriteFileResult(path=str(path), bytes_written=len(data))

    @tool(read_only=True)
    async def list_directory(self, args: ListDirectoryArgs) -> ListDirectoryResult:
        """List a directory inside the roots; symlinks are listed, never followed."""
        name = f"{SERVER}.list_directory"
        path = self.resolve_path(args.path, name)
        depth = args.max_depth if args.recursive else 1
        try:
            entries, truncated = await asyncio.to_thread(
                _walk, path, depth, self.config.max_list_entries
            )
        except OSError as exc:
            raise _os_failure(exc, args.path, name) from exc
        return ListDirectoryResult(path=str(path), entries=entries, truncated=truncated)

    @tool(read_only=True)
    async def check_file_exists(self, args: CheckFileExistsArgs) -> CheckFileExistsResult:
        """Whether a path inside the roots exists, and whether it is a file or directory."""
        path = self.resolve_path(args.path, f"{SERVER}.check_file_exists")
        try:
            info = path.stat()
        except OSError:
            return CheckFileExistsResult(path=str(path), exists=False)
        return CheckFileExistsResult(
            path=str(path),
            exists=True,
            is_file=stat.S_ISREG(info.st_mode),
            is_directory=stat.S_ISDIR(info.st_mode),
            size=info.st_size,
        )


# --- helpers run in threads or on the loop ---------------------------------------------


async def _drain(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Keep the first ``limit`` bytes; keep reading past it so the writer never blocks."""
    kept = bytearray()
    cut = False
    while chunk := await stream.read(_CHUNK):
        room = limit - len(kept)
        if len(chunk) > room:
            cut = True
        if room > 0:
            kept += chunk[:room]
    return bytes(kept), cut


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _read_bytes(path: Path, limit: int) -> tuple[bytes, int]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(21, "not a regular file")
        return handle.read(limit), info.st_size


def _write_bytes(path: Path, data: bytes, append: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if append else os.O_TRUNC
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _walk(root: Path, depth: int, limit: int) -> tuple[list[DirectoryEntry], bool]:
    entries: list[DirectoryEntry] = []
    pending: list[tuple[Path, str, int]] = [(root, "", 1)]
    while pending:
        directory, prefix, level = pending.pop(0)
        with os.scandir(directory) as scan:
            items = sorted(scan, key=lambda e: e.name)
        for item in items:
            if len(entries) >= limit:
                return entries, True
            rel = f"{prefix}{item.name}"
            if item.is_symlink():
                entries.append(DirectoryEntry(path=rel, type="symlink"))
            elif item.is_dir(follow_symlinks=False):
                entries.append(DirectoryEntry(path=rel, type="directory"))
                if level < depth:
                    pending.append((Path(item.path), f"{rel}/", level + 1))
            elif item.is_file(follow_symlinks=False):
                size = item.stat(follow_symlinks=False).st_size
                entries.append(DirectoryEntry(path=rel, type="file", size=size))
            else:
                entries.append(DirectoryEntry(path=rel, type="other"))
    return entries, False
