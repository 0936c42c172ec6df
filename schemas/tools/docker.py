"""Argument and result models of the ``docker`` tool server.

Argument names follow the integration guide (``docker.docker_build`` takes
``dockerfile_path`` and ``image_tag``). Models forbid unknown fields, so a typo in a
caller's argument dict fails with an error naming the field instead of being ignored.
Checks that need the file system (does ``dockerfile_path`` exist?) live in the adapter:
this package does no I/O.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Docker's reference grammar (distribution/reference): [domain[:port]/]path[/path...][:tag]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE_ID = r"(?:sha256:)?[0-9a-f]{12,64}"

TAGGED_NAME_RE = re.compile(rf"^{_NAME}(?::{_TAG})?$")
IMAGE_REF_RE = re.compile(rf"^(?:{_IMAGE_ID}|{_NAME}(?::{_TAG})?(?:@{_DIGEST})?)$")
# Docker's own rule for container names; ids (hex) match it too.
CONTAINER_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PORT_RE = re.compile(r"^[0-9]{1,5}(?:/(?:tcp|udp|sctp))?$")


def _check_image_tag(value: str) -> str:
    # A ':' after the last '/' starts the tag; anything before is the name (max 255).
    name = value.rsplit(":", 1)[0] if ":" in value.rsplit("/", 1)[-1] else value
    if len(name) > 255 or not TAGGED_NAME_RE.match(value):
        raise ValueError(
            "not a valid Docker image reference 'name[:tag]' "
            "(lowercase path components, optional registry host, tag [A-Za-z0-9_.-]{1,128})"
        )
    return value


def _check_image_ref(value: str) -> str:
    if len(value) > 512 or not IMAGE_REF_RE.match(value):
        raise ValueError("not a valid Docker image reference or image id")
    return value


def _check_container(value: str) -> str:
    if len(value) > 255 or not CONTAINER_NAME_RE.match(value):
        raise ValueError("not a valid container name or id ([a-zA-Z0-9][a-zA-Z0-9_.-]+)")
    return value.lstrip("/")  # the engine lists names as "/web"; the API wants "web"


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _LABEL_KEY_RE.match(key):
            raise ValueError(f"invalid label key {key!r}")
    return value


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- build -------------------------------------------------------------------------


class DockerBuildArgs(_Args):
    """Build an image from a local build context directory."""

    dockerfile_path: str = Field(
        min_length=1, max_length=4096, description="build context directory (the guide passes '.')"
    )
    image_tag: str = Field(min_length=1, description="name[:tag] to give the built image")
    dockerfile: str = Field(
        default="Dockerfile", min_length=1, max_length=1024, description="path inside the context"
    )
    build_args: dict[str, str] = Field(default_factory=dict)
    target: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    no_cache: bool = False
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("image_tag")
    @classmethod
    def _image_tag(cls, value: str) -> str:
        return _check_image_tag(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_labels(value)

    @field_validator("dockerfile_path")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL")
        return value

    @field_validator("dockerfile")
    @classmethod
    def _inside_context(cls, value: str) -> str:
        # The engine reads the Dockerfile from the tar it receives; a path leaving the
        # context can never be found there, so refuse it up front with a clear message.
        parts = value.replace("\\", "/").split("/")
        if value.startswith("/") or ".." in parts or "\x00" in value:
            raise ValueError("must be a relative path inside the build context")
        return value

    @field_validator("build_args")
    @classmethod
    def _arg_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_KEY_RE.match(key):
                raise ValueError(f"invalid build arg name {key!r}")
        return value


class DockerBuildResult(_Result):
    """The built image: its id, its tag and the last lines of the build output."""

    image_id: str
    image_tag: str
    log_tail: list[str] = Field(default_factory=list)
    duration_seconds: float = 0.0


# --- containers --------------------------------------------------------------------


class DockerRunArgs(_Args):
    """Create and start a container; wait for it unless ``detach``."""

    image: str
    command: list[str] | None = None
    name: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ports: dict[str, int | None] = Field(
        default_factory=dict,
        description="container port ('8080' or '8080/tcp') -> host port (None: any free port)",
    )
    detach: bool = False
    remove: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(
        default=None, gt=0, le=86400, description="seconds to wait when not detached"
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _check_image_ref(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_labels(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _check_container(value)

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_KEY_RE.match(key):
                raise ValueError(f"invalid environment variable name {key!r}")
        return value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        for key, host in value.items():
            if not _PORT_RE.match(key) or not 0 < int(key.split("/")[0]) < 65536:
                raise ValueError(f"invalid container port {key!r}")
            if host is not None and not 0 < host < 65536:
                raise ValueError(f"invalid host port {host!r} for {key!r}")
        return value


class DockerRunResult(_Result):
    """The started container; ``exit_code`` and ``logs`` when it was waited for."""

    container_id: str
    name: str
    status: str
    exit_code: int | None = None
    logs: str = ""
    logs_truncated: bool = False
    ports: dict[str, list[str]] = Field(default_factory=dict)
    removed: bool = False


class ContainerSummary(_Result):
    """One row of ``docker ps``."""

    id: str
    name: str
    image: str
    state: str
    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    created: int = 0


class DockerPsArgs(_Args):
    """List containers, optionally stopped ones too, filtered by labels or name."""

    all: bool = False
    labels: dict[str, str | None] = Field(
        default_factory=dict, description="label key -> value (None: any value)"
    )
    name: str | None = None
    filters: dict[str, list[str]] = Field(
        default_factory=dict, description="raw Docker filters, e.g. {'status': ['exited']}"
    )


class DockerPsResult(_Result):
    """Matching containers."""

    containers: list[ContainerSummary]


class DockerLogsArgs(_Args):
    """Fetch a container's logs (stdout and stderr interleaved)."""

    container: str
    tail: int | None = Field(default=None, ge=0, description="last N lines; None: all")
    timestamps: bool = False

    @field_validator("container")
    @classmethod
    def _container(cls, value: str) -> str:
        return _check_container(value)


