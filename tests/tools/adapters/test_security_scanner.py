"""The ``security-scanner`` adapter: the built-in image scan against the live Docker
Engine, file and dependency scans on temporary trees, and the Trivy switch.

Images are built FROM scratch with a static busybox and a planted, known-vulnerable
package inventory; the advisories are the small OSV files in tests/tools/scanner/data.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from pydantic import BaseModel, ValidationError

from schemas.tools.security_scanner import (
    DockerSecurityScanArgs,
    FileSecurityScanArgs,
    NpmAuditArgs,
    PythonSafetyCheckArgs,
)
from tools.adapters.security_scanner import SecurityScannerConfig, SecurityScannerServer
from tools.errors import ToolFailed, ToolTimeout
from tools.scanner import image_export

ADVISORIES = Path(__file__).resolve().parents[1] / "scanner" / "data" / "advisories"
TRIVY_REPORT = ADVISORIES.parent / "trivy-report.json"
BUSYBOX = Path("/usr/bin/busybox")

DPKG_STATUS = """\
Package: openssl
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 3.0.2-0ubuntu1
Description: Secure Sockets Layer toolkit
 A continuation line that must not confuse the parser.

Package: curl
Status: deinstall ok config-files
Architecture: amd64
Version: 7.81.0-1
Description: removed, only its configuration files remain
"""

OS_RELEASE = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n'

VULNERABLE_FILES = {
    "var/lib/dpkg/status": DPKG_STATUS,
    "etc/os-release": OS_RELEASE,
    "usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA": (
        "Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\nSummary: HTTP\n\nLong text\n"
    ),
    "app/node_modules/lodash/package.json": json.dumps({"name": "lodash", "version": "4.17.15"}),
    # A fixed copy deeper in the tree: counted, not reported.
    "app/node_modules/a/node_modules/lodash/package.json": json.dumps(
        {"name": "lodash", "version": "4.17.21"}
    ),
}

DOCKERFILE = """\
FROM scratch
LABEL codebus.test={label}
COPY busybox /bin/busybox
COPY rootfs/ /
ENTRYPOINT ["/bin/busybox"]
"""


def _context_tar(label: str, files: dict[str, str]) -> io.BytesIO:
    """An in-memory build context: Dockerfile, busybox and ``rootfs/<files>``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        add("Dockerfile", DOCKERFILE.format(label=label).encode())
        add("busybox", BUSYBOX.read_bytes(), 0o755)
        add("rootfs/.keep", b"")
        for path, text in files.items():
            add(f"rootfs/{path}", text.encode())
    buf.seek(0)
    return buf


async def _build(docker: aiodocker.Docker, tag: str, label: str, files: dict[str, str]) -> None:
    await docker.images.build(
        fileobj=_context_tar(label, files), encoding="identity", tag=tag, rm=True, forcerm=True
    )


@pytest.fixture
async def docker(docker_host: str) -> AsyncIterator[aiodocker.Docker]:
    """A raw client for building and cleaning up test images."""
    client = aiodocker.Docker(url=docker_host)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def images(docker: aiodocker.Docker) -> AsyncIterator[dict[str, str]]:
    """A vulnerable and a clean image, removed after the test."""
    label = uuid.uuid4().hex[:10]
    tags = {
        "vulnerable": f"codebus-test/scan-vulnerable:{label}",
        "clean": f"codebus-test/scan-clean:{label}",
    }
    try:
        await _build(docker, tags["vulnerable"], label, VULNERABLE_FILES)
        await _build(docker, tags["clean"], label, {"etc/os-release": OS_RELEASE})
        yield tags
    finally:
        for tag in tags.values():
            try:
                await docker.images.delete(tag, force=True)
            except aiodocker.DockerError:
                pass
        # The scanner's export containers must be gone too.
        leftovers = await docker.containers.list(
            all=True, filters=json.dumps({"label": ["io.codebus.purpose=security-scan-export"]})
        )
        for container in leftovers:
            await container.delete(force=True)
        assert not leftovers, "the scanner left export containers behind"


@pytest.fixture
async def server(docker_host: str) -> AsyncIterator[SecurityScannerServer]:
    """The adapter on the built-in scanner with the test advisories."""
    config = SecurityScannerConfig(
        use_trivy="never", advisories_dir=ADVISORIES, docker_url=docker_host, scan_timeout=60
    )
    scanner = SecurityScannerServer(config)
    await scanner.start()
    try:
        yield scanner
    finally:
        await scanner.close()


async def call(server: SecurityScannerServer, tool: str, args: BaseModel) -> Any:
    """Call ``security-scanner.<tool>`` through its bound method, as the registry does."""
    return await {t.spec.name: t for t in server.tools()}[f"security-scanner.{tool}"].call(args)


