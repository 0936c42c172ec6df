"""The Trivy report parser and runner (Trivy itself is not installed: a stand-in script
prints a report of Trivy's JSON shape and records its argv)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tools.scanner.trivy import TrivyError, parse_report, run_trivy, severity_levels

REPORT = Path(__file__).parent / "data" / "trivy-report.json"


def test_parse_report_maps_fields_and_ecosystems() -> None:
    report = parse_report(json.loads(REPORT.read_text()))
    assert report.packages_scanned == 4
    got = {v.id: v for v in report.vulnerabilities}
    assert set(got) == {"CVE-2022-0778", "CVE-2022-1292", "CVE-2018-18074"}
    openssl = got["CVE-2022-0778"]
    assert (openssl.package, openssl.installed_version, openssl.fixed_version) == (
        "openssl",
        "3.0.2-0ubuntu1",
        "3.0.2-0ubuntu1.2",
    )
    assert (openssl.severity, openssl.ecosystem) == ("high", "Ubuntu:22.04")
    assert openssl.summary.startswith("openssl: Infinite loop")
    unfixed = got["CVE-2022-1292"]
    assert unfixed.fixed_version is None  # "" in Trivy's output
    assert unfixed.severity == "medium"  # UNKNOWN
    assert unfixed.summary == "c_rehash script allows command injection"
    requests = got["CVE-2018-18074"]
    assert (requests.severity, requests.ecosystem) == ("critical", "PyPI")


def test_parse_empty_report() -> None:
    assert parse_report({"SchemaVersion": 2, "Results": None}).vulnerabilities == []


@pytest.mark.parametrize(
    ("threshold", "levels"),
    [
        ("low", "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL"),
        ("medium", "UNKNOWN,MEDIUM,HIGH,CRITICAL"),
        ("high", "HIGH,CRITICAL"),
        ("critical", "CRITICAL"),
    ],
)
def test_severity_levels(threshold: str, levels: str) -> None:
    assert severity_levels(threshold) == levels


def _fake_trivy(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "trivy"
    script.write_text(f"#!{sys.executable}\nimport sys, json, pathlib\n{body}\n")
    script.chmod(0o755)
    return script


async def test_run_trivy_passes_argv_without_a_shell(tmp_path: Path) -> None:
    argv_file = tmp_path / "argv.json"
    trivy = _fake_trivy(
        tmp_path,
        f"pathlib.Path({str(argv_file)!r}).write_text(json.dumps(sys.argv[1:]))\n"
        f"print(pathlib.Path({str(REPORT)!r}).read_text())",
    )
    image = "--help;touch /tmp/pwned"  # an option and two commands through a shell
    report = await run_trivy(str(trivy), image, "high", timeout=30, extra_args=["--skip-db-update"])
    assert len(report.vulnerabilities) == 3
    assert json.loads(argv_file.read_text()) == [
        "image",
        "--format",
        "json",
        "--list-all-pkgs",
        "--severity",
        "HIGH,CRITICAL",
        "--quiet",
        "--skip-db-update",
        "--",
        image,
    ]


async def test_run_trivy_failures(tmp_path: Path) -> None:
    failing = _fake_trivy(tmp_path, "sys.stderr.write('FATAL db download failed'); sys.exit(1)")
    with pytest.raises(TrivyError) as info:
        await run_trivy(str(failing), "app:1", "low", timeout=30)
    assert "db download failed" in info.value.stderr
    with pytest.raises(TrivyError, match="cannot run"):
        await run_trivy(str(tmp_path / "missing"), "app:1", "low", timeout=30)
    slow = _fake_trivy(tmp_path, "import time; time.sleep(30)")
    with pytest.raises(TimeoutError):
        await run_trivy(str(slow), "app:1", "low", timeout=0.5)
