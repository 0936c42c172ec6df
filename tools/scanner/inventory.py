"""Package inventory of a filesystem, read from the files package managers leave behind.

- dpkg: ``var/lib/dpkg/status`` and ``var/lib/dpkg/status.d/*`` (distroless images),
  entries whose ``Status`` says ``installed``; the ``Source`` package is kept because
  Debian and Ubuntu advisories name source packages.
- Python: ``*.dist-info/METADATA`` and ``*.egg-info/PKG-INFO`` (or an ``.egg-info``
  file) under any ``site-packages`` or ``dist-packages`` directory.
- npm: ``node_modules/<name>/package.json`` and ``node_modules/@scope/<name>/package.json``
  (not the package.json files nested deeper inside a package, such as lodash/fp).
- the distribution, from ``etc/os-release`` or ``usr/lib/os-release``.

The functions here work on (path, bytes) pairs, so the same code reads an exported
container filesystem or a directory tree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email.parser import HeaderParser

#: Largest file read for each kind: dpkg status files of big images run to megabytes.
MAX_STATUS_BYTES = 64 * 1024 * 1024
MAX_METADATA_BYTES = 4 * 1024 * 1024

_DPKG_STATUS = re.compile(r"^var/lib/dpkg/(status|status\.d/[^/]+)$")
_PY_METADATA = re.compile(
    r"(^|/)(site|dist)-packages/[^/]+\.(dist-info/METADATA|egg-info/PKG-INFO|egg-info)$"
)
_NPM_PACKAGE = re.compile(r"(^|/)node_modules/(@[^/]+/)?[^/@][^/]*/package\.json$")
_OS_RELEASE = re.compile(r"^(etc|usr/lib)/os-release$")


@dataclass(frozen=True)
class Package:
    """One installed package. ``kind`` is "dpkg", "pypi" or "npm"."""

    kind: str
    name: str
    version: str
    path: str
    source_name: str | None = None
    source_version: str | None = None


@dataclass
class Inventory:
    """Every package found, plus the distribution of the filesystem if known."""

    packages: list[Package] = field(default_factory=list)
    os_id: str | None = None
    os_version_id: str | None = None
    os_id_like: tuple[str, ...] = ()


def wanted(path: str) -> int:
    """Size cap if the inventory needs the file at ``path`` (relative, no leading /), else 0."""
    if _DPKG_STATUS.match(path):
        return MAX_STATUS_BYTES if not path.endswith(".md5sums") else 0
    if _PY_METADATA.search(path) or _NPM_PACKAGE.search(path) or _OS_RELEASE.match(path):
        return MAX_METADATA_BYTES
    return 0


def normalize_member_path(name: str) -> str:
    """Tar member name as a relative path: ``./var/lib`` and ``/var/lib`` -> ``var/lib``."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def parse_dpkg_status(text: str, path: str, *, assume_installed: bool = False) -> list[Package]:
    """Installed packages of a dpkg status file (RFC 822-like paragraphs)."""
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if not line or line[0] in " \t":
                continue  # continuation lines belong to long fields we do not need
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        name, version = fields.get("package"), fields.get("version")
        if not name or not version:
            continue
        status = fields.get("status")
        if status is None and not assume_installed:
            continue
        if status is not None and status.split()[-1:] != ["installed"]:
            continue  # removed, config-files, half-installed, ...
        source_name, source_version = None, None
        if "source" in fields:
            # "Source: openssl" or "Source: openssl (3.0.2-0ubuntu1)" for binNMUs
            m = re.match(r"^(\S+)(?:\s+\(([^)]+)\))?", fields["source"])
            if m:
                source_name, source_version = m.group(1), m.group(2)
        found.append(Package("dpkg", name, version, path, source_name, source_version))
    return found


def parse_python_metadata(text: str, path: str) -> Package | None:
    """Name and Version headers of a METADATA / PKG-INFO file."""
    headers = HeaderParser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    return Package("pypi", str(name).strip(), str(version).strip(), path)


def parse_npm_package_json(text: str, path: str) -> Package | None:
    """name and version of a package.json; None if either is missing or not a string."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return None
    return Package("npm", name, version, path)


def parse_os_release(text: str, inventory: Inventory) -> None:
    """Fill ``os_id``, ``os_version_id`` and ``os_id_like`` from an os-release file."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("\"'")
    inventory.os_id = values.get("ID", "").lower() or None
    inventory.os_version_id = values.get("VERSION_ID") or None
    inventory.os_id_like = tuple(values.get("ID_LIKE", "").lower().split())


def add_file(inventory: Inventory, path: str, data: bytes) -> None:
    """Record what the file at ``path`` (as accepted by :func:`wanted`) says."""
    text = data.decode("utf-8", errors="replace")
    if _DPKG_STATUS.match(path):
        in_status_d = "/status.d/" in path
        inventory.packages.extend(parse_dpkg_status(text, path, assume_installed=in_status_d))
    elif _OS_RELEASE.match(path):
        # etc/os-release wins over usr/lib/os-release (it is usually a link to it)
        if inventory.os_id is None or path.startswith("etc/"):
            parse_os_release(text, inventory)
    elif _NPM_PACKAGE.search(path):
        package = parse_npm_package_json(text, path)
        if package:
            inventory.packages.append(package)
    elif _PY_METADATA.search(path):
        package = parse_python_metadata(text, path)
        if package:
            inventory.packages.append(package)
