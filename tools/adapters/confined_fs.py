"""Opening files inside a set of roots without a check-then-open race.

Checking a path (``realpath`` inside a root) and then opening it by name lets a directory
be swapped for a symlink in between: the open follows the link out of the root. Here no
path is ever resolved by name from outside: every open starts from a file descriptor of
the root directory and refuses symbolic links on *every* component.

* ``openat2(2)`` with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS``
  (Linux 5.6+, called through :mod:`ctypes`): the kernel does the walk and refuses an
  escape or a link atomically.
* Elsewhere (an older kernel, a seccomp profile that blocks the call): a walk from the
  root descriptor, one ``openat(..., O_NOFOLLOW)`` per component, each directory held
  open while the next is opened.

``..`` is resolved lexically before the walk (never through a link, since links are not
followed) and may not climb above the root. Regular files with more than one hard link
are refused: the other name may be outside the roots. Files are opened ``O_NONBLOCK``
(a FIFO planted in the root cannot hang a worker) and truncated only after these checks.

Errors: :class:`PathEscape` (outside the roots, or through a link) and
:class:`HardLinked`; everything else is the ``OSError`` of the failing call, which the
adapter maps to a tool error.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import posixpath
import stat
import sys
from pathlib import Path

from schemas.tools.desktop_commander import DirectoryEntry

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_PATH = getattr(os, "O_PATH", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)

# linux/openat2.h
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # the same number on every Linux architecture (unified syscall table)


class PathEscape(ValueError):
    """The path leaves the roots, or would have to follow a symbolic link."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path!r} {reason}")
        self.path = path
        self.reason = reason


class HardLinked(ValueError):
    """A regular file with more than one name; the other one may be outside the roots."""

    def __init__(self, path: str, links: int) -> None:
        super().__init__(f"{path!r} has {links} hard links; hard-linked files are refused")
        self.path = path


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def _load_syscall() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    return syscall  # type: ignore[no-any-return]


_syscall = _load_syscall()
_openat2_works: bool | None = None


