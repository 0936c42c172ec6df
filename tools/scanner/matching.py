"""Match a package inventory against the advisory database and filter by severity.

Debian and Ubuntu advisories are per release (``Ubuntu:22.04:LTS``, ``Debian:12``);
the image's os-release picks the releases that apply. Without an os-release (images
built FROM scratch) every Debian-family advisory is considered, which errs on the side
of reporting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from schemas.tools.security_scanner import SEVERITY_ORDER, Vulnerability, at_or_above
from tools.scanner.advisories import AdvisoryDatabase, Finding
from tools.scanner.inventory import Inventory, Package
from tools.scanner.versions import NPM, PYPI


def _release_filter(inventory: Inventory) -> tuple[tuple[str, ...], Callable[[str], bool]]:
    """The dpkg ecosystem families to search and which of their releases apply."""
    os_id, own_version = inventory.os_id, inventory.os_version_id
    if os_id == "ubuntu" or (os_id not in {"debian", None} and "ubuntu" in inventory.os_id_like):
        # A derivative (Mint, Pop!_OS) numbers its releases its own way: all releases apply.
        version = own_version if os_id == "ubuntu" else None

        def _ubuntu(ecosystem: str) -> bool:
            parts = ecosystem.split(":")[1:]
            if "Pro" in parts:  # Ubuntu Pro fixes only apply to Pro-enabled machines
                return False
            return not parts or version is None or version in parts

        return ("ubuntu",), _ubuntu
    if os_id == "debian" or "debian" in inventory.os_id_like:
        major = own_version.split(".")[0] if own_version and os_id == "debian" else None

        def _debian(ecosystem: str) -> bool:
            parts = ecosystem.split(":")[1:]
            return not parts or major is None or parts[0] == major

        return ("debian",), _debian
    return ("debian", "ubuntu"), lambda ecosystem: "Pro" not in ecosystem.split(":")


def _to_vulnerability(finding: Finding) -> Vulnerability:
    adv = finding.advisory
    return Vulnerability(
        id=adv.id,
        package=finding.package,
        installed_version=finding.installed_version,
        fixed_version=finding.fixed_version,
        severity=adv.severity,  # type: ignore[arg-type]  # always a Severity label
        ecosystem=finding.affected.ecosystem,
        summary=adv.summary,
        aliases=list(adv.aliases),
    )


def _dedupe(findings: Iterable[Finding]) -> list[Vulnerability]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for finding in findings:
        key = (finding.advisory.id, finding.package, finding.installed_version)
        if key not in seen:
            seen.add(key)
            out.append(_to_vulnerability(finding))
    return out


def match_inventory(db: AdvisoryDatabase, inventory: Inventory) -> list[Vulnerability]:
    """Every advisory that affects a package of the inventory (any severity)."""
    families, release_ok = _release_filter(inventory)
    findings: list[Finding] = []
    for pkg in inventory.packages:
        findings.extend(_match_package(db, pkg, families, release_ok))
    return sort_vulnerabilities(_dedupe(findings))


def _match_package(
    db: AdvisoryDatabase,
    pkg: Package,
    families: tuple[str, ...],
    release_ok: Callable[[str], bool],
) -> list[Finding]:
    if pkg.kind == "pypi":
        return db.match(PYPI, pkg.name, pkg.version)
    if pkg.kind == "npm":
        return db.match(NPM, pkg.name, pkg.version)
    found: list[Finding] = []
    for family in families:
        found += db.match(family, pkg.name, pkg.version, ecosystem_filter=release_ok)
        if pkg.source_name and pkg.source_name != pkg.name:
            # Advisories name the source package; a binNMU gives its own version.
            source_found = db.match(
                family,
                pkg.source_name,
                pkg.source_version or pkg.version,
                ecosystem_filter=release_ok,
                report_as=pkg.name,
            )
            found += [
                Finding(f.advisory, f.affected, f.package, pkg.version, f.fixed_version)
                for f in source_found
            ]
    return found


def match_packages(
    db: AdvisoryDatabase, family: str, packages: Iterable[tuple[str, str]]
) -> list[Vulnerability]:
    """Advisories of ``family`` (``pypi`` or ``npm``) for (name, version) pairs."""
    findings: list[Finding] = []
    for name, version in packages:
        findings.extend(db.match(family, name, version))
    return sort_vulnerabilities(_dedupe(findings))


def sort_vulnerabilities(vulns: list[Vulnerability]) -> list[Vulnerability]:
    """Worst first, then by package and id, so results are stable."""
    return sorted(vulns, key=lambda v: (-SEVERITY_ORDER[v.severity], v.package, v.id))


def apply_threshold(
    vulns: list[Vulnerability], threshold: str
) -> tuple[list[Vulnerability], dict[str, int]]:
    """The vulnerabilities at or above ``threshold``, and counts per severity of all."""
    counts = {level: 0 for level in SEVERITY_ORDER}
    for vuln in vulns:
        counts[vuln.severity] += 1
    return [v for v in vulns if at_or_above(v.severity, threshold)], counts