@pytest.mark.docker
async def test_image_scan_finds_exactly_the_planted_vulnerabilities(
    server: SecurityScannerServer, images: dict[str, str]
) -> None:
    args = DockerSecurityScanArgs(image=images["vulnerable"], severity="low")
    result = await call(server, "docker_security_scan", args)

    assert result.scanner == "builtin"
    assert result.packages_scanned == 4  # openssl, requests, two lodash copies (curl removed)
    got = {(v.id, v.package, v.installed_version): v for v in result.vulnerabilities}
    assert set(got) == {
        ("UBUNTU-CVE-2022-0778", "openssl", "3.0.2-0ubuntu1"),
        ("GHSA-x84v-xcm2-53pg", "requests", "2.19.0"),
        ("GHSA-p6mc-m468-83gw", "lodash", "4.17.15"),
        ("GHSA-29mw-wpgm-hmr9", "lodash", "4.17.15"),
    }
    assert result.total_vulnerabilities == 4
    openssl = got[("UBUNTU-CVE-2022-0778", "openssl", "3.0.2-0ubuntu1")]
    assert openssl.fixed_version == "3.0.2-0ubuntu1.2"
    assert openssl.severity == "high"  # CVSS 3.1 vector scoring 7.5
    assert openssl.ecosystem == "Ubuntu:22.04:LTS"
    assert openssl.aliases == ["CVE-2022-0778"]
    requests = got[("GHSA-x84v-xcm2-53pg", "requests", "2.19.0")]
    assert (requests.severity, requests.fixed_version, requests.ecosystem) == (
        "critical",
        "2.20.0",
        "PyPI",
    )
    assert requests.summary == "Insufficiently Protected Credentials in Requests"
    redos = got[("GHSA-29mw-wpgm-hmr9", "lodash", "4.17.15")]
    assert (redos.severity, redos.fixed_version, redos.ecosystem) == ("medium", "4.17.21", "npm")
    assert result.severity_counts == {"low": 0, "medium": 1, "high": 2, "critical": 1}
    # Worst first.
    assert result.vulnerabilities[0].id == "GHSA-x84v-xcm2-53pg"


@pytest.mark.docker
async def test_image_scan_severity_threshold_and_clean_image(
    server: SecurityScannerServer, images: dict[str, str]
) -> None:
    high = await call(
        server,
        "docker_security_scan",
        DockerSecurityScanArgs(image=images["vulnerable"], severity="high"),
    )
    assert high.total_vulnerabilities == 3
    assert {v.severity for v in high.vulnerabilities} == {"high", "critical"}

    critical = await call(
        server,
        "docker_security_scan",
        DockerSecurityScanArgs(image=images["vulnerable"], severity="critical"),
    )
    assert [v.id for v in critical.vulnerabilities] == ["GHSA-x84v-xcm2-53pg"]
    assert critical.total_vulnerabilities == 1

    clean = await call(
        server,
        "docker_security_scan",
        DockerSecurityScanArgs(image=images["clean"], severity="low"),
    )
    assert clean.total_vulnerabilities == 0
    assert clean.vulnerabilities == []
    assert clean.packages_scanned == 0


@pytest.mark.docker
async def test_image_scan_of_a_missing_image_is_a_permanent_failure(
    server: SecurityScannerServer,
) -> None:
    missing = f"codebus-test/does-not-exist:{uuid.uuid4().hex[:8]}"
    with pytest.raises(ToolFailed) as info:
        await call(server, "docker_security_scan", DockerSecurityScanArgs(image=missing))
    assert info.value.status == 404
    assert info.value.tool == "security-scanner.docker_security_scan"


async def test_builtin_scan_without_advisories_refuses_rather_than_reports_clean() -> None:
    scanner = SecurityScannerServer(SecurityScannerConfig(use_trivy="never"))
    with pytest.raises(ToolFailed, match="advisories_dir"):
        await call(scanner, "docker_security_scan", DockerSecurityScanArgs(image="x:1"))
    await scanner.close()


def test_arguments_are_validated_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="severity"):
        DockerSecurityScanArgs(image="app:1", severity="urgent")
    for bad in ("", "--help", "app 1"):
        with pytest.raises(ValidationError, match="image"):
            DockerSecurityScanArgs(image=bad)
    # The guide's batch example says "moderate", GitHub's word for medium.
    assert DockerSecurityScanArgs(image="app:1", severity="moderate").severity == "medium"


def test_tools_are_registered_under_the_guide_names() -> None:
    names = {t.spec.name: t.spec for t in SecurityScannerServer(SecurityScannerConfig()).tools()}
    assert set(names) == {
        "security-scanner.docker_security_scan",
        "security-scanner.file_security_scan",
        "security-scanner.python_safety_check",
        "security-scanner.npm_audit",
    }
    assert all(spec.read_only for spec in names.values())


