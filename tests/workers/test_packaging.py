"""Packaging honesty (issue 11 item 5), checked on a wheel built from this tree: the core
requirements leave out the libraries of optional tool servers and fakeredis, each extra
is declared, ``py.typed`` ships, and only codebus's top-level packages are installed,
none of them empty. The fresh-venv run of README command 1 is in docs/benchmarks.md
("Process cost"): it needs PyPI, which CI does not reach."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.extras import EXTRAS, MODULE_EXTRAS

ROOT = Path(__file__).parents[2]
# The owner's top-level packages and the one public import place for handler authors.
PACKAGES = {"schemas", "bus", "tools", "flows", "handlers", "workers", "gateway", "codebus"}
OPTIONAL = {"fakeredis", "aiodocker", "docker", "kubernetes-asyncio", "aiobotocore", "semver"}

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    src = tmp_path_factory.mktemp("src") / "codebus"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".services", "var", "__pycache__", ".*_cache", "build", "*.egg-info"
        ),
    )
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("codebus-*.whl")
    return zipfile.ZipFile(path)


def metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return email.message_from_bytes(wheel.read(name))


def requirement_name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_core_requirements_leave_out_the_optional_libraries(wheel):
    reqs = metadata(wheel).get_all("Requires-Dist") or []
    core = {requirement_name(r) for r in reqs if "extra ==" not in r}
    assert core.isdisjoint(OPTIONAL), core & OPTIONAL
    assert {"aio-pika", "redis", "pydantic", "click"} <= core


def test_every_extra_is_declared_and_all_brings_them(wheel):
    meta = metadata(wheel)
    extras = set(meta.get_all("Provides-Extra") or [])
    assert set(EXTRAS) | {"all", "test"} <= extras
    assert set(MODULE_EXTRAS.values()) <= set(EXTRAS)
    reqs = meta.get_all("Requires-Dist") or []

    def of(extra: str) -> set[str]:
        return {requirement_name(r) for r in reqs if f"extra == '{extra}'" in r.replace('"', "'")}

    assert "fakeredis" in of("embedded")
    assert "kubernetes-asyncio" in of("kubernetes")
    assert "aiobotocore" in of("s3")
    assert {"aiodocker", "docker"} <= of("docker")
    assert {"semver", "python-debian"} <= of("scanner")
    all_line = next(r for r in reqs if "extra == 'all'" in r.replace('"', "'"))
    for extra in EXTRAS:
        assert extra in all_line


def test_only_codebus_packages_none_empty_and_typed(wheel):
    files = [n for n in wheel.namelist() if ".dist-info/" not in n]
    assert {n.split("/")[0] for n in files} == PACKAGES
    packages = {n.rsplit("/", 1)[0] for n in files if n.endswith("/__init__.py")}
    for package in packages:
        modules = [n for n in files if n.startswith(package + "/") and n.endswith(".py")]
        assert len(modules) > 1, f"{package} is empty"
    for top in PACKAGES:
        assert f"{top}/py.typed" in files
    top_level = next(n for n in wheel.namelist() if n.endswith("top_level.txt"))
    assert set(wheel.read(top_level).decode().split()) == PACKAGES
