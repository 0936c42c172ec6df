"""In-memory stand-in for :class:`~tools.adapters.desktop_commander.DesktopCommanderServer`.

Same server name, tools and models. Files live in a dict keyed by absolute POSIX path;
commands are never run: ``execute_command`` and ``make_command`` answer with canned
results chosen by the program name (``argv[0]``'s basename), so a handler test can say
"kubectl prints this and exits 1". The allowlist and the roots are enforced the same
way as by the real server, with the same errors, and so are the argument policies
(paths judged lexically: the dict file system has no links).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath

from pydantic import BaseModel

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
from tools.adapters.desktop_commander import (
    SERVER,
    ArgumentNotAllowed,
    ExecutableNotAllowed,
    PathOutsideRoots,
    make_argv,
    split_command,
)
from tools.adapters.shell_policy import (
    ArgumentRefused,
    CommandPolicy,
    check_argv,
)
from tools.adapters.shell_programs import BUILTIN_POLICIES
from tools.errors import ToolArgumentError, ToolError, ToolFailed
from tools.spec import ToolServer, tool

Canned = CommandResult | Callable[[list[str]], CommandResult]


def _echo(argv: list[str]) -> CommandResult:
    return CommandResult(
        argv=argv,
        exit_code=0,
        stdout=" ".join(argv[1:]) + "\n",
        stderr="",
        duration_seconds=0.0,
        truncated=False,
    )


class FakeDesktopCommanderServer(ToolServer):
    """The ``desktop-commander`` server over a dict file system and canned commands."""

    name = SERVER

    def __init__(
        self,
        *,
        roots: Iterable[str] = ("/workspace",),
        allowed_executables: Iterable[str] = ("echo", "ls", "make"),
        results: Mapping[str, Canned] | None = None,
        files: Mapping[str, str | bytes] | None = None,
        argument_policies: Mapping[str, CommandPolicy] | None = None,
        write_protected: Iterable[str] = (".git",),
    ) -> None:
        self.roots = [PurePosixPath(posixpath.normpath(r)) for r in roots]
        self.allowed = {posixpath.basename(e) for e in allowed_executables}
        self.policies = {**BUILTIN_POLICIES, **(argument_policies or {})}
        self.write_protected = tuple(write_protected)
        self.results: dict[str, Canned] = {"echo": _echo, **(results or {})}
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {str(r) for r in self.roots}
        self.commands: list[list[str]] = []  # every argv that "ran"
        self.calls: list[tuple[str, BaseModel]] = []
        self._failures: dict[str, list[ToolError]] = {}
        for path, content in (files or {}).items():
            self._store(self._path(path, "seed"), content, append=False, create_dirs=True)

    def fail_next(self, tool: str, error: ToolError) -> None:
        """Make the next call of ``tool`` (e.g. ``"execute_command"``) raise ``error``."""
        self._failures.setdefault(tool, []).append(error)

    def _enter(self, tool: str, args: BaseModel) -> None:
        self.calls.append((tool, args))
        queued = self._failures.get(tool)
        if queued:
            raise queued.pop(0)

    # --- the dict file system ------------------------------------------------------

    def _path(self, raw: str, tool: str) -> str:
        # No symlinks here, so a lexical normalisation is the whole resolution.
        joined = raw if raw.startswith("/") else posixpath.join(str(self.roots[0]), raw)
        path = PurePosixPath(posixpath.normpath(joined))
        if not any(path == r or path.is_relative_to(r) for r in self.roots):
            raise PathOutsideRoots(raw, tool=f"{SERVER}.{tool}")
        return str(path)

    def _store(self, path: str, content: str | bytes, *, append: bool, create_dirs: bool) -> int:
        data = content.encode() if isinstance(content, str) else content
        parent = posixpath.dirname(path)
        if path in self.dirs:
            raise ToolFailed(f"{path}: Is a directory", tool=f"{SERVER}.write_file", status=400)
        if parent not in self.dirs:
            if not create_dirs:
                raise ToolFailed(
                    f"{path}: No such file or directory", tool=f"{SERVER}.write_file", status=404
                )
            while parent not in self.dirs:
                self.dirs.add(parent)
                parent = posixpath.dirname(parent)
        self.files[path] = (self.files.get(path, b"") if append else b"") + data
        return len(data)

    # --- commands ------------------------------------------------------------------

    def _run(self, argv: list[str], cwd: str | None, tool: str) -> CommandResult:
        if cwd is not None:
            directory = self._path(cwd, tool)
            if directory not in self.dirs:
                raise ToolArgumentError(
                    f"working_directory {cwd!r} is not a directory",
                    tool=f"{SERVER}.{tool}",
                    fields=("working_directory",),
                )
        program = posixpath.basename(argv[0])
        if program not in self.allowed:
            raise ExecutableNotAllowed(argv[0], "not on the allowlist", tool=f"{SERVER}.{tool}")
        base = self._path(cwd, tool) if cwd is not None else str(self.roots[0])

        def path_ok(arg: str) -> None:
            try:
                self._path(posixpath.join(base, arg), tool)
            except PathOutsideRoots:
                raise ValueError("resolves outside the allowed roots") from None

        try:
            check_argv([program, *argv[1:]], self.policies, path_ok)
        except ArgumentRefused as exc:
            raise ArgumentNotAllowed(exc, tool=f"{SERVER}.{tool}") from None
        self.commands.append(list(argv))
        canned = self.results.get(program)
        if canned is None:
            return CommandResult(
                argv=argv, exit_code=0, stdout="", stderr="", duration_seconds=0.0, truncated=False
            )
        if callable(canned):
            return canned(list(argv))
        return canned.model_copy(update={"argv": list(argv)})

    @tool()
    async def execute_command(self, args: ExecuteCommandArgs) -> CommandResult:
        """Answer with the canned result of ``argv[0]`` (``echo`` echoes)."""
        self._enter("execute_command", args)
        return self._run(split_command(args.command), args.working_directory, "execute_command")

    @tool()
    async def make_command(self, args: MakeCommandArgs) -> CommandResult:
        """Answer ``make <target> ...`` with the canned result for ``make``."""
        self._enter("make_command", args)
        return self._run(make_argv(args), args.working_directory, "make_command")

    # --- files ---------------------------------------------------------------------

    @tool(read_only=True)
    async def read_file(self, args: ReadFileArgs) -> ReadFileResult:
        """Read a file from the dict."""
        self._enter("read_file", args)
        path = self._path(args.path, "read_file")
        if path not in self.files:
            status, why = (400, "Is a directory") if path in self.dirs else (404, "No such file")
            raise ToolFailed(f"{args.path}: {why}", tool=f"{SERVER}.read_file", status=status)
        data = self.files[path]
        limit = args.max_bytes or len(data)
        text = data[:limit].decode(
            args.encoding, errors="ignore" if len(data) > limit else "strict"
        )
        return ReadFileResult(path=path, content=text, size=len(data), truncated=len(data) > limit)

    @tool()
    async def write_file(self, args: WriteFileArgs) -> WriteFileResult:
        """Write into the dict."""
        self._enter("write_file", args)
        path = self._path(args.path, "write_file")
        protected = set(self.write_protected).intersection(PurePosixPath(path).parts)
        if protected:
            raise PathOutsideRoots(
                args.path,
                tool=f"{SERVER}.write_file",
                reason=f"is inside {sorted(protected)[0]}/, which is write-protected",
            )
        written = self._store(
            path,
            args.content.encode(args.encoding),
            append=args.mode == "append",
            create_dirs=args.create_dirs,
        )
        return WriteFileResult(path=path, bytes_written=written)

    @tool(read_only=True)
    async def list_directory(self, args: ListDirectoryArgs) -> ListDirectoryResult:
        """List the dict's entries under a directory."""
        self._enter("list_directory", args)
        path = self._path(args.path, "list_directory")
        if path not in self.dirs:
            raise ToolFailed(
                f"{args.path}: No such directory", tool=f"{SERVER}.list_directory", status=404
            )
        depth = args.max_depth if args.recursive else 1
        entries = []
        for candidate in sorted(self.dirs | set(self.files)):
            rel = posixpath.relpath(candidate, path)
            if candidate == path or rel.startswith("..") or rel.count("/") >= depth:
                continue
            if candidate in self.files:
                size = len(self.files[candidate])
                entries.append(DirectoryEntry(path=rel, type="file", size=size))
            else:
                entries.append(DirectoryEntry(path=rel, type="directory"))
        return ListDirectoryResult(path=path, entries=entries)

    @tool(read_only=True)
    async def check_file_exists(self, args: CheckFileExistsArgs) -> CheckFileExistsResult:
        """Whether the dict holds the path."""
        self._enter("check_file_exists", args)
        path = self._path(args.path, "check_file_exists")
        if path in self.files:
            size = len(self.files[path])
            return CheckFileExistsResult(path=path, exists=True, is_file=True, size=size)
        if path in self.dirs:
            return CheckFileExistsResult(path=path, exists=True, is_directory=True, size=0)
        return CheckFileExistsResult(path=path, exists=False)
