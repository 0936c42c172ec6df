"""The build context tar of ``docker.docker_build`` and its ``.dockerignore`` rules.

The rules are the Docker CLI's; the oracle test builds the same directory with the real
``docker`` CLI (legacy builder, ``FROM scratch``, no registry needed) and compares what
reached the image with what ``build_context_tar`` sends.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tools.adapters.docker_context import build_context_tar, context_chunks
from tools.errors import ToolFailed

# A tree with a file for every tricky rule: name -> content ("->x" makes a symlink to x).
TREE = {
    "Dockerfile": "FROM scratch\nCOPY . /ctx/\n",
    "app.log": "log",
    "logs/x.log": "log",
    "pkg/deep/y.log": "log",
    "docs/a.md": "doc",
    "docs/keep.md": "doc",
    "docs/sub/b.md": "doc",
    "build/out.bin": "bin",
    "pkg/build/out.bin": "bin",
    "tmp/t.txt": "tmp",
    "pkg/tmp/t.txt": "tmp",
    "a.pyc": "pyc",
    "pkg/a.pyc": "pyc",
    "keepdir/drop.txt": "x",
    "keepdir/sub/keep.txt": "x",
    "keepdir/sub/drop.txt": "x",
    "trail.txt": "x",
    "README.md": "x",
    "readme.md": "x",
    "# notacomment": "x",
    "vendor/a/node_modules/m.js": "x",
    "vendor/a/node_modules/keep.js": "x",
    "lnk": "->docs",
}

# Every rule at once; it excludes neither the Dockerfile nor .dockerignore, which the
# legacy builder would drop from the image (after the CLI sent them).
ALL_RULES = """\
# a comment: *.md
**/*.log
docs/**
!docs/keep.md
/build
./tmp
*.pyc
keepdir
!keepdir/sub/keep.txt
trail.txt\t  \n\
README.md
  # notacomment
**/node_modules
!vendor/a/node_modules/keep.js
"""


def make_tree(root: Path, dockerignore: str) -> Path:
    """``TREE`` under ``root`` plus the given ``.dockerignore``."""
    for name, content in TREE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("->"):
            path.symlink_to(content[2:])
        else:
            path.write_text(content)
    (root / ".dockerignore").write_text(dockerignore)
    return root


def tar_members(root: Path, dockerfile: str = "Dockerfile") -> dict[str, tarfile.TarInfo]:
    spool = build_context_tar(root, dockerfile, max_bytes=10_000_000)
    with spool, tarfile.open(fileobj=spool) as tar:
        return {m.name: m for m in tar.getmembers()}


def tar_files(root: Path) -> set[str]:
    """Names of the non-directory entries of the context tar."""
    return {name for name, m in tar_members(root).items() if not m.isdir()}


EVERYTHING = {*TREE, ".dockerignore"}


RULES = [
    # "**" spans any number of directories, including none.
    ("double-star-prefix", "**/*.log", {"app.log", "logs/x.log", "pkg/deep/y.log"}),
    ("double-star-suffix", "docs/**", {"docs/a.md", "docs/keep.md", "docs/sub/b.md"}),
    # An exception after an exclusion re-includes; the last match wins ...
    ("exception", "docs/**\n!docs/keep.md", {"docs/a.md", "docs/sub/b.md"}),
    # ... so an exception before the exclusion does nothing.
    ("exception-first", "!docs/keep.md\ndocs", {"docs/a.md", "docs/keep.md", "docs/sub/b.md"}),
    # Patterns are anchored at the context root; "/" and "./" change nothing.
    ("leading-slash", "/build", {"build/out.bin"}),
    ("leading-dot", "./tmp", {"tmp/t.txt"}),
    ("star-top-level-only", "*.pyc", {"a.pyc"}),  # not pkg/a.pyc: "*" does not cross "/"
    # A directory excluded, one file below it re-included.
    (
        "dir-with-exception",
        "keepdir\n!keepdir/sub/keep.txt",
        {"keepdir/drop.txt", "keepdir/sub/drop.txt"},
    ),
    ("comments", "# docs\n#*.md\n", set()),
    ("indented-hash", "  # notacomment", {"# notacomment"}),  # only "#" in column 0 comments
    ("trailing-spaces", "trail.txt   \n\n   \n", {"trail.txt"}),
    ("bom", "\ufefftrail.txt", {"trail.txt"}),  # a UTF-8 byte order mark is dropped
    ("case-sensitive", "README.md", {"README.md"}),  # readme.md stays
    # A pattern covers a path below any directory it matches, however deep.
    (
        "deep-parent",
        "**/node_modules\n!vendor/a/node_modules/keep.js",
        {"vendor/a/node_modules/m.js"},
    ),
    ("symlink", "lnk", {"lnk"}),  # the link itself; docs/ is untouched
    # The Dockerfile and .dockerignore are sent even when excluded.
    (
        "build-files-kept",
        "*\nDockerfile\n.dockerignore",
        EVERYTHING - {"Dockerfile", ".dockerignore"},
    ),
    (
        "all-rules",
        ALL_RULES,
        {
            *("app.log", "logs/x.log", "pkg/deep/y.log", "docs/a.md", "docs/sub/b.md"),
            *("build/out.bin", "tmp/t.txt", "a.pyc", "keepdir/drop.txt"),
            *("keepdir/sub/drop.txt", "trail.txt", "README.md", "# notacomment"),
            "vendor/a/node_modules/m.js",
        },
    ),
]


@pytest.mark.parametrize(
    ("dockerignore", "excluded"), [pytest.param(*r[1:], id=r[0]) for r in RULES]
)
def test_dockerignore_rules(tmp_path: Path, dockerignore: str, excluded: set[str]) -> None:
    root = make_tree(tmp_path / "ctx", dockerignore)
    assert tar_files(root) == EVERYTHING - excluded


def test_directories_links_and_ownership(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", "docs\n!docs/keep.md\n/build\n")
    members = tar_members(root)
    dirs = {name for name, m in members.items() if m.isdir()}
    # Excluded directories get no entry, even when a file below is re-included.
    assert "docs" not in dirs and "build" not in dirs
    assert "docs/keep.md" in members and "docs/sub" not in members
    assert {"logs", "pkg", "pkg/build", "keepdir/sub", "vendor/a/node_modules"} <= dirs
    # Parents come before children, and the symlink is a link, not followed.
    names = list(members)
    assert names.index("keepdir") < names.index("keepdir/sub") < names.index("keepdir/sub/keep.txt")
    assert members["lnk"].issym() and members["lnk"].linkname == "docs"
    assert not any(name.startswith("lnk/") for name in members)
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}


def test_custom_dockerfile_in_an_excluded_directory_is_sent(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", "build\n")
    (root / "build" / "app.Dockerfile").write_text("FROM scratch\n")
    files = {n for n, m in tar_members(root, "./build/app.Dockerfile").items() if not m.isdir()}
    assert files == EVERYTHING - {"build/out.bin"} | {"build/app.Dockerfile"}


def test_no_dockerignore_sends_everything(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", "")
    (root / ".dockerignore").unlink()
    assert tar_files(root) == set(TREE)


async def test_size_cap_and_chunks(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "big.bin").write_bytes(b"x" * 600_000)
    (root / "skipped.bin").write_bytes(b"x" * 600_000)
    (root / ".dockerignore").write_text("skipped.bin\n")
    with pytest.raises(ToolFailed, match="build context exceeds 500000 bytes") as caught:
        build_context_tar(root, "Dockerfile", max_bytes=500_000)
    assert caught.value.tool == "docker.docker_build"
    # Excluded files do not count towards the cap.
    spool = build_context_tar(root, "Dockerfile", max_bytes=700_000)
    chunks = [chunk async for chunk in context_chunks(spool)]
    assert len(chunks) > 1
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        assert sorted(tar.getnames()) == [".dockerignore", "Dockerfile", "big.bin"]


# --- the oracle: the real docker CLI ------------------------------------------------


def docker_cli(docker_host: str, *args: str) -> bytes:
    env = {**os.environ, "DOCKER_HOST": docker_host, "DOCKER_BUILDKIT": "0"}
    done = subprocess.run(["docker", *args], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, f"docker {args[0]}: {done.stderr.decode(errors='replace')}"
    return done.stdout


@pytest.mark.docker
def test_context_matches_the_docker_cli(docker_host: str, tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        msg = "the docker CLI is not installed (apt-get install docker.io)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    root = make_tree(tmp_path / "ctx", ALL_RULES)
    label = uuid.uuid4().hex[:12]
    tag = f"codebus-test/context:{label}"
    container = ""
    try:
        docker_cli(
            docker_host, "build", "-q", "--label", f"codebus.test={label}", "-t", tag, str(root)
        )
        container = docker_cli(docker_host, "create", "--label", f"codebus.test={label}", tag, "x")
        container = container.decode().strip()
        exported = docker_cli(docker_host, "export", container)
    finally:
        if container:
            docker_cli(docker_host, "rm", "-f", container)
        subprocess.run(
            ["docker", "rmi", "-f", tag],
            env={**os.environ, "DOCKER_HOST": docker_host},
            capture_output=True,
            timeout=60,
        )
    with tarfile.open(fileobj=io.BytesIO(exported)) as image:
        by_cli = {
            m.name.removeprefix("ctx/")
            for m in image.getmembers()
            if m.name.startswith("ctx/") and not m.isdir()
        }
    assert by_cli == tar_files(root)
    assert "lnk" in by_cli and "docs/keep.md" in by_cli  # the tree did reach the image
