"""The ``security-scanner`` tool server: image, file and dependency scans.

Images are scanned by Trivy when it is installed and allowed (``use_trivy``), otherwise
by the built-in scanner (:mod:`tools.scanner`): the image's filesystem is streamed from
the Docker Engine, its package inventory read, and matched against an offline
directory of OSV advisories. Files are scanned for hard-coded secrets and risky code;
pip and npm manifests against the same advisories.

Errors: an unknown image, a missing file or a missing advisory directory is
:class:`ToolFailed`; an unreachable engine, a 5xx or 429 is :class:`ToolTransientError`;
a scan over its time limit is :class:`ToolTimeout`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import aiodocker
from pydantic import BaseModel, ConfigDict, Field

from schemas.tools.security_scanner import (
    DependencyCheckResult,
    DockerSecurityScanArgs,
    DockerSecurityScanResult,
    FileSecurityScanArgs,
    FileSecurityScanResult,
    NpmAuditArgs,
    NpmAuditResult,
    PythonSafetyCheckArgs,
    PythonSafetyCheckResult,
    Severity,
)
from tools.errors import ToolError, ToolFailed, ToolTimeout, ToolTransientError
from tools.scanner.advisories import AdvisoryDatabase, AdvisoryLoadError, directory_signature
from tools.scanner.filescan import scan_path
from tools.scanner.image_export import read_image_inventory
from tools.scanner.manifests import Dependencies, ManifestError, read_npm_project, read_requirements
from tools.scanner.matching import apply_threshold, match_inventory, match_packages
from tools.scanner.trivy import TrivyError, run_trivy
from tools.scanner.versions import NPM, PYPI
from tools.spec import ToolServer, tool

_DepResult = TypeVar("_DepResult", bound=DependencyCheckResult)

log = logging.getLogger(__name__)

SERVER = "security-scanner"


class SecurityScannerConfig(BaseModel):
    """How the scanner runs; every path and limit an operator may need to change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trivy_path: str | None = Field(
        default_factory=lambda: shutil.which("trivy"), description="trivy binary; None if absent"
    )
    use_trivy: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="auto: Trivy if found, else (or if it fails) the built-in scanner",
    )
    advisories_dir: Path | None = Field(
        default=None, description="directory of OSV JSON advisories (files, lists or .zip exports)"
    )
    advisories_recheck: float = Field(
        default=60.0, ge=0, description="seconds between checks of advisories_dir for changes"
    )
    trivy_args: list[str] = Field(
        default_factory=list,
        description="extra trivy arguments, e.g. ['--skip-db-update'] on offline hosts",
    )
    docker_url: str | None = Field(
        default=None, description="Docker Engine URL; None = DOCKER_HOST/socket"
    )
    scan_timeout: float = Field(default=600.0, gt=0, description="seconds for one image scan")
    read_timeout: float = Field(
        default=60.0, gt=0, description="seconds without data from the engine"
    )
    max_file_bytes: int = Field(default=1024 * 1024, gt=0, description="larger files are skipped")
    max_files: int = Field(default=50_000, gt=0, description="files scanned per file_security_scan")
    max_issues: int = Field(default=1000, gt=0, description="issues listed (all are counted)")
    allowed_roots: list[Path] | None = Field(
        default=None,
        description="if set, file and manifest tools only read under these directories",
    )


def _docker_error(exc: aiodocker.DockerError, tool_name: str, image: str) -> ToolError:
    status = exc.status
    if status == 404:
        return ToolFailed(f"image {image!r} not found: {exc.message}", tool=tool_name, status=404)
    if status == 900 or status == 429 or status >= 500:  # 900: aiodocker's "cannot connect"
        return ToolTransientError(
            f"Docker Engine error: {exc.message}", tool=tool_name, status=status
        )
    return ToolFailed(
        f"Docker Engine refused the scan: {exc.message}", tool=tool_name, status=status
    )


