"""The ``desktop-commander`` tool server: a guarded runner for local programs and files.

What keeps it safe (threat model and residual risks: ``docs/security.md``):

* No shell, ever. A string command is split into words with :func:`shlex.split` and run
  with ``asyncio.create_subprocess_exec``; ``;``, ``|``, ``$(...)``, backticks and newlines
  are plain characters in an argument.
* An executable allowlist. ``argv[0]`` is resolved (``shutil.which`` on a search path
  that never contains the working directory, or a path relative to it) and its real
  path, symlinks resolved, must be the real path of an allowlisted entry *under the same
  name*: a multi-call binary such as busybox that is allowed as ``echo`` cannot be run as
  ``sh``. The resolved file is what runs, with ``argv[0]`` set to that name.
* An argument policy per program (:mod:`tools.adapters.shell_policy`): allowed
  subcommands and options, unknown options refused, every path operand inside the roots;
  git runs without system or global config and with a protocol allowlist; make variables
  are single literal words. The environment is the passthrough list minus variables that
  make a program load or run something else.
* Roots. Files are opened from a descriptor of the root with no symbolic link followed on
  any component (:mod:`tools.adapters.confined_fs`); hard-linked files are refused; the
  working directory of a program is the directory opened that way.
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
    ExecuteCommandArgs,
    ListDirectoryArgs,
    ListDirectoryResult,
    MakeCommandArgs,
    ReadFileArgs,
    ReadFileResult,
    WriteFileArgs,
    WriteFileResult,
)
from tools.adapters.confined_fs import (
    ConfinedFS,
    HardLinked,
    PathEscape,
    read_bytes,
    walk,
    write_bytes,
)
from tools.adapters.shell_policy import (
    ArgumentRefused,
    CommandPolicy,
    check_argv,
    inside,
    program_environment,
)
from tools.adapters.shell_programs import BUILTIN_POLICIES
from tools.errors import ToolArgumentError, ToolError, ToolFailed, ToolTimeout
from tools.spec import ToolServer, tool

SERVER = "desktop-commander"
_CHUNK = 64 * 1024
# Where a program can be started in a directory given by descriptor (Linux /proc).
_PROC_FD = os.path.isdir("/proc/self/fd")


class DesktopCommanderConfig(BaseModel):
    """Allowlist, argument policies, roots and limits of the runner."""

    model_config = ConfigDict(extra="forbid")

    allowed_executables: list[str] = Field(
        default_factory=list, description="command names (looked up on search_path) or paths"
    )
    argument_policies: dict[str, CommandPolicy] = Field(
        default_factory=dict,
        description="program name -> policy; replaces the built-in one (git, make, ls, echo). "
        "A program with none takes no options and only operands inside the roots",
    )
    roots: list[Path] = Field(min_length=1, description="directories every path must stay in")
    write_protected: list[str] = Field(
        default_factory=lambda: [".git"],
        description="path components write_file refuses: a written .git/config or hook "
        "would run code on the next git command",
    )
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


class ArgumentNotAllowed(ToolFailed):
    """An argument the program's policy refuses (unknown option, path outside, ...)."""

    def __init__(self, refused: ArgumentRefused, *, tool: str) -> None:
        super().__init__(str(refused), tool=tool, status=403)
        self.program = refused.program
        self.argument = refused.argument


class PathOutsideRoots(ToolFailed):
    """A path leads outside every configured root (or through a symbolic link)."""

    def __init__(self, path: str, *, tool: str, reason: str = "is outside the allowed roots"):
        super().__init__(f"path {path!r} {reason}", tool=tool, status=403)
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
    """``make <target> VAR=value ...`` (values are literal words, checked by the schema)."""
    return ["make", args.target, *(f"{key}={value}" for key, value in args.variables.items())]


def fs_error(exc: Exception, path: str, tool: str) -> ToolError:
    """The tool error for a failed file operation: never a raw ``OSError``."""
    if isinstance(exc, PathEscape):
        return PathOutsideRoots(path, tool=tool, reason=exc.reason)
    if isinstance(exc, HardLinked):
        return ToolFailed(str(exc), tool=tool, status=403)
    if isinstance(exc, FileNotFoundError):
        status = 404
    elif isinstance(exc, PermissionError):
        status = 403
    else:
        status = 400
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ToolFailed(f"{path}: {reason}", tool=tool, status=status)


