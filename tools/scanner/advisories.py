"""An offline OSV advisory database: a directory of JSON files, indexed by package.

The directory is configured by the operator and filled from OSV exports (for example
``https://osv-vulnerabilities.storage.googleapis.com/<ecosystem>/all.zip``). Accepted
layouts, searched recursively: one advisory per ``.json`` file, a JSON list of
advisories, or ``.zip`` archives of such files. Nothing is fetched at scan time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.scanner.osv import Advisory, Affected, match_affected, parse_advisory
from tools.scanner.versions import PYPI, ecosystem_family

log = logging.getLogger(__name__)


class AdvisoryLoadError(Exception):
    """The advisory directory is missing or unreadable."""


@dataclass(frozen=True)
class Finding:
    """A package version affected by an advisory."""

    advisory: Advisory
    affected: Affected
    package: str
    installed_version: str
    fixed_version: str | None


def normalize_name(ecosystem: str, name: str) -> str:
    """Package name as the ecosystem compares it (PEP 503 for PyPI, else lowercase)."""
    if ecosystem_family(ecosystem) == PYPI:
        return re.sub(r"[-_.]+", "-", name).lower()
    return name.lower()


def _documents(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield (origin, parsed JSON) for a .json file or each .json member of a .zip."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".json"):
                    yield f"{path}!{member}", json.loads(archive.read(member))
    else:
        yield str(path), json.loads(path.read_bytes())


class AdvisoryDatabase:
    """OSV advisories indexed by (ecosystem family, normalized package name)."""

    def __init__(self, advisories: Iterable[Advisory] = ()) -> None:
        self._index: dict[tuple[str, str], list[tuple[Advisory, Affected]]] = defaultdict(list)
        self.count = 0
        for advisory in advisories:
            self.add(advisory)

    def add(self, advisory: Advisory) -> None:
        """Index one advisory under every package it affects."""
        self.count += 1
        for entry in advisory.affected:
            key = (ecosystem_family(entry.ecosystem), normalize_name(entry.ecosystem, entry.name))
            self._index[key].append((advisory, entry))

    @classmethod
    def load_dir(cls, directory: Path) -> AdvisoryDatabase:
        """Load every advisory under ``directory``; bad files are logged and skipped."""
        if not directory.is_dir():
            raise AdvisoryLoadError(f"advisories_dir {directory} is not a directory")
        db = cls()
        for path in sorted(directory.rglob("*")):
            if path.suffix not in {".json", ".zip"} or not path.is_file():
                continue
            try:
                for origin, doc in _documents(path):
                    for raw in doc if isinstance(doc, list) else [doc]:
                        advisory = parse_advisory(raw) if isinstance(raw, dict) else None
                        if advisory is None:
                            log.debug("no usable advisory in %s", origin)
                            continue
                        db.add(advisory)
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                log.warning("skipping advisory file %s: %s", path, exc)
        return db

    def match(
        self,
        family: str,
        name: str,
        version: str,
        *,
        ecosystem_filter: Callable[[str], bool] | None = None,
        report_as: str | None = None,
    ) -> list[Finding]:
        """Advisories affecting ``name`` at ``version`` in ecosystem ``family``.

        ``ecosystem_filter`` narrows a family to the releases that apply (for example
        only ``Ubuntu:22.04`` advisories for an Ubuntu 22.04 image); ``report_as`` is the
        package name to report when matching under another name (a dpkg source package).
        """
        found: list[Finding] = []
        for advisory, entry in self._index.get((family, normalize_name(family, name)), ()):
            if ecosystem_filter is not None and not ecosystem_filter(entry.ecosystem):
                continue
            verdict = match_affected(entry, version)
            if verdict.affected:
                found.append(
                    Finding(advisory, entry, report_as or name, version, verdict.fixed_version)
                )
        return found


def directory_signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of every advisory file: changes when the directory does."""
    entries = []
    for root, _dirs, files in os.walk(directory):
        for file in files:
            if file.endswith((".json", ".zip")):
                full = os.path.join(root, file)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                entries.append((full, st.st_size, st.st_mtime_ns))
    return tuple(sorted(entries))