class SecurityScannerServer(ToolServer):
    """Vulnerability scans of images and dependencies, and secret scans of files."""

    name = SERVER

    def __init__(
        self, config: SecurityScannerConfig | None = None, *, docker: aiodocker.Docker | None = None
    ) -> None:
        self.config = config or SecurityScannerConfig()
        self._docker = docker
        self._owns_docker = docker is None
        self._db: AdvisoryDatabase | None = None
        self._db_signature: tuple[tuple[str, int, int], ...] | None = None
        self._db_checked = 0.0
        self._db_lock = asyncio.Lock()

    async def start(self) -> None:
        """Open the Docker client (it needs a running event loop)."""
        self._client()

    async def close(self) -> None:
        """Close the Docker client if this server opened it."""
        if self._docker is not None and self._owns_docker:
            await self._docker.close()
            self._docker = None

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self.config.docker_url)
        return self._docker

    async def advisories(self, tool_name: str) -> AdvisoryDatabase:
        """The advisory database, reloaded when the directory's files change."""
        directory = self.config.advisories_dir
        if directory is None:
            # Scanning against nothing would report every image as clean.
            raise ToolFailed(
                "advisories_dir is not configured; no advisories to match", tool=tool_name
            )
        async with self._db_lock:
            now = time.monotonic()
            if self._db is not None and now - self._db_checked < self.config.advisories_recheck:
                return self._db
            self._db_checked = now
            signature = await asyncio.to_thread(directory_signature, directory)
            if self._db is None or signature != self._db_signature:
                try:
                    self._db = await asyncio.to_thread(AdvisoryDatabase.load_dir, directory)
                except AdvisoryLoadError as exc:
                    raise ToolFailed(str(exc), tool=tool_name) from exc
                self._db_signature = signature
                log.info("loaded %d advisories from %s", self._db.count, directory)
            return self._db

    def _use_trivy(self, tool_name: str) -> bool:
        mode = self.config.use_trivy
        if mode == "never":
            return False
        if self.config.trivy_path is None:
            if mode == "always":
                raise ToolFailed("use_trivy is 'always' but trivy is not installed", tool=tool_name)
            return False
        return True

    @tool(read_only=True)
    async def docker_security_scan(self, args: DockerSecurityScanArgs) -> DockerSecurityScanResult:
        """Scan a local image for known-vulnerable packages at or above a severity."""
        tool_name = f"{SERVER}.docker_security_scan"
        if self._use_trivy(tool_name):
            assert self.config.trivy_path is not None
            try:
                report = await run_trivy(
                    self.config.trivy_path,
                    args.image,
                    args.severity,
                    timeout=self.config.scan_timeout,
                    docker_url=self.config.docker_url,
                    extra_args=self.config.trivy_args,
                )
            except TimeoutError as exc:
                raise ToolTimeout(
                    f"trivy took over {self.config.scan_timeout}s", tool=tool_name
                ) from exc
            except TrivyError as exc:
                if self.config.use_trivy == "always" or self.config.advisories_dir is None:
                    raise ToolFailed(f"{exc}: {exc.stderr}", tool=tool_name) from exc
                log.warning("trivy failed (%s); falling back to the built-in scanner", exc)
            else:
                found, counts = apply_threshold(report.vulnerabilities, args.severity)
                return DockerSecurityScanResult(
                    image=args.image,
                    severity=args.severity,
                    total_vulnerabilities=len(found),
                    vulnerabilities=found,
                    scanner="trivy",
                    packages_scanned=report.packages_scanned,
                    severity_counts=counts,
                )
        return await self._builtin_image_scan(args, tool_name)

    async def _builtin_image_scan(
        self, args: DockerSecurityScanArgs, tool_name: str
    ) -> DockerSecurityScanResult:
        db = await self.advisories(tool_name)
        try:
            async with asyncio.timeout(self.config.scan_timeout):
                inventory = await read_image_inventory(
                    self._client(), args.image, read_timeout=self.config.read_timeout
                )
        except aiodocker.DockerError as exc:
            raise _docker_error(exc, tool_name, args.image) from exc
        except TimeoutError as exc:
            raise ToolTimeout(f"scan of {args.image} took too long", tool=tool_name) from exc
        except tarfile.TarError as exc:
            raise ToolFailed(f"unreadable export of {args.image}: {exc}", tool=tool_name) from exc
        except OSError as exc:  # connection dropped mid-stream
            raise ToolTransientError(
                f"export of {args.image} failed: {exc}", tool=tool_name
            ) from exc
        vulns = await asyncio.to_thread(match_inventory, db, inventory)
        found, counts = apply_threshold(vulns, args.severity)
        return DockerSecurityScanResult(
            image=args.image,
            severity=args.severity,
            total_vulnerabilities=len(found),
            vulnerabilities=found,
            scanner="builtin",
            packages_scanned=len(inventory.packages),
            severity_counts=counts,
        )

    def _local_path(self, raw: str, tool_name: str) -> Path:
        """``raw`` resolved; ToolFailed if it lies outside ``allowed_roots``."""
        path = Path(raw).expanduser().resolve()
        roots = self.config.allowed_roots
        if roots is not None and not any(path.is_relative_to(r.resolve()) for r in roots):
            raise ToolFailed(
                f"{raw} is outside the directories this scanner may read", tool=tool_name
            )
        return path

    @tool(read_only=True)
    async def file_security_scan(self, args: FileSecurityScanArgs) -> FileSecurityScanResult:
        """Find hard-coded secrets and risky code in a file or directory tree."""
        tool_name = f"{SERVER}.file_security_scan"
        root = self._local_path(args.path, tool_name)
        try:
            report = await asyncio.to_thread(
                scan_path,
                root,
                exclude_patterns=list(args.exclude_patterns),
                max_file_bytes=self.config.max_file_bytes,
                max_files=self.config.max_files,
                max_issues=self.config.max_issues,
            )
        except FileNotFoundError as exc:
            raise ToolFailed(f"path {args.path} does not exist", tool=tool_name) from exc
        return FileSecurityScanResult(
            path=args.path,
            total_issues=report.total_issues,
            issues=report.issues,
            files_scanned=report.files_scanned,
            files_skipped=report.files_skipped,
        )

    async def _check_dependencies(
        self,
        result: type[_DepResult],
        tool_name: str,
        ecosystem: str,
        loader: Callable[[], Dependencies],
        severity: Severity,
    ) -> _DepResult:
        """Read a manifest with ``loader`` and match its pinned packages of ``ecosystem``
        against the advisories, keeping findings at or above ``severity``."""
        db = await self.advisories(tool_name)
        try:
            deps = await asyncio.to_thread(loader)
        except ManifestError as exc:
            raise ToolFailed(str(exc), tool=tool_name) from exc
        found, _counts = apply_threshold(match_packages(db, ecosystem, deps.pinned), severity)
        return result(
            source=deps.source,
            severity=severity,
            total_vulnerabilities=len(found),
            vulnerabilities=found,
            packages_checked=len(deps.pinned),
            notices=deps.notices,
        )

    @tool(read_only=True)
    async def python_safety_check(self, args: PythonSafetyCheckArgs) -> PythonSafetyCheckResult:
        """Check pinned pip requirements against PyPI advisories; report unpinned ones."""
        tool_name = f"{SERVER}.python_safety_check"
        path = self._local_path(args.requirements_file, tool_name)
        return await self._check_dependencies(
            PythonSafetyCheckResult, tool_name, PYPI, lambda: read_requirements(path), args.severity
        )

    @tool(read_only=True)
    async def npm_audit(self, args: NpmAuditArgs) -> NpmAuditResult:
        """Check an npm project's locked dependencies against npm advisories."""
        tool_name = f"{SERVER}.npm_audit"
        path = self._local_path(args.package_path, tool_name)
        return await self._check_dependencies(
            NpmAuditResult,
            tool_name,
            NPM,
            lambda: read_npm_project(path, include_dev=args.include_dev),
            args.severity,
        )