def _fake_trivy(tmp_path: Path, body: str) -> str:
    """An executable standing in for trivy (not installed here)."""
    script = tmp_path / "trivy"
    script.write_text(f"#!{sys.executable}\nimport sys, pathlib\n{body}\n")
    script.chmod(0o755)
    return str(script)


async def test_auto_mode_uses_trivy_when_present(tmp_path: Path) -> None:
    trivy = _fake_trivy(tmp_path, f"print(pathlib.Path({str(TRIVY_REPORT)!r}).read_text())")
    scanner = SecurityScannerServer(SecurityScannerConfig(trivy_path=trivy, use_trivy="auto"))
    result = await call(
        scanner, "docker_security_scan", DockerSecurityScanArgs(image="app:1", severity="critical")
    )
    assert result.scanner == "trivy"
    # The stand-in ignores --severity; the adapter still applies the threshold itself.
    assert [v.id for v in result.vulnerabilities] == ["CVE-2018-18074"]
    assert result.total_vulnerabilities == 1
    assert result.packages_scanned == 4
    await scanner.close()


async def test_always_mode_reports_trivy_failures(tmp_path: Path) -> None:
    trivy = _fake_trivy(tmp_path, "sys.stderr.write('FATAL no DB'); sys.exit(1)")
    scanner = SecurityScannerServer(
        SecurityScannerConfig(trivy_path=trivy, use_trivy="always", advisories_dir=ADVISORIES)
    )
    with pytest.raises(ToolFailed, match="no DB"):
        await call(scanner, "docker_security_scan", DockerSecurityScanArgs(image="app:1"))
    missing = SecurityScannerServer(SecurityScannerConfig(trivy_path=None, use_trivy="always"))
    with pytest.raises(ToolFailed, match="not installed"):
        await call(missing, "docker_security_scan", DockerSecurityScanArgs(image="app:1"))


@pytest.mark.docker
async def test_never_mode_and_failing_trivy_in_auto_mode_use_the_builtin_scanner(
    tmp_path: Path, docker_host: str, images: dict[str, str]
) -> None:
    marker = tmp_path / "trivy-ran"
    trivy = _fake_trivy(tmp_path, f"pathlib.Path({str(marker)!r}).touch(); sys.exit(1)")
    args = DockerSecurityScanArgs(image=images["vulnerable"], severity="critical")
    for mode in ("never", "auto"):
        config = SecurityScannerConfig(
            trivy_path=trivy, use_trivy=mode, advisories_dir=ADVISORIES, docker_url=docker_host
        )
        scanner = SecurityScannerServer(config)
        try:
            result = await call(scanner, "docker_security_scan", args)
        finally:
            await scanner.close()
        assert result.scanner == "builtin"
        assert [v.id for v in result.vulnerabilities] == ["GHSA-x84v-xcm2-53pg"]
        # "never" does not even start trivy; "auto" tried it and fell back.
        assert marker.exists() is (mode == "auto")


async def test_file_scan_reports_secrets_without_their_values(tmp_path: Path) -> None:
    secrets = {
        "aws-access-key-id": "AKIA" + "Q2W3E4R5T6Y7U8I9",
        "github-token": "ghp_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8",
        "generic-password": "Tr0ub4dor&" + "3-horse",
    }
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "settings.py").write_text(
        f'AWS_ACCESS_KEY_ID = "{secrets["aws-access-key-id"]}"\n'
        f'GITHUB_TOKEN = "{secrets["github-token"]}"\n'
        f'db_password = "{secrets["generic-password"]}"\n'
        "data = yaml.load(stream)\n"
    )
    (tmp_path / "deploy" / "run.sh").write_text("#!/bin/sh\nchmod 777 /srv/app\n")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.js").write_text("eval(x)\n")
    server = SecurityScannerServer(SecurityScannerConfig(allowed_roots=[tmp_path]))
    args = FileSecurityScanArgs(path=str(tmp_path), exclude_patterns=["node_modules"])
    result = await call(server, "file_security_scan", args)

    assert {(i.file, i.line, i.rule) for i in result.issues} == {
        ("deploy/settings.py", 1, "aws-access-key-id"),
        ("deploy/settings.py", 2, "github-token"),
        ("deploy/settings.py", 3, "generic-password"),
        ("deploy/settings.py", 4, "yaml-unsafe-load"),
        ("deploy/run.sh", 2, "chmod-777"),
    }
    assert result.total_issues == 5
    assert result.files_scanned == 2
    dumped = result.model_dump_json()
    for value in secrets.values():
        assert value not in dumped

    with pytest.raises(ToolFailed, match="outside"):
        await call(server, "file_security_scan", FileSecurityScanArgs(path="/etc"))
    with pytest.raises(ToolFailed, match="does not exist"):
        await call(server, "file_security_scan", FileSecurityScanArgs(path=str(tmp_path / "no")))


