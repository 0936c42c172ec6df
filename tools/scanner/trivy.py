"""Scanning with Trivy when it is installed: run it (no shell) and parse its JSON report.

``trivy image --format json --list-all-pkgs --severity <levels> --quiet IMAGE`` prints
one report: ``Results[]`` per target (OS packages, a language's packages), each with
``Type`` (``ubuntu``, ``python-pkg``, ``node-pkg``, ...), ``Vulnerabilities[]`` and, with
``--list-all-pkgs``, ``Packages[]`` (used only to count what was scanned).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any

from schemas.tools.security_scanner import SEVERITY_ORDER, Vulnerability

_TYPE_TO_ECOSYSTEM = {
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "python-pkg": "PyPI",
    "pip": "PyPI",
    "pipenv": "PyPI",
    "poetry": "PyPI",
    "node-pkg": "npm",
    "npm": "npm",
    "yarn": "npm",
    "pnpm": "npm",
}
# Trivy's UNKNOWN has no band; like an OSV advisory without severity it counts as medium.
_TRIVY_SEVERITY = {"LOW": "low", "MEDIUM": "medium", "HIGH": "high", "CRITICAL": "critical"}
MAX_OUTPUT_BYTES = 64 * 1024 * 1024


class TrivyError(Exception):
    """Trivy could not be run or failed; ``stderr`` holds the end of its output."""

    def __init__(self, message: str, *, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


@dataclass(frozen=True)
class TrivyReport:
    """What a Trivy report says, in this tool's terms."""

    vulnerabilities: list[Vulnerability]
    packages_scanned: int


def severity_levels(threshold: str) -> str:
    """Trivy's ``--severity`` value for "at or above ``threshold``".

    UNKNOWN is included up to a "medium" threshold, because it is reported as medium.
    """
    rank = SEVERITY_ORDER[threshold]
    levels = ["UNKNOWN"] if rank <= SEVERITY_ORDER["medium"] else []
    levels += [s.upper() for s, r in SEVERITY_ORDER.items() if r >= rank]
    return ",".join(levels)


def parse_report(report: dict[str, Any]) -> TrivyReport:
    """Convert a Trivy JSON report (schema version 2) into vulnerabilities."""
    vulns: list[Vulnerability] = []
    packages = 0
    for result in report.get("Results") or []:
        kind = str(result.get("Type", ""))
        os_family = (report.get("Metadata") or {}).get("OS") or {}
        ecosystem = _TYPE_TO_ECOSYSTEM.get(kind, kind or "unknown")
        if result.get("Class") == "os-pkgs" and os_family.get("Name"):
            ecosystem = f"{ecosystem}:{os_family['Name']}"
        packages += len(result.get("Packages") or [])
        for item in result.get("Vulnerabilities") or []:
            vulns.append(
                Vulnerability(
                    id=str(item.get("VulnerabilityID", "")),
                    package=str(item.get("PkgName", "")),
                    installed_version=str(item.get("InstalledVersion", "")),
                    fixed_version=item.get("FixedVersion") or None,
                    severity=_TRIVY_SEVERITY.get(str(item.get("Severity", "")).upper(), "medium"),  # type: ignore[arg-type]
                    ecosystem=ecosystem,
                    summary=str(item.get("Title") or item.get("Description") or "")[:300],
                )
            )
    return TrivyReport(vulns, packages)


async def run_trivy(
    trivy_path: str,
    image: str,
    threshold: str,
    *,
    timeout: float,
    docker_url: str | None = None,
    extra_args: list[str] | None = None,
) -> TrivyReport:
    """Run Trivy on ``image``; raises :class:`TrivyError` or ``TimeoutError``."""
    argv = [
        trivy_path,
        "image",
        "--format",
        "json",
        "--list-all-pkgs",
        "--severity",
        severity_levels(threshold),
        "--quiet",
        *(extra_args or []),
        "--",  # an image name can never be read as an option
        image,
    ]
    env = dict(os.environ)
    if docker_url:
        env["DOCKER_HOST"] = docker_url
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        raise TrivyError(f"cannot run {trivy_path}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    tail = stderr.decode("utf-8", errors="replace")[-2000:]
    if proc.returncode != 0:
        raise TrivyError(f"trivy exited with status {proc.returncode}", stderr=tail)
    if len(stdout) > MAX_OUTPUT_BYTES:
        raise TrivyError("trivy report is larger than the output cap")
    try:
        report = json.loads(stdout)
    except ValueError as exc:
        raise TrivyError(f"trivy printed invalid JSON: {exc}", stderr=tail) from exc
    return parse_report(report)
