"""The in-memory security scanner keeps the real server's tools, models and threshold."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from schemas.tools.security_scanner import (
    DockerSecurityScanArgs,
    FileIssue,
    FileSecurityScanArgs,
    NpmAuditArgs,
    PythonSafetyCheckArgs,
    Vulnerability,
)
from tools.adapters.security_scanner import SecurityScannerConfig, SecurityScannerServer
from tools.errors import ToolTransientError
from tools.fakes.security_scanner import FakeSecurityScannerServer


def _vuln(vid: str, severity: str, package: str = "openssl") -> Vulnerability:
    return Vulnerability(
        id=vid,
        package=package,
        installed_version="1.0",
        fixed_version="1.1",
        severity=severity,  # type: ignore[arg-type]
        ecosystem="Debian:12",
    )


async def call(server: FakeSecurityScannerServer, tool: str, args: BaseModel) -> Any:
    """Call a tool through its bound method, as the registry does."""
    return await {t.spec.name: t for t in server.tools()}[f"security-scanner.{tool}"].call(args)


def test_same_tool_specs_as_the_real_server() -> None:
    real = {t.spec.name: t.spec for t in SecurityScannerServer(SecurityScannerConfig()).tools()}
    fake = {t.spec.name: t.spec for t in FakeSecurityScannerServer().tools()}
    assert set(fake) == set(real)
    for name, spec in fake.items():
        assert (spec.args_model, spec.result_model, spec.read_only) == (
            real[name].args_model,
            real[name].result_model,
            real[name].read_only,
        )


async def test_images_are_clean_by_default() -> None:
    fake = FakeSecurityScannerServer()
    result = await call(fake, "docker_security_scan", DockerSecurityScanArgs(image="app:1"))
    assert (result.total_vulnerabilities, result.vulnerabilities) == (0, [])
    assert fake.calls == [
        ("security-scanner.docker_security_scan", DockerSecurityScanArgs(image="app:1"))
    ]


async def test_canned_vulnerabilities_honour_the_threshold() -> None:
    fake = FakeSecurityScannerServer(
        {"app:1": [_vuln("CVE-LOW", "low"), _vuln("CVE-CRIT", "critical"), _vuln("CVE-H", "high")]}
    )
    high = await call(
        fake, "docker_security_scan", DockerSecurityScanArgs(image="app:1", severity="high")
    )
    assert [v.id for v in high.vulnerabilities] == ["CVE-CRIT", "CVE-H"]
    assert high.total_vulnerabilities == 2
    assert high.severity_counts == {"low": 1, "medium": 0, "high": 1, "critical": 1}
    other = await call(fake, "docker_security_scan", DockerSecurityScanArgs(image="app:2"))
    assert other.total_vulnerabilities == 0


async def test_configured_failures_are_raised() -> None:
    fake = FakeSecurityScannerServer()
    fake.fail_image("broken:1", ToolTransientError("engine down", status=503))
    with pytest.raises(ToolTransientError, match="engine down"):
        await call(fake, "docker_security_scan", DockerSecurityScanArgs(image="broken:1"))


async def test_file_and_dependency_answers() -> None:
    fake = FakeSecurityScannerServer()
    issue = FileIssue(
        file="a.py",
        line=3,
        rule="eval-call",
        category="risky-code",
        severity="medium",
        excerpt="eval(x)",
    )
    fake.set_file_issues("/src", [issue])
    fake.set_dependency_vulnerabilities(
        "requirements.txt", [_vuln("PYSEC-1", "medium", "requests")]
    )
    files = await call(fake, "file_security_scan", FileSecurityScanArgs(path="/src"))
    assert (files.total_issues, files.issues) == (1, [issue])
    py = await call(
        fake, "python_safety_check", PythonSafetyCheckArgs(requirements_file="requirements.txt")
    )
    assert [v.id for v in py.vulnerabilities] == ["PYSEC-1"]
    py_high = await call(
        fake,
        "python_safety_check",
        PythonSafetyCheckArgs(requirements_file="requirements.txt", severity="high"),
    )
    assert py_high.total_vulnerabilities == 0
    npm = await call(fake, "npm_audit", NpmAuditArgs(package_path="web"))
    assert npm.total_vulnerabilities == 0
