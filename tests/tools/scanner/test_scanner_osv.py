"""OSV range evaluation, severity derivation, CVSS scoring and the advisory directory."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tools.scanner.advisories import AdvisoryDatabase, AdvisoryLoadError
from tools.scanner.cvss import cvss2_base_score, cvss3_base_score, score_band
from tools.scanner.osv import Affected, Range, match_affected, parse_advisory

DATA = Path(__file__).parent / "data" / "advisories"


def _entry(
    ecosystem: str, *ranges: list[dict[str, str]], versions: tuple[str, ...] = ()
) -> Affected:
    kind = "SEMVER" if ecosystem == "npm" else "ECOSYSTEM"
    return Affected(
        ecosystem,
        "pkg",
        tuple(Range(kind, tuple(next(iter(e.items())) for e in events)) for events in ranges),
        versions,
    )


@pytest.mark.parametrize(
    ("version", "affected", "fixed"),
    [
        ("0.9", False, None),
        ("1.0", True, "1.5"),  # introduced is inclusive
        ("1.4.9", True, "1.5"),
        ("1.5", False, None),  # fixed is exclusive
        ("1.9", False, None),
        ("2.0", True, "2.5"),  # second interval of the same range
        ("2.5rc1", True, "2.5"),  # a pre-release of the fix is still affected (PEP 440)
        ("2.5", False, None),
        ("3.0", False, None),
    ],
)
def test_two_intervals_in_one_range(version: str, affected: bool, fixed: str | None) -> None:
    entry = _entry(
        "PyPI",
        [{"introduced": "1.0"}, {"fixed": "1.5"}, {"introduced": "2.0"}, {"fixed": "2.5"}],
    )
    verdict = match_affected(entry, version)
    assert (verdict.affected, verdict.fixed_version) == (affected, fixed)


def test_events_are_sorted_before_evaluation() -> None:
    entry = _entry(
        "PyPI", [{"fixed": "2.5"}, {"introduced": "2.0"}, {"fixed": "1.5"}, {"introduced": "1.0"}]
    )
    assert match_affected(entry, "2.1").affected
    assert not match_affected(entry, "1.7").affected


@pytest.mark.parametrize(
    ("version", "affected"),
    [("4.17.11", True), ("4.17.12", False), ("1.0.0-rc.1", True), ("0.0.1", True)],
)
def test_last_affected_is_inclusive(version: str, affected: bool) -> None:
    entry = _entry("npm", [{"introduced": "0"}, {"last_affected": "4.17.11"}])
    verdict = match_affected(entry, version)
    assert verdict.affected is affected
    assert verdict.fixed_version is None  # last_affected says nothing about a fix


def test_semver_prerelease_of_the_fix_is_still_affected() -> None:
    entry = _entry("npm", [{"introduced": "4.0.0"}, {"fixed": "4.17.21"}])
    assert match_affected(entry, "4.17.21-beta.1").affected
    assert not match_affected(entry, "4.17.21").affected
    assert not match_affected(entry, "4.0.0-rc.1").affected  # before "introduced"


def test_debian_epochs_and_tildes_in_ranges() -> None:
    entry = _entry("Debian:12", [{"introduced": "0"}, {"fixed": "1:1.0-1"}])
    assert match_affected(entry, "2.0-1").affected  # no epoch: older than any 1:...
    assert match_affected(entry, "1:1.0~rc1-1").affected
    assert not match_affected(entry, "1:1.0-1").affected


def test_any_of_several_ranges_and_the_explicit_versions_list() -> None:
    entry = _entry(
        "PyPI",
        [{"introduced": "1.0"}, {"fixed": "1.1"}],
        [{"introduced": "3.0"}, {"fixed": "3.2"}],
        versions=("2.0.0", "2.4"),
    )
    assert match_affected(entry, "3.1").fixed_version == "3.2"
    assert match_affected(entry, "2.0").affected  # listed as 2.0.0: PEP 440 equal
    assert match_affected(entry, "2.4").affected
    assert not match_affected(entry, "2.1").affected


def test_unorderable_versions_fall_back_to_the_list_only() -> None:
    entry = _entry("PyPI", [{"introduced": "0"}, {"fixed": "2.0"}], versions=("weird-build",))
    assert match_affected(entry, "weird-build").affected
    assert not match_affected(entry, "other-weird").affected


def _advisory(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "TEST-1",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "versions": ["1.0"]}],
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("fields", "severity"),
    [
        ({"database_specific": {"severity": "MODERATE"}}, "medium"),
        ({"database_specific": {"severity": "CRITICAL"}}, "critical"),
        (
            {
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}
                ]
            },
            "high",
        ),
        (
            {
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"}
                ]
            },
            "low",
        ),
        ({"severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}]}, "high"),
        ({"severity": [{"type": "Ubuntu", "score": "negligible"}]}, "low"),
        (
            {"severity": [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N"}]},
            "medium",
        ),
        ({}, "medium"),
    ],
)
def test_advisory_severity(fields: dict[str, Any], severity: str) -> None:
    advisory = parse_advisory(_advisory(**fields))
    assert advisory is not None
    assert advisory.severity == severity


def test_withdrawn_and_malformed_advisories_are_dropped() -> None:
    assert parse_advisory(_advisory(withdrawn="2024-01-01T00:00:00Z")) is None
    assert parse_advisory({"affected": []}) is None
    parsed = parse_advisory(_advisory(affected=[{"package": {"name": "no-ecosystem"}}]))
    assert parsed is not None and parsed.affected == ()


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
    ],
)
def test_cvss3_scores_match_the_reference_calculator(vector: str, score: float) -> None:
    assert cvss3_base_score(vector) == score


def test_cvss2_and_bands() -> None:
    assert cvss2_base_score("AV:N/AC:L/Au:N/C:C/I:C/A:C") == 10.0
    assert cvss2_base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P") == 7.5
    assert [score_band(s) for s in (0.0, 3.9, 4.0, 6.9, 7.0, 8.9, 9.0)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "critical",
    ]
    with pytest.raises(ValueError):
        cvss3_base_score("CVSS:3.1/AV:N")


def test_database_loads_files_lists_and_zip_and_skips_bad_json(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps(_advisory(id="A-1")))
    (tmp_path / "list.json").write_text(json.dumps([_advisory(id="A-2"), _advisory(id="A-3")]))
    (tmp_path / "broken.json").write_text("{not json")
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as archive:
        archive.writestr("A-4.json", json.dumps(_advisory(id="A-4")))
    db = AdvisoryDatabase.load_dir(tmp_path)
    assert db.count == 4
    assert {f.advisory.id for f in db.match("pypi", "X", "1.0")} == {"A-1", "A-2", "A-3", "A-4"}
    with pytest.raises(AdvisoryLoadError):
        AdvisoryDatabase.load_dir(tmp_path / "missing")


def test_pypi_names_are_normalised_when_matching() -> None:
    db = AdvisoryDatabase.load_dir(DATA)
    # The advisory says "requests"; dist-info may say "Requests" or "requests_".
    assert [f.advisory.id for f in db.match("pypi", "Requests", "2.19.0")] == [
        "GHSA-x84v-xcm2-53pg"
    ]
    assert db.match("pypi", "requests", "2.20.0") == []
