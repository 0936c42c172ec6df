"""An in-memory ``security-scanner`` for tests and the demo: same tools, same models.

Every image, path and manifest is clean unless told otherwise::

    fake = FakeSecurityScannerServer()
    fake.set_image_vulnerabilities("app:1.0", [Vulnerability(id="CVE-1", ...)])
    fake.fail_image("broken:1", ToolTransientError("engine down"))

Results honour the ``severity`` threshold exactly like the real server, and every call
is recorded in ``calls`` as (tool name, arguments).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from pydantic import BaseModel

from schemas.tools.security_scanner import (
    SEVERITY_ORDER,
    DependencyCheckResult,
    DependencyNotice,
    DockerSecurityScanArgs,
    DockerSecurityScanResult,
    FileIssue,
    FileSecurityScanArgs,
    FileSecurityScanResult,
    NpmAuditArgs,
    NpmAuditResult,
    PythonSafetyCheckArgs,
    PythonSafetyCheckResult,
    Severity,
    Vulnerability,
    at_or_above,
)
from tools.errors import ToolError
from tools.spec import ToolServer, tool

_DepResult = TypeVar("_DepResult", bound=DependencyCheckResult)


def _threshold(
    vulns: Iterable[Vulnerability], severity: str
) -> tuple[list[Vulnerability], dict[str, int]]:
    vulns = sorted(vulns, key=lambda v: (-SEVERITY_ORDER[v.severity], v.package, v.id))
    counts = {level: sum(v.severity == level for v in vulns) for level in SEVERITY_ORDER}
    return [v for v in vulns if at_or_above(v.severity, severity)], counts


class FakeSecurityScannerServer(ToolServer):
    """Canned answers per image, path or manifest; clean by default."""

    name = "security-scanner"

    def __init__(
        self,
        vulnerabilities: dict[str, list[Vulnerability]] | None = None,
        *,
        packages_scanned: int = 0,
    ) -> None:
        self.image_vulnerabilities: dict[str, list[Vulnerability]] = dict(vulnerabilities or {})
        self.packages_scanned = packages_scanned
        self.file_issues: dict[str, list[FileIssue]] = {}
        self.dependency_vulnerabilities: dict[str, list[Vulnerability]] = {}
        self.dependency_notices: dict[str, list[DependencyNotice]] = {}
        self.image_errors: dict[str, ToolError] = {}
        self.calls: list[tuple[str, BaseModel]] = []

    def set_image_vulnerabilities(self, image: str, vulns: list[Vulnerability]) -> None:
        """What a scan of ``image`` finds (before the severity threshold)."""
        self.image_vulnerabilities[image] = list(vulns)

    def fail_image(self, image: str, error: ToolError) -> None:
        """Make every scan of ``image`` raise ``error``."""
        self.image_errors[image] = error

    def set_file_issues(self, path: str, issues: list[FileIssue]) -> None:
        """What a file scan of ``path`` finds."""
        self.file_issues[path] = list(issues)

    def set_dependency_vulnerabilities(
        self,
        manifest: str,
        vulns: list[Vulnerability],
        notices: list[DependencyNotice] | None = None,
    ) -> None:
        """What python_safety_check / npm_audit report for ``manifest`` (the argument)."""
        self.dependency_vulnerabilities[manifest] = list(vulns)
        self.dependency_notices[manifest] = list(notices or [])

    @tool(read_only=True)
    async def docker_security_scan(self, args: DockerSecurityScanArgs) -> DockerSecurityScanResult:
        """Scan a local image for known-vulnerable packages at or above a severity."""
        self.calls.append(("security-scanner.docker_security_scan", args))
        if args.image in self.image_errors:
            raise self.image_errors[args.image]
        found, counts = _threshold(self.image_vulnerabilities.get(args.image, []), args.severity)
        return DockerSecurityScanResult(
            image=args.image,
            severity=args.severity,
            total_vulnerabilities=len(found),
            vulnerabilities=found,
            scanner="builtin",
            packages_scanned=self.packages_scanned,
            severity_counts=counts,
        )

    @tool(read_only=True)
    async def file_security_scan(self, args: FileSecurityScanArgs) -> FileSecurityScanResult:
        """Find hard-coded secrets and risky code in a file or directory tree."""
        self.calls.append(("security-scanner.file_security_scan", args))
        issues = self.file_issues.get(args.path, [])
        return FileSecurityScanResult(
            path=args.path,
            total_issues=len(issues),
            issues=issues,
            files_scanned=len({i.file for i in issues}),
            files_skipped=0,
        )

    def _dependency_result(
        self, result: type[_DepResult], tool: str, key: str, severity: Severity, args: BaseModel
    ) -> _DepResult:
        self.calls.append((f"security-scanner.{tool}", args))
        found, _ = _threshold(self.dependency_vulnerabilities.get(key, []), severity)
        return result(
            source=key,
            severity=severity,
            total_vulnerabilities=len(found),
            vulnerabilities=found,
            packages_checked=len({v.package for v in found}),
            notices=self.dependency_notices.get(key, []),
        )

    @tool(read_only=True)
    async def python_safety_check(self, args: PythonSafetyCheckArgs) -> PythonSafetyCheckResult:
        """Check pinned pip requirements against PyPI advisories; report unpinned ones."""
        return self._dependency_result(
            PythonSafetyCheckResult,
            "python_safety_check",
            args.requirements_file,
            args.severity,
            args,
        )

    @tool(read_only=True)
    async def npm_audit(self, args: NpmAuditArgs) -> NpmAuditResult:
        """Check an npm project's locked dependencies against npm advisories."""
        return self._dependency_result(
            NpmAuditResult, "npm_audit", args.package_path, args.severity, args
        )
