"""The example package (examples/changelog) installed apart from codebus, once per
session, and helpers to run codebus with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The test kit's fixtures, as the plugin gives them to an installed codebus (this source
# tree may run with an older install's metadata, without its pytest11 entry point).
from codebus.testing import (  # noqa: F401
    fake_redis,
    fake_toolbox,
    memory_broker,
    run_units_fixture,
)

# The gateway's test client and memory broker, for the user-types-at-the-gateway test.
from tests.gateway.conftest import broker, client, clock, make_client  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "changelog"
CLI = "from workers.cli import main; main()"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example copied out of codebus's tree and installed into its own directory
    (``pip install --no-deps --target``: codebus itself is never reinstalled). pip builds
    it in an isolated environment with the example's own build requirement
    (setuptools from PyPI, cached after the first run)."""
    work = tmp_path_factory.mktemp("changelog")
    src = work / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    site = work / "site"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert (site / "changelog_example").is_dir()
    return site


def env_with(site: Path, **extra: str) -> dict[str, str]:
    """The environment of a process that has codebus and the example installed."""
    path = os.pathsep.join([str(ROOT), str(site)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEBUS_")}
    return {**env, "PYTHONPATH": path, **extra}
