"""Version ordering per package ecosystem, as OSV range evaluation needs it.

Each ecosystem orders versions its own way, and getting it wrong turns a vulnerable
package into a "clean" one:

- Debian/Ubuntu: dpkg's algorithm (epochs, ``~`` sorting before anything, revisions),
  via ``debian.debian_support.Version``.
- PyPI: PEP 440 (pre, post and dev releases, local versions), via ``packaging``.
- npm and OSV ``SEMVER`` ranges: SemVer 2.0 precedence (a prerelease sorts before its
  release, build metadata is ignored), via ``semver``.

:func:`parse_version` returns an object that supports ``<``, ``<=``, ``==`` and so on
with other versions of the same ecosystem, or raises :class:`InvalidVersion`.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Protocol

import semver
from debian.debian_support import Version as DebianVersion
from packaging.version import InvalidVersion as _PepInvalid
from packaging.version import Version as PepVersion


class InvalidVersion(ValueError):
    """A version string that its ecosystem cannot order."""


class Comparable(Protocol):
    """What range evaluation needs from a parsed version."""

    def __lt__(self, other: Any, /) -> bool: ...
    def __le__(self, other: Any, /) -> bool: ...
    def __gt__(self, other: Any, /) -> bool: ...
    def __ge__(self, other: Any, /) -> bool: ...


#: Ecosystem families (the part of an OSV ecosystem before ``:``) ordered like dpkg.
DPKG_ECOSYSTEMS = frozenset({"debian", "ubuntu"})
PYPI = "pypi"
NPM = "npm"

# npm tolerates a leading "v" or "=" (npm's "loose" parsing); OSV data is strict.
_NPM_LOOSE_PREFIX = re.compile(r"^[=v\s]+")


@functools.total_ordering
class SemverVersion:
    """SemVer 2.0 version ordered by precedence (build metadata ignored)."""

    __slots__ = ("_v",)

    def __init__(self, text: str) -> None:
        cleaned = _NPM_LOOSE_PREFIX.sub("", text.strip())
        try:
            self._v = semver.Version.parse(cleaned)
        except (ValueError, TypeError) as exc:
            raise InvalidVersion(f"not a SemVer version: {text!r}") from exc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemverVersion):
            return NotImplemented
        return self._v.compare(other._v) == 0

    def __lt__(self, other: SemverVersion) -> bool:
        return self._v.compare(other._v) < 0

    def __hash__(self) -> int:
        return hash(self._v.finalize_version()) ^ hash(self._v.prerelease)

    def __repr__(self) -> str:
        return f"SemverVersion({str(self._v)!r})"


def ecosystem_family(ecosystem: str) -> str:
    """``"Ubuntu:22.04:LTS"`` -> ``"ubuntu"``; ``"PyPI"`` -> ``"pypi"``."""
    return ecosystem.split(":", 1)[0].strip().lower()


def parse_version(ecosystem: str, text: str, *, range_type: str = "ECOSYSTEM") -> Comparable:
    """Parse ``text`` with the ordering of ``ecosystem`` (or of ``SEMVER`` ranges).

    Raises :class:`InvalidVersion` when the ecosystem has no ordering for it, or when
    the ecosystem is one this scanner does not know how to order.
    """
    if range_type == "SEMVER":
        return SemverVersion(text)
    family = ecosystem_family(ecosystem)
    if family in DPKG_ECOSYSTEMS:
        try:
            return DebianVersion(text.strip())
        except ValueError as exc:
            raise InvalidVersion(f"not a Debian version: {text!r}") from exc
    if family == PYPI:
        try:
            return PepVersion(text.strip())
        except _PepInvalid as exc:
            raise InvalidVersion(f"not a PEP 440 version: {text!r}") from exc
    if family == NPM:
        return SemverVersion(text)
    raise InvalidVersion(f"no version ordering for ecosystem {ecosystem!r}")


def versions_equal(ecosystem: str, a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` denote the same version (string equality as a fallback)."""
    if a == b:
        return True
    try:
        return parse_version(ecosystem, a) == parse_version(ecosystem, b)
    except InvalidVersion:
        return False
