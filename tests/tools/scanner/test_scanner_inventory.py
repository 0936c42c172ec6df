"""Package inventory parsing and matching an inventory against advisories."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tools.scanner.advisories import AdvisoryDatabase
from tools.scanner.image_export import _read_tar
from tools.scanner.inventory import Inventory, Package, add_file, parse_dpkg_status, wanted
from tools.scanner.matching import apply_threshold, match_inventory

DATA = Path(__file__).parent / "data" / "advisories"

STATUS = """\
Package: libssl3
Status: install ok installed
Source: openssl (3.0.2-0ubuntu1)
Version: 3.0.2-0ubuntu1+b1
Description: shared library
 continuation: not a field

Package: gone
Status: purge ok not-installed
Version: 1.0

Package: half
Status: install reinstreq half-installed
Version: 1.0
"""


def test_dpkg_status_keeps_installed_entries_and_their_source() -> None:
    packages = parse_dpkg_status(STATUS, "var/lib/dpkg/status")
    assert packages == [
        Package(
            "dpkg",
            "libssl3",
            "3.0.2-0ubuntu1+b1",
            "var/lib/dpkg/status",
            source_name="openssl",
            source_version="3.0.2-0ubuntu1",
        )
    ]


def test_distroless_status_d_entries_have_no_status_field() -> None:
    inventory = Inventory()
    add_file(inventory, "var/lib/dpkg/status.d/base", b"Package: base-files\nVersion: 12.4\n")
    assert [(p.name, p.version) for p in inventory.packages] == [("base-files", "12.4")]


@pytest.mark.parametrize(
    ("path", "needed"),
    [
        ("var/lib/dpkg/status", True),
        ("var/lib/dpkg/status-old", False),
        ("var/lib/dpkg/status.d/zlib1g", True),
        ("usr/lib/python3.11/site-packages/Foo-1.0.dist-info/METADATA", True),
        ("usr/lib/python3/dist-packages/bar-2.0.egg-info/PKG-INFO", True),
        ("usr/lib/python3/dist-packages/baz-2.0.egg-info", True),
        ("usr/lib/python3/dist-packages/foo/METADATA", False),
        ("app/node_modules/lodash/package.json", True),
        ("app/node_modules/@babel/core/package.json", True),
        ("app/node_modules/lodash/fp/package.json", False),  # inside a package
        ("app/package.json", False),  # the project, not an installed package
        ("etc/os-release", True),
        ("usr/bin/busybox", False),
    ],
)
def test_wanted_paths(path: str, needed: bool) -> None:
    assert bool(wanted(path)) is needed


def _tar(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("etc/os-release-link")
        link.type, link.linkname = tarfile.SYMTYPE, "../usr/lib/os-release"
        tar.addfile(link)
    buf.seek(0)
    return buf


def test_tar_stream_reads_only_inventory_files() -> None:
    stream = _tar(
        {
            "./usr/lib/os-release": b'ID=debian\nVERSION_ID="12"\n',
            "usr/lib/python3/site-packages/Django-3.2.dist-info/METADATA": (
                b"Metadata-Version: 2.1\nName: Django\nVersion: 3.2\n\nbody\n"
            ),
            "srv/node_modules/@scope/pkg/package.json": json.dumps(
                {"name": "@scope/pkg", "version": "1.0.0"}
            ).encode(),
            "srv/node_modules/broken/package.json": b"{not json",
            "usr/bin/big-binary": b"\x00" * 4096,
        }
    )
    inventory = _read_tar(stream)
    assert (inventory.os_id, inventory.os_version_id) == ("debian", "12")
    assert sorted((p.kind, p.name, p.version) for p in inventory.packages) == [
        ("npm", "@scope/pkg", "1.0.0"),
        ("pypi", "Django", "3.2"),
    ]


def test_source_package_advisories_are_reported_for_the_binary() -> None:
    db = AdvisoryDatabase.load_dir(DATA)
    inventory = Inventory(os_id="ubuntu", os_version_id="22.04")
    inventory.packages.extend(parse_dpkg_status(STATUS, "var/lib/dpkg/status"))
    [vuln] = match_inventory(db, inventory)
    assert (vuln.id, vuln.package, vuln.installed_version) == (
        "UBUNTU-CVE-2022-0778",
        "libssl3",
        "3.0.2-0ubuntu1+b1",
    )


def test_release_of_the_image_selects_the_advisories() -> None:
    db = AdvisoryDatabase.load_dir(DATA)
    openssl = Package("dpkg", "openssl", "3.0.2-0ubuntu1", "var/lib/dpkg/status")
    debian = Inventory(packages=[openssl], os_id="debian", os_version_id="12")
    assert [v.id for v in match_inventory(db, debian)] == ["DSA-9999-1"]
    ubuntu_other = Inventory(packages=[openssl], os_id="ubuntu", os_version_id="24.04")
    assert match_inventory(db, ubuntu_other) == []
    unknown = Inventory(packages=[openssl])  # no os-release: every Debian-family release
    assert {v.id for v in match_inventory(db, unknown)} == {"DSA-9999-1", "UBUNTU-CVE-2022-0778"}


def test_threshold_filters_and_counts() -> None:
    db = AdvisoryDatabase.load_dir(DATA)
    inventory = Inventory(packages=[Package("npm", "lodash", "4.17.15", "x")])
    vulns = match_inventory(db, inventory)
    high, counts = apply_threshold(vulns, "high")
    assert [v.id for v in high] == ["GHSA-p6mc-m468-83gw"]
    assert counts == {"low": 0, "medium": 1, "high": 1, "critical": 0}
