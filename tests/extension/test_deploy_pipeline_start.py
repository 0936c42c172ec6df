"""CODEBUS_DEPLOY_PIPELINE is checked when the deploy worker starts (exit 3, one line
naming the variable and the field), not at the first request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.settings import ConfigError, Settings, unknown_variables
from workers.units import flow_deps

ROOT = Path(__file__).resolve().parents[2]
BAD = """\
kind: pipeline
name: deploy
inputs: [flow_id]
steps:
  - {name: validate, action: deploy.validate}
  - {name: launch, action: deploy.launch}
"""


def test_flow_deps_names_variable_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "pipeline.yaml"
    path.write_text(BAD)
    monkeypatch.setenv("CODEBUS_DEPLOY_PIPELINE", str(path))
    with pytest.raises(ConfigError) as err:
        flow_deps(Settings(), None)
    message = str(err.value)
    assert message.startswith("CODEBUS_DEPLOY_PIPELINE: ")
    assert "steps.1.action" in message and "\n" not in message
    monkeypatch.setenv("CODEBUS_DEPLOY_PIPELINE", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="CODEBUS_DEPLOY_PIPELINE: cannot read"):
        flow_deps(Settings(), None)
    monkeypatch.delenv("CODEBUS_DEPLOY_PIPELINE")
    assert "flows_config" in flow_deps(Settings(), None)  # the shipped pipeline passes


def test_the_variable_is_a_known_one() -> None:
    assert unknown_variables({"CODEBUS_DEPLOY_PIPELINE": "x"}) == []


def test_deploy_worker_exits_3_at_start(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(BAD)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CODEBUS_DEPLOY_PIPELINE": str(path),
        "CODEBUS_HTTP_PORT": "0",
        "CODEBUS_FAKE_TOOLS": "true",
    }
    if os.environ.get("CODEBUS_TEST_AMQP_URL"):
        env["CODEBUS_AMQP_URL"] = os.environ["CODEBUS_TEST_AMQP_URL"]
    if os.environ.get("CODEBUS_TEST_REDIS_URL"):
        env["CODEBUS_REDIS_URL"] = os.environ["CODEBUS_TEST_REDIS_URL"]
    proc = subprocess.run(
        [sys.executable, "-c", "from workers.cli import main; main()", "worker", "deploy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "CODEBUS_DEPLOY_PIPELINE" in lines[0] and "steps.1.action" in lines[0]
