"""Dependency manifests: pip requirements files and npm lock/package files.

Only exactly pinned dependencies (``name==1.2.3``, npm lock entries, exact versions in
package.json) can be checked against advisories; the rest become notices, because an
unpinned dependency resolves to whatever is newest at install time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from schemas.tools.security_scanner import DependencyNotice

MAX_MANIFEST_BYTES = 32 * 1024 * 1024
_MAX_INCLUDE_DEPTH = 5


class ManifestError(Exception):
    """The manifest is missing, too large or not parseable at all."""


@dataclass
class Dependencies:
    """Pinned (name, version) pairs and notices about everything else."""

    source: str
    pinned: list[tuple[str, str]] = field(default_factory=list)
    notices: list[DependencyNotice] = field(default_factory=list)


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes")
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with comments stripped and ``\\`` continuations joined."""
    out: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            out.append((start, buffer.strip()))
        buffer = ""
    if buffer.strip():
        out.append((start, buffer.strip()))
    return out


def read_requirements(
    path: Path, *, _depth: int = 0, _seen: set[Path] | None = None
) -> Dependencies:
    """Parse a pip requirements file, following ``-r``/``--requirement`` includes."""
    seen = _seen if _seen is not None else set()
    resolved = path.resolve()
    deps = Dependencies(source=str(path))
    if resolved in seen or _depth > _MAX_INCLUDE_DEPTH:
        return deps
    seen.add(resolved)
    for number, line in _logical_lines(_read_text(path)):
        include = re.match(r"^(?:-r|--requirement)\s*=?\s*(\S+)", line)
        if include:
            nested = read_requirements(
                path.parent / include.group(1), _depth=_depth + 1, _seen=seen
            )
            deps.pinned += nested.pinned
            deps.notices += nested.notices
            continue
        if line.startswith("-"):
            continue  # --index-url, -c constraints, -e editable checkouts: no version
        spec = re.split(r"\s+--?[a-z]", line, maxsplit=1)[0]  # drop --hash=... options
        _add_requirement(deps, spec, number)
    return deps


def _add_requirement(deps: Dependencies, spec: str, number: int) -> None:
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        deps.notices.append(
            DependencyNotice(
                package=spec.split()[0][:200],
                requirement=spec[:500],
                line=number,
                kind="unparsed",
                message=f"not a valid requirement: {exc}"[:500],
            )
        )
        return
    pins = [s for s in req.specifier if s.operator in {"==", "==="} and "*" not in s.version]
    if len(pins) == 1 and req.url is None:
        deps.pinned.append((req.name, pins[0].version))
        return
    deps.notices.append(
        DependencyNotice(
            package=req.name,
            requirement=spec[:500],
            line=number,
            kind="unversioned" if req.url else "unpinned",
            message="installed from a URL; no version to check"
            if req.url
            else "not pinned with ==; the installed version cannot be checked",
        )
    )


def _lock_name(key: str, entry: dict[str, Any]) -> str:
    # "node_modules/a/node_modules/@s/b" -> "@s/b"; aliased installs carry a "name".
    name = entry.get("name")
    if isinstance(name, str) and name:
        return name
    return key.rsplit("node_modules/", 1)[-1]


def read_npm_project(path: Path, *, include_dev: bool = True) -> Dependencies:
    """Installed versions from npm-shrinkwrap.json / package-lock.json, else package.json.

    ``path`` is the project directory, or one of those files to read it specifically.
    """
    if path.is_file():
        if path.name == "package.json":
            return _read_package_json(path, include_dev)
        return _read_lock(path, include_dev)
    if not path.is_dir():
        raise ManifestError(f"{path} does not exist")
    directory = path
    for lock_name in ("npm-shrinkwrap.json", "package-lock.json"):
        lock = directory / lock_name
        if lock.is_file():
            return _read_lock(lock, include_dev)
    manifest = directory / "package.json"
    if manifest.is_file():
        return _read_package_json(manifest, include_dev)
    raise ManifestError(
        f"{directory} has no package-lock.json, npm-shrinkwrap.json or package.json"
    )


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read_text(path))
    except ValueError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path} does not hold a JSON object")
    return data


def _read_lock(path: Path, include_dev: bool) -> Dependencies:
    data = _load_json(path)
    deps = Dependencies(source=str(path))
    packages = data.get("packages")
    if isinstance(packages, dict):  # lockfileVersion 2 and 3
        for key, entry in packages.items():
            if not key or not isinstance(entry, dict) or entry.get("link"):
                continue  # "" is the project itself; links point at workspace folders
            if entry.get("dev") and not include_dev:
                continue
            version = entry.get("version")
            if isinstance(version, str) and version:
                deps.pinned.append((_lock_name(key, entry), version))
        return deps
    _walk_v1(data.get("dependencies") or {}, deps, include_dev)  # lockfileVersion 1
    return deps


def _walk_v1(tree: dict[str, Any], deps: Dependencies, include_dev: bool) -> None:
    for name, entry in tree.items():
        if not isinstance(entry, dict) or (entry.get("dev") and not include_dev):
            continue
        version = entry.get("version")
        if isinstance(version, str) and version and not version.startswith(("file:", "git")):
            deps.pinned.append((name, version))
        _walk_v1(entry.get("dependencies") or {}, deps, include_dev)


_EXACT_SEMVER = re.compile(r"^v?=?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def _read_package_json(path: Path, include_dev: bool) -> Dependencies:
    data = _load_json(path)
    deps = Dependencies(source=str(path))
    sections = ["dependencies", "optionalDependencies"] + (
        ["devDependencies"] if include_dev else []
    )
    for section in sections:
        for name, spec in (data.get(section) or {}).items():
            spec = str(spec).strip()
            if _EXACT_SEMVER.match(spec):
                deps.pinned.append((name, spec.lstrip("v=")))
            else:
                deps.notices.append(
                    DependencyNotice(
                        package=name,
                        requirement=f"{name}@{spec}"[:500],
                        kind="unpinned",
                        message="a range, not an exact version; commit a package-lock.json",
                    )
                )
    return deps
