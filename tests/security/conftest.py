"""Fixtures of the tool-layer attack tables: a root with a git repository and a Makefile,
and an "outside" beside it holding a secret, a git repository and a HOME with a hostile
global git config. Every attack is judged by what happened outside the root."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

MARKER = "OUTSIDE-MARKER-7f3a9"

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git_init(path: Path, files: dict[str, str], message: str) -> None:
    """A repository at ``path`` with ``files`` committed under ``message``."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    env = {**os.environ, **_GIT_ENV}
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", message],
    ):
        subprocess.run(argv, cwd=path, env=env, check=True, capture_output=True)


def tree_snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under ``path`` (no symlink followed) with its mode and content."""
    snapshot: dict[str, tuple[int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            info = full.lstat()
            data = full.read_bytes() if full.is_file() and not full.is_symlink() else b""
            snapshot[str(full.relative_to(path))] = (info.st_mode, data)
    return snapshot


@dataclass
class Arena:
    """Where an attack runs (``root``) and what it must never touch (``outside``)."""

    root: Path
    outside: Path
    canary: Path

    def outside_snapshot(self) -> dict[str, tuple[int, bytes]]:
        """The outside tree now."""
        return tree_snapshot(self.outside)

    def marker_in_root(self) -> bool:
        """Whether data from outside was copied into the root."""
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                full = Path(dirpath) / name
                if full.is_symlink():
                    continue
                if MARKER.encode() in full.read_bytes() or MARKER in name:
                    return True
        return False


@pytest.fixture
def arena(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Arena:
    """A root git repository with a Makefile; outside: a secret, a repository, a HOME."""
    return make_arena(tmp_path, monkeypatch)


def make_arena(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Arena:
    """The :func:`arena` fixture's work, for tests that need several arenas."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    canary = tmp_path / "CANARY"
    git_init(
        root,
        {
            "Makefile": "test:\n\t$(PYTHON) -c 'print(1)'\nshow:\n\t@echo 'V=$(V)'\n",
            "app.py": "print('hi')\n",
        },
        "root commit",
    )
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{MARKER}\n")
    (outside / f"{MARKER}.name").write_text("x\n")
    git_init(outside / "repo", {"data.txt": f"{MARKER}\n"}, f"outside {MARKER}")
    (outside / "evil.mk").write_text(f"all:\n\ttouch {canary}\n")
    # A program and a hook directory that hostile configuration points at.
    evil = outside / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {canary}\nexit 1\n")
    evil.chmod(0o755)
    (outside / "hooks").mkdir()
    (outside / "hooks" / "pre-commit").write_text(f"#!/bin/sh\ntouch {canary}\n")
    (outside / "hooks" / "pre-commit").chmod(0o755)
    home = outside / "home"
    home.mkdir()
    # A hostile global config: whoever reads it runs the canary on ``git status``.
    (home / ".gitconfig").write_text(
        f"[core]\n\tfsmonitor = touch {canary}; false\n[alias]\n\tst = !touch {canary}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    return Arena(root=root, outside=outside, canary=canary)