class DesktopCommanderServer(ToolServer):
    """Runs allowlisted programs and touches files, all inside the configured roots."""

    name = SERVER

    def __init__(self, config: DesktopCommanderConfig) -> None:
        self.config = config
        self.fs = ConfinedFS(list(config.roots))
        self.roots = self.fs.roots
        self.policies = {**BUILTIN_POLICIES, **config.argument_policies}

    # --- policy --------------------------------------------------------------------

    def resolve_path(self, raw: str, tool: str) -> Path:
        """The absolute path ``raw`` names (relative: to the first root), if in the roots.

        Lexical only: whether it can be opened without following a link is decided when
        it is opened.
        """
        try:
            return Path(self.fs.display(raw))
        except PathEscape as exc:
            raise PathOutsideRoots(raw, tool=tool, reason=exc.reason) from None

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

    def check_arguments(self, argv0: str, args: list[str], cwd: Path, tool: str) -> None:
        """:class:`ArgumentNotAllowed` unless ``args`` fit the policy of ``argv0``."""

        def path_ok(arg: str) -> None:
            # Programs follow links themselves, so a path operand is judged by its real path.
            real = Path(os.path.realpath(os.path.join(cwd, arg)))
            if not inside(real, self.roots):
                raise ValueError("resolves outside the allowed roots")

        try:
            check_argv([argv0, *args], self.policies, path_ok)
        except ArgumentRefused as exc:
            raise ArgumentNotAllowed(exc, tool=tool) from None

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
        self, argv: list[str], working_directory: str | None, timeout: float, tool: str
    ) -> CommandResult:
        """Run ``argv`` (allowlist and argument policy checked) in ``working_directory``
        (inside the roots; None: the first root); capped output, group killed on timeout."""
        raw_cwd = working_directory if working_directory is not None else str(self.roots[0])
        cwd = self.resolve_path(raw_cwd, tool)
        try:
            # The directory is opened without following links and the program starts in
            # exactly that directory (through /proc/self/fd): no swap between check and use.
            cwd_fd = self.fs.open(raw_cwd, os.O_RDONLY | os.O_DIRECTORY)
        except (OSError, ValueError) as exc:
            if isinstance(exc, NotADirectoryError):
                raise ToolArgumentError(
                    f"working_directory {working_directory!r} is not a directory",
                    tool=tool,
                    fields=("working_directory",),
                ) from None
            raise fs_error(exc, raw_cwd, tool) from None
        try:
            argv0, real = self.resolve_executable(argv[0], cwd, tool)
            self.check_arguments(argv0, argv[1:], cwd, tool)
            passed = {k: os.environ[k] for k in self.config.env_passthrough if k in os.environ}
            env = program_environment(argv0, passed)
            proc_cwd = f"/proc/self/fd/{cwd_fd}" if _PROC_FD else str(cwd)
            return await self._spawn(argv0, real, argv[1:], proc_cwd, cwd_fd, env, timeout, tool)
        finally:
            os.close(cwd_fd)

    async def _spawn(
        self,
        argv0: str,
        real: str,
        args: list[str],
        cwd: str | Path,
        cwd_fd: int,
        env: dict[str, str],
        timeout: float,
        tool: str,
    ) -> CommandResult:
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                argv0,
                *args,
                executable=real,
                cwd=cwd,
                pass_fds=(cwd_fd,),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # own process group: a timeout kills all of it
            )
        except OSError as exc:
            raise fs_error(exc, real, tool) from exc
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
            argv=[argv0, *args],
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
        timeout = self._timeout(args.timeout, name)
        return await self.run_argv(argv, args.working_directory, timeout, name)

    @tool()
    async def make_command(self, args: MakeCommandArgs) -> CommandResult:
        """Run ``make <target>`` with variables (``make`` must be allowlisted)."""
        name = f"{SERVER}.make_command"
        timeout = self._timeout(args.timeout, name)
        return await self.run_argv(make_argv(args), args.working_directory, timeout, name)

    # --- files ---------------------------------------------------------------------

    @tool(read_only=True)
    async def read_file(self, args: ReadFileArgs) -> ReadFileResult:
        """Read a text file inside the roots, up to a byte limit."""
        name = f"{SERVER}.read_file"
        path = self.resolve_path(args.path, name)
        limit = min(args.max_bytes or self.config.max_read_bytes, self.config.max_read_bytes)
        try:
            data, size = await asyncio.to_thread(read_bytes, self.fs, args.path, limit)
        except (OSError, ValueError) as exc:
            raise fs_error(exc, args.path, name) from None
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
        protected = set(self.config.write_protected).intersection(path.parts)
        if protected:
            raise PathOutsideRoots(
                args.path,
                tool=name,
                reason=f"is inside {sorted(protected)[0]}/, which is "
                "write-protected (it holds configuration that runs code)",
            )
        data = args.content.encode(args.encoding)
        append = args.mode == "append"
        try:
            await asyncio.to_thread(write_bytes, self.fs, args.path, data, append, args.create_dirs)
        except (OSError, ValueError) as exc:
            raise fs_error(exc, args.path, name) from None
        return WriteFileResult(path=str(path), bytes_written=len(data))

    @tool(read_only=True)
    async def list_directory(self, args: ListDirectoryArgs) -> ListDirectoryResult:
        """List a directory inside the roots; symlinks are listed, never followed."""
        name = f"{SERVER}.list_directory"
        path = self.resolve_path(args.path, name)
        depth = args.max_depth if args.recursive else 1
        try:
            entries, truncated = await asyncio.to_thread(
                walk, self.fs, args.path, depth, self.config.max_list_entries
            )
        except (OSError, ValueError) as exc:
            raise fs_error(exc, args.path, name) from None
        return ListDirectoryResult(path=str(path), entries=entries, truncated=truncated)

    @tool(read_only=True)
    async def check_file_exists(self, args: CheckFileExistsArgs) -> CheckFileExistsResult:
        """Whether a path inside the roots exists, and whether it is a file or directory."""
        name = f"{SERVER}.check_file_exists"
        path = self.resolve_path(args.path, name)
        try:
            info = await asyncio.to_thread(self.fs.lstat, args.path)
        except (FileNotFoundError, NotADirectoryError):
            return CheckFileExistsResult(path=str(path), exists=False)
        except (OSError, ValueError) as exc:
            raise fs_error(exc, args.path, name) from None
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
