"""OSV advisories: the parts a package scanner needs, and range evaluation.

Follows the OSV schema (https://ossf.github.io/osv-schema/): an advisory lists
``affected`` packages, each with ``ranges`` of events (``introduced``, ``fixed``,
``last_affected``) evaluated in the ecosystem's own version order, and/or an explicit
``versions`` list. ``GIT`` ranges name commits, not versions, and are ignored.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from tools.scanner.cvss import score_band, vector_score
from tools.scanner.versions import Comparable, InvalidVersion, parse_version, versions_equal

log = logging.getLogger(__name__)

_LABELS = {
    "critical": "critical",
    "high": "high",
    "important": "high",
    "moderate": "medium",
    "medium": "medium",
    "low": "low",
    "negligible": "low",
    "unimportant": "low",
}
DEFAULT_SEVERITY = "medium"


@dataclass(frozen=True)
class Range:
    """One OSV range: its type and its events as (kind, version) pairs."""

    type: str
    events: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Affected:
    """One ``affected[]`` entry of an advisory."""

    ecosystem: str
    name: str
    ranges: tuple[Range, ...] = ()
    versions: tuple[str, ...] = ()
    severity: str | None = None  # from database_/ecosystem_specific.severity


@dataclass(frozen=True)
class Advisory:
    """The fields of an OSV advisory that the scanner reports or matches on."""

    id: str
    summary: str
    severity: str
    affected: tuple[Affected, ...]
    aliases: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class RangeVerdict:
    """Outcome of matching a version: affected or not, and the fix if one is known."""

    affected: bool
    fixed_version: str | None = None


def _label(value: Any) -> str | None:
    if isinstance(value, str):
        return _LABELS.get(value.strip().lower())
    return None


def _advisory_severity(raw: dict[str, Any], affected: list[Affected]) -> str:
    """database_specific.severity, else the worst CVSS band, else affected hints."""
    db = raw.get("database_specific")
    label = _label(db.get("severity")) if isinstance(db, dict) else None
    if label:
        return label
    scores: list[float] = []
    for entry in raw.get("severity") or []:
        if not isinstance(entry, dict):
            continue
        kind, score = str(entry.get("type", "")), str(entry.get("score", ""))
        textual = _label(score)  # e.g. {"type": "Ubuntu", "score": "medium"}
        if textual:
            return textual
        number = vector_score(kind, score)
        if number is not None:
            scores.append(number)
    if scores:
        return score_band(max(scores))
    hints = [a.severity for a in affected if a.severity]
    return hints[0] if hints else DEFAULT_SEVERITY


def _specific_severity(entry: dict[str, Any]) -> str | None:
    for key in ("database_specific", "ecosystem_specific"):
        section = entry.get(key)
        if isinstance(section, dict):
            label = _label(section.get("severity"))
            if label:
                return label
    return None


def parse_advisory(raw: dict[str, Any]) -> Advisory | None:
    """Build an :class:`Advisory` from OSV JSON; None for withdrawn or unusable ones."""
    adv_id = raw.get("id")
    if not isinstance(adv_id, str) or raw.get("withdrawn"):
        return None
    affected: list[Affected] = []
    for entry in raw.get("affected") or []:
        package = entry.get("package") if isinstance(entry, dict) else None
        if not isinstance(package, dict):
            continue
        eco, name = package.get("ecosystem"), package.get("name")
        if not isinstance(eco, str) or not isinstance(name, str):
            continue
        ranges = []
        for rng in entry.get("ranges") or []:
            events = tuple(
                (kind, str(value))
                for event in rng.get("events") or []
                for kind, value in event.items()
                if kind in {"introduced", "fixed", "last_affected"}
            )
            ranges.append(Range(type=str(rng.get("type", "")), events=events))
        versions = tuple(str(v) for v in entry.get("versions") or [])
        affected.append(Affected(eco, name, tuple(ranges), versions, _specific_severity(entry)))
    summary = raw.get("summary") or (raw.get("details") or "").strip().split("\n", 1)[0]
    return Advisory(
        id=adv_id,
        summary=str(summary)[:300],
        severity=_advisory_severity(raw, affected),
        affected=tuple(affected),
        aliases=tuple(str(a) for a in raw.get("aliases") or []),
    )


def _event_key(ecosystem: str, range_type: str, kind: str, version: str) -> Comparable | None:
    """Parsed version of an event; None stands for ``introduced: "0"`` (minus infinity)."""
    if kind == "introduced" and version == "0":
        return None
    return parse_version(ecosystem, version, range_type=range_type)


def evaluate_range(ecosystem: str, rng: Range, version: str) -> RangeVerdict:
    """Whether ``version`` falls in ``rng``, by the OSV specification's algorithm.

    Events are sorted by version and replayed: ``introduced`` at or below the version
    makes it affected, ``fixed`` at or below (or ``last_affected`` strictly below) makes
    it unaffected again. Raises :class:`InvalidVersion` when versions cannot be ordered.
    """
    if rng.type not in {"ECOSYSTEM", "SEMVER"}:
        return RangeVerdict(False)
    current = parse_version(ecosystem, version, range_type=rng.type)
    keyed = [(_event_key(ecosystem, rng.type, k, v), k, v) for k, v in rng.events]
    keyed.sort(key=functools.cmp_to_key(_compare_events))
    affected = False
    fixed: str | None = None
    for key, kind, raw in keyed:
        if key is None:  # introduced "0": affected from the very first version
            affected = True
        elif current < key:
            # Every later event is above the version too; the first fix here is the
            # version that closes the interval the package sits in.
            if kind == "fixed" and affected:
                fixed = raw
            break
        elif kind == "introduced":
            affected = True
        elif kind == "fixed" or (kind == "last_affected" and current > key):
            affected = False
    return RangeVerdict(affected, fixed if affected else None)


# At equal versions a fix (or last_affected) closes an interval before an introduced
# event reopens it, so "fixed: 2.0, introduced: 2.0" leaves 2.0 affected.
_TIE_ORDER = {"fixed": 0, "last_affected": 0, "introduced": 1}


def _compare_events(
    a: tuple[Comparable | None, str, str], b: tuple[Comparable | None, str, str]
) -> int:
    ka, kb = a[0], b[0]
    if ka is None or kb is None:
        diff = (ka is not None) - (kb is not None)  # None ("0") sorts first
    else:
        diff = -1 if ka < kb else (1 if kb < ka else 0)
    return diff or _TIE_ORDER[a[1]] - _TIE_ORDER[b[1]]


def match_affected(entry: Affected, version: str) -> RangeVerdict:
    """Whether ``version`` of ``entry``'s package is affected: any range or the list."""
    for rng in entry.ranges:
        try:
            verdict = evaluate_range(entry.ecosystem, rng, version)
        except InvalidVersion as exc:
            log.debug("skipping range of %s %s: %s", entry.ecosystem, entry.name, exc)
            continue
        if verdict.affected:
            return verdict
    if any(versions_equal(entry.ecosystem, version, listed) for listed in entry.versions):
        return RangeVerdict(True, None)
    return RangeVerdict(False)
