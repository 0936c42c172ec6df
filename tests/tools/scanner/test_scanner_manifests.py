"""pip requirements and npm lock/package files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.scanner.manifests import ManifestError, read_npm_project, read_requirements

REQUIREMENTS = """\
# comment line
requests==2.19.0  # trailing comment
Django[argon2] == 3.2.1 ; python_version >= "3.8"
flask>=2.0
urllib3
numpy==1.*
pkg @ https://example.invalid/pkg-1.0.tar.gz
certifi==2023.7.22 \\
    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000
--index-url https://pypi.invalid/simple
-r extra.txt
not a requirement !!
"""


def test_requirements_pins_notices_and_includes(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(REQUIREMENTS)
    (tmp_path / "extra.txt").write_text("PyYAML==5.3\n-r requirements.txt\n")  # a cycle
    deps = read_requirements(tmp_path / "requirements.txt")
    assert deps.pinned == [
        ("requests", "2.19.0"),
        ("Django", "3.2.1"),
        ("certifi", "2023.7.22"),
        ("PyYAML", "5.3"),
    ]
    notices = {(n.package, n.kind, n.line) for n in deps.notices}
    assert notices == {
        ("flask", "unpinned", 4),
        ("urllib3", "unpinned", 5),
        ("numpy", "unpinned", 6),  # a wildcard is not a pin
        ("pkg", "unversioned", 7),
        ("not", "unparsed", 12),
    }
    assert all(n.severity == "info" for n in deps.notices)


def test_missing_requirements_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        read_requirements(tmp_path / "nope.txt")


LOCK_V3 = {
    "name": "app",
    "lockfileVersion": 3,
    "packages": {
        "": {"name": "app", "version": "1.0.0"},
        "node_modules/lodash": {"version": "4.17.15"},
        "node_modules/@babel/core": {"version": "7.0.0", "dev": True},
        "node_modules/a/node_modules/minimist": {"version": "0.0.8"},
        "node_modules/alias": {"name": "real-name", "version": "2.0.0"},
        "node_modules/local": {"resolved": "packages/local", "link": True},
    },
}


def test_lockfile_v3_packages_map(tmp_path: Path) -> None:
    (tmp_path / "package-lock.json").write_text(json.dumps(LOCK_V3))
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"lodash": "^4"}}))
    deps = read_npm_project(tmp_path)
    assert deps.source.endswith("package-lock.json")
    assert sorted(deps.pinned) == [
        ("@babel/core", "7.0.0"),
        ("lodash", "4.17.15"),
        ("minimist", "0.0.8"),
        ("real-name", "2.0.0"),
    ]
    without_dev = read_npm_project(tmp_path, include_dev=False)
    assert ("@babel/core", "7.0.0") not in without_dev.pinned


def test_lockfile_v1_dependency_tree(tmp_path: Path) -> None:
    lock = {
        "lockfileVersion": 1,
        "dependencies": {
            "a": {"version": "1.0.0", "dependencies": {"minimist": {"version": "0.0.8"}}},
            "b": {"version": "git+https://example.invalid/b.git"},
        },
    }
    (tmp_path / "package-lock.json").write_text(json.dumps(lock))
    assert sorted(read_npm_project(tmp_path).pinned) == [("a", "1.0.0"), ("minimist", "0.0.8")]


def test_package_json_without_lock(tmp_path: Path) -> None:
    manifest = {
        "dependencies": {"lodash": "4.17.15", "express": "^4.18.0"},
        "devDependencies": {"jest": "=29.0.0"},
    }
    (tmp_path / "package.json").write_text(json.dumps(manifest))
    deps = read_npm_project(tmp_path)
    assert deps.pinned == [("lodash", "4.17.15"), ("jest", "29.0.0")]
    assert [(n.package, n.kind) for n in deps.notices] == [("express", "unpinned")]


def test_npm_project_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no package-lock\.json"):
        read_npm_project(tmp_path)
    (tmp_path / "package-lock.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="JSON object"):
        read_npm_project(tmp_path)
