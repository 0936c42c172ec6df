"""Version ordering per ecosystem: each table lists versions in strictly ascending order."""

from __future__ import annotations

import itertools

import pytest

from tools.scanner.versions import InvalidVersion, parse_version, versions_equal

DEBIAN_ASCENDING = [
    "0.9",
    "1.0~~",
    "1.0~rc1",
    "1.0~rc2",
    "1.0",
    "1.0-1",
    "1.0-1ubuntu0.1",
    "1.0-1ubuntu1",
    "1.0a",  # dpkg sorts letters before other symbols...
    "1.0+dfsg-1",  # ...and symbols by ASCII: "+" before "."
    "1.0.1",
    "1.10",
    "3.0.2-0ubuntu1",
    "3.0.2-0ubuntu1.2",
    "3.0.2-0ubuntu1.10",
    "1:0.9",  # an epoch beats any upstream version without one
    "1:1.0~rc1",
    "2:0.1",
]

PYPI_ASCENDING = [
    "1.0.dev1",
    "1.0a1",
    "1.0a2.dev1",
    "1.0a2",
    "1.0b1",
    "1.0rc1",
    "1.0",
    "1.0+local.1",
    "1.0.post1.dev1",
    "1.0.post1",
    "1.0.1",
    "1.1",
    "2.19.0",
    "2.20.0",
    "1!0.1",  # epoch
]

SEMVER_ASCENDING = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",  # numeric identifiers compare numerically
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.2.0",
    "1.10.0",
    "4.17.15",
    "4.17.19",
    "4.17.21",
]


@pytest.mark.parametrize(
    ("ecosystem", "table"),
    [("Debian", DEBIAN_ASCENDING), ("PyPI", PYPI_ASCENDING), ("npm", SEMVER_ASCENDING)],
)
def test_tables_are_strictly_ascending(ecosystem: str, table: list[str]) -> None:
    parsed = [parse_version(ecosystem, v) for v in table]
    for (i, a), (j, b) in itertools.combinations(enumerate(parsed), 2):
        assert a < b, f"{table[i]} < {table[j]} in {ecosystem}"
        assert not b < a


def test_release_suffixes_pick_the_ordering() -> None:
    # "Ubuntu:22.04:LTS" and "Debian:12" use dpkg ordering like their family.
    assert parse_version("Ubuntu:22.04:LTS", "1.0~rc1") < parse_version("Ubuntu:22.04:LTS", "1.0")
    assert parse_version("Debian:12", "1:0.9") > parse_version("Debian:12", "1.0")


def test_semver_ignores_build_metadata_and_npm_loose_prefix() -> None:
    assert parse_version("npm", "1.0.0+build.1") == parse_version("npm", "1.0.0+build.2")
    assert parse_version("npm", "v1.2.3") == parse_version("npm", "1.2.3")
    assert parse_version("Go", "1.0.0-rc.1", range_type="SEMVER") < parse_version(
        "Go", "1.0.0", range_type="SEMVER"
    )


def test_pep440_normalises_equal_spellings() -> None:
    assert versions_equal("PyPI", "2.19", "2.19.0")
    assert versions_equal("PyPI", "1.0RC1", "1.0rc1")
    assert not versions_equal("PyPI", "1.0", "1.0.1")


@pytest.mark.parametrize(
    ("ecosystem", "text"),
    [("PyPI", "not a version!"), ("npm", "4.17"), ("Debian", "!!"), ("Hackage", "1.0")],
)
def test_invalid_versions_raise(ecosystem: str, text: str) -> None:
    with pytest.raises(InvalidVersion):
        parse_version(ecosystem, text)