class DockerLogsResult(_Result):
    """Log text, capped at the server's byte limit (the newest bytes are kept)."""

    container: str
    logs: str
    truncated: bool = False


class DockerStopArgs(_Args):
    """Stop a container, killing it after ``timeout`` seconds."""

    container: str
    timeout: int = Field(default=10, ge=0, le=3600)

    @field_validator("container")
    @classmethod
    def _container(cls, value: str) -> str:
        return _check_container(value)


class DockerStopResult(_Result):
    """The stopped container and its final state."""

    container: str
    state: str
    exit_code: int | None = None


class DockerRemoveArgs(_Args):
    """Remove a container; ``force`` kills a running one first."""

    container: str
    force: bool = False
    volumes: bool = False

    @field_validator("container")
    @classmethod
    def _container(cls, value: str) -> str:
        return _check_container(value)


class DockerRemoveResult(_Result):
    """The removed container."""

    container: str
    removed: bool = True


# --- images and housekeeping -------------------------------------------------------


class ImageSummary(_Result):
    """One row of ``docker images``."""

    id: str
    repo_tags: list[str] = Field(default_factory=list)
    size: int = 0
    created: int = 0
    labels: dict[str, str] = Field(default_factory=dict)


class DockerImagesArgs(_Args):
    """List images, optionally those matching a reference pattern or labels."""

    reference: str | None = Field(
        default=None, max_length=512, description="e.g. 'myapp' or 'myapp:1.*'"
    )
    labels: dict[str, str | None] = Field(default_factory=dict)
    all: bool = False

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        # Docker accepts glob patterns here, so allow '*' and '?' on top of the grammar.
        if value is not None and not re.match(r"^[A-Za-z0-9*?][A-Za-z0-9_.:/@*?-]*$", value):
            raise ValueError("not a valid image reference pattern")
        return value


class DockerImagesResult(_Result):
    """Matching images."""

    images: list[ImageSummary]


class DockerSystemPruneArgs(_Args):
    """Remove stopped containers and unused images (all of them, or those with ``labels``)."""

    containers: bool = True
    images: bool = True
    dangling: bool = Field(
        default=True, description="images: only untagged ones (False: every unused image)"
    )
    labels: dict[str, str | None] = Field(
        default_factory=dict, description="restrict pruning to objects with these labels"
    )


class DockerSystemPruneResult(_Result):
    """What was removed and how many bytes that freed."""

    containers_deleted: list[str] = Field(default_factory=list)
    images_deleted: list[str] = Field(default_factory=list)
    space_reclaimed: int = 0