def _openat2(dirfd: int, path: str, flags: int, mode: int) -> int:
    how = _OpenHow(
        flags,
        mode if flags & os.O_CREAT else 0,
        _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS,
    )
    assert _syscall is not None
    fd = _syscall(
        _SYS_OPENAT2,
        ctypes.c_int(dirfd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return int(fd)


def openat2_available() -> bool:
    """Whether this process can use ``openat2`` (probed once)."""
    global _openat2_works
    if _openat2_works is None:
        _openat2_works = False
        if _syscall is not None:
            try:
                os.close(_openat2(_AT_FDCWD, ".", _O_PATH | _O_CLOEXEC, 0))
                _openat2_works = True
            except OSError:  # ENOSYS (old kernel), EPERM (seccomp), ...
                pass
    return _openat2_works


_AT_FDCWD = -100


class ConfinedFS:
    """Opens paths strictly inside ``roots`` (real, absolute directory paths)."""

    def __init__(self, roots: list[Path], *, use_openat2: bool | None = None) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.use_openat2 = openat2_available() if use_openat2 is None else use_openat2

    # --- locating ------------------------------------------------------------------

    def locate(self, raw: str, base: Path | None = None) -> tuple[Path, str]:
        """``(root, path relative to it)`` for ``raw``, lexically; no file is touched.

        A relative ``raw`` is taken from ``base`` (default: the first root).
        """
        joined = posixpath.join(str(base or self.roots[0]), raw)
        normal = posixpath.normpath(joined)
        best: Path | None = None
        for root in self.roots:
            under = normal == str(root) or normal.startswith(str(root).rstrip("/") + "/")
            if under and (best is None or len(str(root)) > len(str(best))):
                best = root
        if best is None:
            raise PathEscape(raw, "is outside the allowed roots")
        rel = posixpath.relpath(normal, str(best))
        return best, "" if rel == "." else rel

    def display(self, raw: str, base: Path | None = None) -> str:
        """The absolute, normalised path ``raw`` names (for results and messages)."""
        root, rel = self.locate(raw, base)
        return str(root / rel) if rel else str(root)

    # --- opening -------------------------------------------------------------------

    def open(self, raw: str, flags: int, mode: int = 0o644, base: Path | None = None) -> int:
        """A descriptor of ``raw`` opened with ``flags``; no component may be a link."""
        root, rel = self.locate(raw, base)
        flags |= _O_CLOEXEC | _O_NOFOLLOW
        root_fd = os.open(root, _O_PATH | _O_DIRECTORY | _O_CLOEXEC)
        try:
            if not rel:
                return os.open(".", flags & ~_O_NOFOLLOW, mode, dir_fd=root_fd)
            try:
                return self._open_from(raw, root_fd, rel, flags, mode)
            except NotADirectoryError:
                # O_DIRECTORY | O_NOFOLLOW on a link says ENOTDIR: tell the link apart.
                if flags & _O_DIRECTORY and self._is_link(raw, root_fd, rel):
                    raise PathEscape(raw, "is a symbolic link; links are not followed") from None
                raise
        finally:
            os.close(root_fd)

    def _open_from(self, raw: str, root_fd: int, rel: str, flags: int, mode: int) -> int:
        if self.use_openat2:
            return self._open_openat2(raw, root_fd, rel, flags, mode)
        return self._open_walk(raw, root_fd, rel, flags, mode)

    def _is_link(self, raw: str, root_fd: int, rel: str) -> bool:
        try:
            fd = self._open_from(raw, root_fd, rel, _O_PATH | _O_NOFOLLOW | _O_CLOEXEC, 0)
        except (OSError, ValueError):
            return False
        try:
            return stat.S_ISLNK(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    def _open_openat2(self, raw: str, root_fd: int, rel: str, flags: int, mode: int) -> int:
        try:
            return _openat2(root_fd, rel, flags, mode)
        except OSError as exc:
            raise _escape(raw, exc) from exc

    def _open_walk(self, raw: str, root_fd: int, rel: str, flags: int, mode: int) -> int:
        *parents, last = rel.split("/")
        fd = os.dup(root_fd)
        try:
            for part in parents:
                child = _step(raw, fd, part)
                os.close(fd)
                fd = child
            try:
                return os.open(last, flags, mode, dir_fd=fd)
            except OSError as exc:
                raise _escape(raw, exc, fd, last) from exc
        finally:
            os.close(fd)

    def makedirs(self, raw: str, base: Path | None = None) -> None:
        """``mkdir -p`` of ``raw``'s components, each made and entered without following."""
        root, rel = self.locate(raw, base)
        fd = os.open(root, _O_PATH | _O_DIRECTORY | _O_CLOEXEC)
        try:
            for part in rel.split("/") if rel else []:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                child = _step(raw, fd, part)
                os.close(fd)
                fd = child
        finally:
            os.close(fd)

    def open_regular(self, raw: str, flags: int, base: Path | None = None) -> int:
        """Open a regular file with a single link (reads and writes go through this)."""
        fd = self.open(raw, flags | os.O_NONBLOCK, base=base)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
                raise OSError(
                    errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.EINVAL, kind, raw
                )
            if info.st_nlink > 1:
                raise HardLinked(raw, info.st_nlink)
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def lstat(self, raw: str, base: Path | None = None) -> os.stat_result:
        """The ``stat`` of ``raw`` itself; a link anywhere in it is :class:`PathEscape`."""
        fd = self.open(raw, _O_PATH, base=base)
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        if stat.S_ISLNK(info.st_mode):
            raise PathEscape(raw, "is a symbolic link; links are not followed")
        return info


def _step(raw: str, fd: int, part: str) -> int:
    """A descriptor of directory ``part`` of ``fd``, entered without following a link."""
    try:
        return os.open(part, _O_PATH | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=fd)
    except OSError as exc:
        raise _escape(raw, exc, fd, part) from exc


def _escape(raw: str, exc: OSError, dir_fd: int | None = None, part: str = "") -> Exception:
    """The error to raise for ``exc``: a :class:`PathEscape` for links and escapes."""
    if exc.errno == errno.EXDEV:
        return PathEscape(raw, "is outside the allowed roots")
    if exc.errno == errno.ELOOP:
        return PathEscape(raw, "goes through a symbolic link; links are not followed")
    if exc.errno == errno.ENOTDIR and dir_fd is not None:
        try:
            if stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                return PathEscape(raw, "goes through a symbolic link; links are not followed")
        except OSError:
            pass
    return exc


# --- the file tools' operations (run in a thread) ------------------------------------


def read_bytes(fs: ConfinedFS, raw: str, limit: int) -> tuple[bytes, int]:
    """The first ``limit`` bytes of a regular file and its size."""
    fd = fs.open_regular(raw, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit), os.fstat(fd).st_size


def write_bytes(fs: ConfinedFS, raw: str, data: bytes, append: bool, create_dirs: bool) -> None:
    """Write (or append) ``data`` to a regular file, creating it (and its parents)."""
    if create_dirs:
        parent = os.path.dirname(raw.rstrip("/"))
        if parent:
            fs.makedirs(parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else 0)
    fd = fs.open_regular(raw, flags)
    with os.fdopen(fd, "wb") as handle:
        if not append:
            # Truncated only now: O_TRUNC at open would have cut a hard-linked file
            # before the link count could be checked.
            os.ftruncate(fd, 0)
        handle.write(data)


def walk(fs: ConfinedFS, raw: str, depth: int, limit: int) -> tuple[list[DirectoryEntry], bool]:
    """Entries under a directory, breadth first, ``depth`` levels, at most ``limit``."""
    entries: list[DirectoryEntry] = []
    top = fs.open(raw, os.O_RDONLY | os.O_DIRECTORY)
    pending: list[tuple[int, str, int]] = [(top, "", 1)]
    try:
        while pending:
            fd, prefix, level = pending.pop(0)
            try:
                with os.scandir(fd) as scan:
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
                            # Entered by descriptor without following: a swapped-in link fails.
                            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                            child = os.open(item.name, flags, dir_fd=fd)
                            pending.append((child, f"{rel}/", level + 1))
                    elif item.is_file(follow_symlinks=False):
                        size = item.stat(follow_symlinks=False).st_size
                        entries.append(DirectoryEntry(path=rel, type="file", size=size))
                    else:
                        entries.append(DirectoryEntry(path=rel, type="other"))
            finally:
                os.close(fd)
    finally:
        for fd, _prefix, _level in pending:
            os.close(fd)
    return entries, False
