"""The build context of ``docker.docker_build``: a tar stream of a directory, spooled in
memory (to disk past a threshold), honouring a simple ``.dockerignore`` (fnmatch
patterns, last match wins, ``!`` re-includes; broader than Docker's own rules)."""

from __future__ import annotations

import fnmatch
import os
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from tools.errors import ToolFailed

_SPOOL_BYTES = 32 * 1024 * 1024
_CHUNK = 256 * 1024


def _read_dockerignore(root: Path) -> list[tuple[bool, str]]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    patterns: list[tuple[bool, str]] = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip().strip("/"))
        patterns.append((negate, pattern))
    return patterns


def _ignored(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    # Like Docker: the last matching pattern wins; a match on a parent covers children.
    ignored = False
    for negate, pattern in patterns:
        if fnmatch.fnmatchcase(rel, pattern) or rel.startswith(pattern + "/"):
            ignored = not negate
    return ignored


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Ownership of the caller's files must not leak into the image (the docker CLI does the same).
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_context_tar(root: Path, dockerfile: str, max_bytes: int) -> IO[bytes]:
    """Tar the directory ``root`` (symlinks stored as links, never followed)."""
    patterns = _read_dockerignore(root)
    keep = {dockerfile, ".dockerignore"}
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 - returned
    total = 0
    with tarfile.open(fileobj=spool, mode="w") as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            for name in sorted(dirnames):
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if _ignored(rel, patterns) and not any(neg for neg, _ in patterns):
                    dirnames.remove(name)  # nothing below can be re-included: skip the walk
                    continue
                if not _ignored(rel, patterns):
                    tar.add(os.path.join(dirpath, name), rel, recursive=False, filter=_normalise)
            for name in sorted(filenames):
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if rel not in keep and _ignored(rel, patterns):
                    continue
                full = os.path.join(dirpath, name)
                total += os.lstat(full).st_size
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