async def test_python_safety_check(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("Requests==2.19.0\nurllib3>=1.26\nflask==2.3.3\n")
    server = SecurityScannerServer(SecurityScannerConfig(advisories_dir=ADVISORIES))
    result = await call(
        server, "python_safety_check", PythonSafetyCheckArgs(requirements_file=str(requirements))
    )
    assert [
        (v.id, v.package, v.installed_version, v.fixed_version) for v in result.vulnerabilities
    ] == [("GHSA-x84v-xcm2-53pg", "Requests", "2.19.0", "2.20.0")]
    assert result.total_vulnerabilities == 1
    assert result.packages_checked == 2
    assert [(n.package, n.kind, n.severity) for n in result.notices] == [
        ("urllib3", "unpinned", "info")
    ]
    with pytest.raises(ToolFailed, match="cannot read"):
        await call(
            server,
            "python_safety_check",
            PythonSafetyCheckArgs(requirements_file=str(tmp_path / "missing.txt")),
        )


async def test_npm_audit_on_a_lockfile(tmp_path: Path) -> None:
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "web", "version": "1.0.0"},
            "node_modules/lodash": {"version": "4.17.15"},
            "node_modules/nested/node_modules/lodash": {"version": "4.17.19"},
            "node_modules/left-pad": {"version": "1.3.0"},
        },
    }
    (tmp_path / "package-lock.json").write_text(json.dumps(lock))
    server = SecurityScannerServer(SecurityScannerConfig(advisories_dir=ADVISORIES))
    result = await call(server, "npm_audit", NpmAuditArgs(package_path=str(tmp_path)))
    got = {(v.id, v.installed_version): v.fixed_version for v in result.vulnerabilities}
    assert got == {
        ("GHSA-p6mc-m468-83gw", "4.17.15"): "4.17.19",
        ("GHSA-29mw-wpgm-hmr9", "4.17.15"): "4.17.21",
        ("GHSA-29mw-wpgm-hmr9", "4.17.19"): "4.17.21",
    }
    assert result.packages_checked == 3
    high = await call(
        server, "npm_audit", NpmAuditArgs(package_path=str(tmp_path), severity="high")
    )
    assert [v.id for v in high.vulnerabilities] == ["GHSA-p6mc-m468-83gw"]
    with pytest.raises(ToolFailed, match="does not exist"):
        await call(server, "npm_audit", NpmAuditArgs(package_path=str(tmp_path / "x")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToolFailed, match=r"no package-lock\.json"):
        await call(server, "npm_audit", NpmAuditArgs(package_path=str(tmp_path / "empty")))


async def test_advisories_are_reloaded_when_the_directory_changes(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flask==2.3.3\n")
    advisories = tmp_path / "osv"
    advisories.mkdir()
    server = SecurityScannerServer(
        SecurityScannerConfig(advisories_dir=advisories, advisories_recheck=0)
    )
    args = PythonSafetyCheckArgs(requirements_file=str(tmp_path / "requirements.txt"))
    assert (await call(server, "python_safety_check", args)).total_vulnerabilities == 0
    (advisories / "flask.json").write_text(
        json.dumps(
            {
                "id": "GHSA-m2qf-hxjv-5gpq",
                "affected": [
                    {
                        "package": {"ecosystem": "PyPI", "name": "flask"},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [{"introduced": "2.3.0"}, {"fixed": "2.3.4"}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    result = await call(server, "python_safety_check", args)
    assert [(v.id, v.severity) for v in result.vulnerabilities] == [
        ("GHSA-m2qf-hxjv-5gpq", "medium")
    ]


@pytest.mark.docker
async def test_a_scan_over_its_time_limit_times_out_and_removes_its_container(
    docker_host: str, images: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def stalled_parse(fileobj: Any) -> None:
        # Stands in for a huge export: keeps reading until the scanner closes the stream.
        while True:
            time.sleep(0.02)
            fileobj.read(1)

    monkeypatch.setattr(image_export, "_read_tar", stalled_parse)
    config = SecurityScannerConfig(
        use_trivy="never", advisories_dir=ADVISORIES, docker_url=docker_host, scan_timeout=1.0
    )
    scanner = SecurityScannerServer(config)
    try:
        with pytest.raises(ToolTimeout):
            await call(
                scanner, "docker_security_scan", DockerSecurityScanArgs(image=images["vulnerable"])
            )
    finally:
        await scanner.close()
    # The images fixture asserts that no export container is left behind.
