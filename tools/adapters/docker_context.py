"""The build context of ``docker.docker_build``: a tar stream of a directory, spooled in
memory (to disk past a threshold), honouring ``.dockerignore`` with the Docker CLI's rules.

Patterns are compiled by docker-py (``docker.utils.build.PatternMatcher``, a port of the
CLI's pattern matcher): ``*`` and ``?`` stop at ``/``, ``**`` spans directories, a
pattern is anchored at the context root (leading ``/`` and ``.`` components are dropped),
the last matching pattern wins and ``!`` re-includes, and a pattern that matches a
directory covers everything below it. Two places where docker-py strays from the CLI
are corrected here, so the context is exactly what ``docker build`` would send (a test
checks it against the real CLI): matching is case-sensitive, and a pattern covers a path
when it matches *any* of its parent directories (docker-py tries only the parent with as
many components as the pattern, so ``**/node_modules`` missed ``a/b/node_modules/x``
once an exception made the walk enter that directory). As with the CLI, the Dockerfile
and ``.dockerignore`` are always sent, even when a pattern excludes them."""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from docker.utils.build import PatternMatcher
from docker.utils.fnmatch import fnmatchcase

from tools.errors import ToolFailed

_SPOOL_BYTES = 32 * 1024 * 1024
_CHUNK = 256 * 1024


class _CliPatternMatcher(PatternMatcher):
    """docker-py's matcher (patterns, walk, exceptions) with the CLI's ``matches``."""

    def matches(self, filepath: str) -> bool:
        # The CLI (patternmatcher.MatchesOrParentMatches): a pattern applies to a path if it
        # matches the path or any parent directory; the last applying pattern wins.
        parts = filepath.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        matched = False
        for pattern in self.patterns:
            if any(fnmatchcase(c, pattern.cleaned_pattern) for c in candidates):
                matched = not pattern.exclusion
        return matched


def _read_dockerignore(root: Path) -> list[str]:
    # As the CLI reads it (moby patternmatcher/ignorefile.ReadAll, which docker-py's
    # APIClient.build approximates): drop a UTF-8 BOM, skip lines *starting* with "#"
    # (an indented "#" is a pattern, as in the CLI), strip whitespace, skip blank lines.
    # Cleaning ("./tmp", "/build", "a/../b") is left to docker-py's Pattern.
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace").removeprefix("\ufeff")
    return [line.strip() for line in text.split("\n") if line.strip() and line[0] != "#"]


def _context_paths(root: Path, dockerfile: str) -> list[str]:
    """The paths (relative, files and directories) that go into the context, sorted."""
    dockerfile = posixpath.normpath(dockerfile.replace("\\", "/"))
    patterns = [*_read_dockerignore(root), f"!{dockerfile}"]  # as exclude_paths does
    paths = set(_CliPatternMatcher(patterns).walk(str(root)))  # appends "!.dockerignore"
    # The patterns above keep both files unless the name holds glob characters; be sure.
    paths.update(name for name in (dockerfile, ".dockerignore") if os.path.lexists(root / name))
    return sorted(paths)


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Ownership of the caller's files must not leak into the image (the docker CLI does the same).
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_context_tar(root: Path, dockerfile: str, max_bytes: int) -> IO[bytes]:
    """Tar the directory ``root`` (symlinks stored as links, never followed)."""
    paths = _context_paths(root, dockerfile)
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 - returned
    total = 0
    with tarfile.open(fileobj=spool, mode="w") as tar:
        for rel in paths:
            full = os.path.join(root, rel)
            st = os.lstat(full)
            if not stat.S_ISDIR(st.st_mode):
                total += st.st_size
                if total > max_bytes:
                    spool.close()
                    message = f"build context exceeds {max_bytes} bytes"
                    raise ToolFailed(message, tool="docker.docker_build")
            tar.add(full, rel, recursive=False, filter=_normalise)
    spool.seek(0)
    return spool


async def context_chunks(spool: IO[bytes]) -> AsyncIterator[bytes]:
    """The spooled tar in chunks, for a streaming request body."""
    while chunk := spool.read(_CHUNK):
        yield chunk
