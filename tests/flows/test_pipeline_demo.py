"""``codebus flows demo`` runs without services and shows what the issue asks for."""

from __future__ import annotations

import io

import pytest

from workers.demo_workflows import run_workflows_demo

pytestmark = pytest.mark.timeout(60)


async def test_the_demo_shows_the_failed_step_report_and_reverse_compensation() -> None:
    out = io.StringIO()
    assert await run_workflows_demo(out) == 0, out.getvalue()
    text = out.getvalue()
    assert "failed_step=scan error=fail_if: total_vulnerabilities = 1; result > 0" in text
    assert "undone, in order: deploy_backend, create_database; dead letters: 0" in text
    assert text.rstrip().endswith("demo OK")
