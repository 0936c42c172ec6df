"""Arguments and results of the ``security-scanner`` tools.

Tool names and argument names follow the integration guide:
``security-scanner.docker_security_scan`` takes ``image`` and ``severity`` and answers
``total_vulnerabilities`` (the findings at or above ``severity``) and ``vulnerabilities``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Severity = Literal["low", "medium", "high", "critical"]
SEVERITY_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}

# GitHub advisories (and the guide's batch example) say "moderate" for "medium".
_SEVERITY_ALIASES = {"moderate": "medium", "important": "high"}


def _normalize_severity(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        return _SEVERITY_ALIASES.get(lowered, lowered)
    return value


SeverityArg = Annotated[Severity, BeforeValidator(_normalize_severity)]


def at_or_above(severity: str, threshold: str) -> bool:
    """Whether ``severity`` is at least ``threshold`` (both from :data:`Severity`)."""
    return SEVERITY_ORDER[severity] >= SEVERITY_ORDER[threshold]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Vulnerability(_Model):
    """A package version affected by a known advisory."""

    id: str = Field(description="advisory id, e.g. CVE-2022-0778 or GHSA-...")
    package: str
    installed_version: str
    fixed_version: str | None = Field(default=None, description="first fixed version, if any")
    severity: Severity
    ecosystem: str = Field(description="e.g. Debian, Ubuntu:22.04, PyPI, npm")
    summary: str = ""
    aliases: list[str] = Field(default_factory=list)


class DockerSecurityScanArgs(_Model):
    """Scan a local Docker image for known-vulnerable packages."""

    image: str = Field(
        min_length=1,
        max_length=500,
        pattern=r"^[^\s-]\S*$",
        description="image reference or id, e.g. myapp:1.2.3 (no spaces, no leading '-')",
    )
    severity: SeverityArg = Field(default="low", description="lowest severity to report")


class DockerSecurityScanResult(_Model):
    """Vulnerabilities at or above the requested severity."""

    image: str
    severity: Severity
    total_vulnerabilities: int = Field(ge=0)
    vulnerabilities: list[Vulnerability]
    scanner: Literal["trivy", "builtin"]
    packages_scanned: int = Field(ge=0)
    severity_counts: dict[str, int] = Field(
        default_factory=dict, description="findings per severity, before the threshold"
    )


class FileSecurityScanArgs(_Model):
    """Scan a file or a directory tree for hard-coded secrets and risky code."""

    path: str = Field(min_length=1, max_length=4096)
    exclude_patterns: list[str] = Field(
        default_factory=list,
        description="glob patterns matched against relative paths and path components",
    )


class FileIssue(_Model):
    """One finding of a file scan; ``excerpt`` has secret values masked."""

    file: str = Field(description="path relative to the scanned directory")
    line: int = Field(ge=1)
    rule: str
    category: Literal["secret", "risky-code"]
    severity: Severity
    excerpt: str


class FileSecurityScanResult(_Model):
    """Findings of a file scan."""

    path: str
    total_issues: int = Field(ge=0)
    issues: list[FileIssue]
    files_scanned: int = Field(ge=0)
    files_skipped: int = Field(ge=0, description="binary, too large, excluded or symlinked")


class DependencyNotice(_Model):
    """Something about a dependency that is not a vulnerability (e.g. not pinned)."""

    package: str
    requirement: str
    line: int | None = None
    kind: Literal["unpinned", "unparsed", "unversioned"]
    severity: Literal["info"] = "info"
    message: str


class PythonSafetyCheckArgs(_Model):
    """Check a pip requirements file against PyPI advisories."""

    requirements_file: str = Field(min_length=1, max_length=4096)
    severity: SeverityArg = Field(default="low", description="lowest severity to report")


class NpmAuditArgs(_Model):
    """Check an npm project (package-lock.json or package.json) against npm advisories."""

    package_path: str = Field(min_length=1, max_length=4096)
    severity: SeverityArg = Field(default="low", description="lowest severity to report")
    include_dev: bool = True


class DependencyCheckResult(_Model):
    """Vulnerable dependencies at or above the requested severity, and notices."""

    source: str = Field(description="the manifest that was read")
    severity: Severity
    total_vulnerabilities: int = Field(ge=0)
    vulnerabilities: list[Vulnerability]
    packages_checked: int = Field(ge=0)
    notices: list[DependencyNotice] = Field(default_factory=list)


class PythonSafetyCheckResult(DependencyCheckResult):
    """Result of ``python_safety_check``."""


class NpmAuditResult(DependencyCheckResult):
    """Result of ``npm_audit``."""
