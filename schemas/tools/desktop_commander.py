"""Argument and result models of the ``desktop-commander`` tool server (guarded shell runner).

``execute_command`` takes ``command`` as in the guide: a string, split like a POSIX shell
would split words (``shlex``) but never given to a shell, or an argv list. Whether the
executable is allowed and whether paths stay inside the configured roots is decided by the
adapter, which knows its configuration; these models only check shape.
"""

from __future__ import annotations

import codecs
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# make targets and variable names that cannot be read as make options (no leading '-').
MAKE_TARGET_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./+-]*$")
MAKE_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A make variable's value is pasted into recipe text that a shell runs, so it may hold only
# characters no shell gives a meaning to: one literal word, never an option.
MAKE_VALUE_RE = re.compile(r"^(?!-)[A-Za-z0-9_.,:/@%+=-]*$")
# Variables that change how make itself runs (which shell, which flags, which files).
MAKE_RESERVED = frozenset(
    {"SHELL", "MFLAGS", "GNUMAKEFLAGS", "VPATH", "GPATH", "SUFFIXES", "CURDIR", "OLDPWD"}
)


def check_make_variable(name: str, value: str) -> None:
    """Raise ``ValueError`` unless ``name=value`` is plain data for a Makefile."""
    if not MAKE_VARIABLE_RE.match(name):
        raise ValueError(f"invalid make variable name {name!r}")
    if name in MAKE_RESERVED or name.startswith("MAKE"):
        raise ValueError(f"make variable {name} controls make itself and cannot be set")
    if not MAKE_VALUE_RE.match(value):
        raise ValueError(
            f"value of {name} must be one word of letters, digits and '_.,:/@%+=-' "
            "(not starting with '-'): a recipe's shell would interpret anything else"
        )


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown text encoding {value!r}") from None
    return value


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExecuteCommandArgs(_Args):
    """Run one allowlisted program, without a shell."""

    command: str | list[str] = Field(description="'ls -la' (split with shlex) or an argv list")
    working_directory: str | None = Field(
        default=None, description="inside the server's roots (None: the first root)"
    )
    timeout: float | None = Field(default=None, gt=0, le=3600, description="seconds")

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | list[str]) -> str | list[str]:
        parts = [value] if isinstance(value, str) else value
        if not parts or not parts[0].strip():
            raise ValueError("must name a program to run")
        for part in parts:
            _no_nul(part)
        return value

    @field_validator("working_directory")
    @classmethod
    def _cwd(cls, value: str | None) -> str | None:
        return None if value is None else _no_nul(value)


class CommandResult(_Result):
    """How a program ended and what it printed (each stream capped)."""

    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    duration_seconds: float
    truncated: bool = Field(description="stdout or stderr went over the byte cap")


class MakeCommandArgs(_Args):
    """Run ``make <target> [VAR=value ...]`` in ``working_directory``."""

    target: str = Field(max_length=256)
    working_directory: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if not MAKE_TARGET_RE.match(value):
            raise ValueError("not a make target name (letters, digits, '_./+-'; no leading '-')")
        return value

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            check_make_variable(key, text)
        return value

    @field_validator("working_directory")
    @classmethod
    def _cwd(cls, value: str | None) -> str | None:
        return None if value is None else _no_nul(value)


class ReadFileArgs(_Args):
    """Read a text file inside the roots."""

    path: str = Field(min_length=1)
    max_bytes: int | None = Field(default=None, gt=0, description="None: the server's limit")
    encoding: str = "utf-8"

    _path = field_validator("path")(_no_nul)
    _enc = field_validator("encoding")(_encoding)


class ReadFileResult(_Result):
    """The file's text (the first ``max_bytes`` of it when ``truncated``)."""

    path: str
    content: str
    size: int
    truncated: bool = False


class WriteFileArgs(_Args):
    """Write (or append) text to a file inside the roots."""

    path: str = Field(min_length=1)
    content: str
    mode: Literal["overwrite", "append"] = "overwrite"
    create_dirs: bool = False
    encoding: str = "utf-8"

    _path = field_validator("path")(_no_nul)
    _enc = field_validator("encoding")(_encoding)


class WriteFileResult(_Result):
    """Where the bytes went and how many."""

    path: str
    bytes_written: int


class ListDirectoryArgs(_Args):
    """List a directory inside the roots, optionally recursively."""

    path: str = Field(min_length=1)
    recursive: bool = False
    max_depth: int = Field(default=3, ge=1, le=32, description="levels when recursive")

    _path = field_validator("path")(_no_nul)


class DirectoryEntry(_Result):
    """One entry; ``path`` is relative to the listed directory."""

    path: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int = 0


class ListDirectoryResult(_Result):
    """Entries in walk order; ``truncated`` when the server's entry limit was hit."""

    path: str
    entries: list[DirectoryEntry]
    truncated: bool = False


class CheckFileExistsArgs(_Args):
    """Does a path inside the roots exist, and what is it?"""

    path: str = Field(min_length=1)

    _path = field_validator("path")(_no_nul)


class CheckFileExistsResult(_Result):
    """Existence and kind of the path."""

    path: str
    exists: bool
    is_file: bool = False
    is_directory: bool = False
    size: int | None = None
