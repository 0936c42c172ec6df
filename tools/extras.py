"""Optional dependencies: the libraries of one tool server or mode ship as a
``codebus[extra]`` group, and a missing one is a one-line error naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from schemas.errors import ConfigError

#: Extra -> what it is for (the groups in pyproject.toml's ``optional-dependencies``).
EXTRAS = {
    "docker": "the docker tool server (aiodocker, docker)",
    "kubernetes": "the kubernetes tool server (kubernetes-asyncio)",
    "s3": "the s3_storage tool server and the S3 flow repository (aiobotocore)",
    "scanner": "the security_scanner tool server (aiodocker, python-debian, semver)",
    "embedded": "`codebus demo` and the embedded system (fakeredis)",
}

#: Top-level module -> the extra that installs it.
MODULE_EXTRAS = {
    "aiodocker": "docker",
    "docker": "docker",
    "kubernetes_asyncio": "kubernetes",
    "aiobotocore": "s3",
    "botocore": "s3",
    "debian": "scanner",
    "semver": "scanner",
    "packaging": "scanner",
    "fakeredis": "embedded",
    "lupa": "embedded",
}

#: codebus's own top-level packages: an import error inside them is a bug, not an extra.
_OWN = ("schemas", "bus", "tools", "flows", "handlers", "workers", "gateway", "codebus")


class MissingExtra(ConfigError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, needed_by: str, missing: str, extra: str) -> None:
        super().__init__(
            f"{needed_by} needs {missing}, which is not installed: pip install 'codebus[{extra}]'"
        )
        self.missing = missing
        self.extra = extra


def extra_for(module: str | None) -> str | None:
    """The extra that installs ``module`` (a dotted name is looked up by its top level)."""
    return MODULE_EXTRAS.get((module or "").split(".")[0])


def import_for(module: str, extra: str, needed_by: str) -> ModuleType:
    """Import ``module``; a third-party module missing under it raises :class:`MissingExtra`
    naming ``extra`` (a module of codebus's own missing is re-raised as is)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or module).split(".")[0]
        if missing in _OWN:
            raise
        raise MissingExtra(needed_by, missing, extra_for(missing) or extra) from None
