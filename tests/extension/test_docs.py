"""docs/handlers.md runs: its package files are the example package's (which
test_example_package.py installs and runs), and its runnable snippet runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.extension.conftest import EXAMPLE, ROOT

DOC = ROOT / "docs" / "handlers.md"
BLOCK = re.compile(r"<!-- (file|run): (.+?) -->\n```\w+\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str, str]]:
    found = BLOCK.findall(DOC.read_text())
    assert found, "no marked code block in docs/handlers.md"
    return found


def test_the_doc_shows_the_example_package_as_it_is() -> None:
    files = [(name, code) for kind, name, code in blocks() if kind == "file"]
    assert {n for n, _ in files} >= {"changelog_example/events.py", "changelog_example/unit.py"}
    for name, code in files:
        if name.endswith("(part)"):
            assert code.strip() in (EXAMPLE / name.split()[0]).read_text(), name
        else:
            assert code == (EXAMPLE / name).read_text(), f"{name} differs from the example"


def test_the_doc_s_snippets_run(tmp_path: Path) -> None:
    package = tmp_path / "changelog_example"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for kind, name, code in blocks():
        if kind == "file" and name.startswith("changelog_example/"):
            (tmp_path / name).write_text(code)
    runs = [(expect, code) for kind, expect, code in blocks() if kind == "run"]
    assert runs
    for expect, code in runs:
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": f"{ROOT}:{tmp_path}", "PATH": "/usr/bin:/bin"},
            cwd=tmp_path,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == expect.removeprefix("prints ").strip()
