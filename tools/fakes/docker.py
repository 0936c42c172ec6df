"""In-memory stand-in for :class:`~tools.adapters.docker.DockerServer`.

Same server name, same tools, same argument and result models, so the demo and handler
tests exercise the real registry and guards. Images and containers live in dicts; ids
are deterministic (a build of the same inputs gives the same image id). Failures mirror
the engine's: unknown image or container -> ``ToolFailed(status=404)``, a name clash or
removing a running container -> 409. ``fail_next`` injects an error for one call, e.g. a
``ToolTransientError`` to drive a circuit breaker.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
from dataclasses import dataclass, field

from pydantic import BaseModel

from schemas.tools.docker import (
    ContainerSummary,
    DockerBuildArgs,
    DockerBuildResult,
    DockerImagesArgs,
    DockerImagesResult,
    DockerLogsArgs,
    DockerLogsResult,
    DockerPsArgs,
    DockerPsResult,
    DockerRemoveArgs,
    DockerRemoveResult,
    DockerRunArgs,
    DockerRunResult,
    DockerStopArgs,
    DockerStopResult,
    DockerSystemPruneArgs,
    DockerSystemPruneResult,
    ImageSummary,
)
from tools.errors import ToolError, ToolFailed
from tools.spec import ToolServer, tool

_EPOCH = 1_700_000_000
_SIGTERM_EXIT = 143


def fake_id(*parts: str) -> str:
    """A deterministic 64-hex id derived from ``parts``."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


@dataclass
class FakeImage:
    """An image the fake engine knows."""

    id: str
    tags: list[str]
    labels: dict[str, str]
    size: int = 7_340_032
    created: int = _EPOCH


@dataclass
class FakeContainer:
    """A container the fake engine knows."""

    id: str
    name: str
    image: str
    labels: dict[str, str]
    state: str = "created"
    exit_code: int | None = None
    logs: str = ""
    auto_remove: bool = False
    created: int = _EPOCH


@dataclass
class CannedRun:
    """What a container of a given image prints and how it exits."""

    exit_code: int = 0
    logs: str = ""


@dataclass
class _Book:
    calls: list[tuple[str, BaseModel]] = field(default_factory=list)
    failures: dict[str, list[ToolError]] = field(default_factory=dict)


def _labels_match(have: dict[str, str], want: dict[str, str | None]) -> bool:
    return all(k in have and (v is None or have[k] == v) for k, v in want.items())


class FakeDockerServer(ToolServer):
    """The ``docker`` server without an engine: state in dicts, deterministic ids."""

    name = "docker"

    def __init__(
        self,
        *,
        runs: dict[str, CannedRun] | None = None,
        build_errors: dict[str, str] | None = None,
    ) -> None:
        self.images: dict[str, FakeImage] = {}
        self.containers: dict[str, FakeContainer] = {}
        self.runs = dict(runs or {})  # image reference -> canned run
        self.build_errors = dict(build_errors or {})  # image_tag -> engine error message
        self._book = _Book()
        self._serial = itertools.count(1)

    @property
    def calls(self) -> list[tuple[str, BaseModel]]:
        """Every call as ``(tool, args)``, oldest first."""
        return self._book.calls

    def fail_next(self, tool: str, error: ToolError) -> None:
        """Make the next call of ``tool`` (e.g. ``"docker_build"``) raise ``error``."""
        self._book.failures.setdefault(tool, []).append(error)

    def _enter(self, tool: str, args: BaseModel) -> None:
        self._book.calls.append((tool, args))
        queued = self._book.failures.get(tool)
        if queued:
            raise queued.pop(0)

    # --- lookups -------------------------------------------------------------------

    def image(self, ref: str) -> FakeImage | None:
        """The image a tag, id or id prefix names (``name`` alone means ``name:latest``)."""
        tag = ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest"
        for image in self.images.values():
            if tag in image.tags or image.id == ref or image.id.startswith(f"sha256:{ref}"):
                return image
        return None

    def _container(self, ref: str, tool: str) -> FakeContainer:
        ref = ref.lstrip("/")
        for container in self.containers.values():
            if ref in (container.name, container.id) or container.id.startswith(ref):
                return container
        raise ToolFailed(f"No such container: {ref}", tool=f"docker.{tool}", status=404)

    # --- tools ---------------------------------------------------------------------

    @tool()
    async def docker_build(self, args: DockerBuildArgs) -> DockerBuildResult:
        """Record an image under ``image_tag`` with an id derived from the build inputs."""
        self._enter("docker_build", args)
        if args.image_tag in self.build_errors:
            message = self.build_errors[args.image_tag]
            raise ToolFailed(
                f"build of {args.image_tag} failed: {message}", tool="docker.docker_build"
            )
        inputs = [args.image_tag, args.dockerfile_path, args.dockerfile, args.target or ""]
        inputs += [f"{k}={v}" for k, v in sorted(args.build_args.items())]
        image_id = "sha256:" + fake_id(*inputs)
        tag = (
            args.image_tag
            if ":" in args.image_tag.rsplit("/", 1)[-1]
            else f"{args.image_tag}:latest"
        )
        for other in self.images.values():  # a tag names one image: the old one loses it
            if tag in other.tags:
                other.tags.remove(tag)
        image = self.images.setdefault(image_id, FakeImage(image_id, [], dict(args.labels)))
        image.tags.append(tag)
        log = [f"Step 1/1 : FROM scratch{' AS ' + args.target if args.target else ''}"]
        log += [f"Successfully built {image_id[7:19]}", f"Successfully tagged {tag}"]
        return DockerBuildResult(image_id=image_id, image_tag=args.image_tag, log_tail=log)

    @tool()
    async def docker_run(self, args: DockerRunArgs) -> DockerRunResult:
        """Start a fake container; a non-detached one exits at once with its canned run."""
        self._enter("docker_run", args)
        image = self.image(args.image)
        if image is None:
            raise ToolFailed(f"No such image: {args.image}", tool="docker.docker_run", status=404)
        serial = str(next(self._serial))
        name = args.name or f"fake_container_{serial}"
        if any(c.name == name for c in self.containers.values()):
            raise ToolFailed(
                f'Conflict. The container name "/{name}" is already in use',
                tool="docker.docker_run",
                status=409,
            )
        canned = self.runs.get(args.image, CannedRun())
        container = FakeContainer(
            id=fake_id("container", serial),
            name=name,
            image=args.image,
            labels=dict(args.labels),
            state="running",
            logs=canned.logs,
            auto_remove=args.detach and args.remove,
        )
        self.containers[container.id] = container
        ports = {
            (p if "/" in p else f"{p}/tcp"): [f"0.0.0.0:{host or 32768 + i}"]
            for i, (p, host) in enumerate(args.ports.items())
        }
        if args.detach:
            return DockerRunResult(
                container_id=container.id, name=name, status="running", ports=ports
            )
        container.state, container.exit_code = "exited", canned.exit_code
        if args.remove:
            del self.containers[container.id]
        return DockerRunResult(
            container_id=container.id,
            name=name,
            status="removed" if args.remove else "exited",
            exit_code=canned.exit_code,
            logs=canned.logs,
            ports=ports,
            removed=args.remove,
        )

    @tool(read_only=True)
    async def docker_ps(self, args: DockerPsArgs) -> DockerPsResult:
        """List fake containers with the engine's filter semantics for label/name/status/id."""
        self._enter("docker_ps", args)
        unknown = set(args.filters) - {"label", "name", "status", "id"}
        if unknown:
            raise ToolFailed(
                f"invalid filter '{sorted(unknown)[0]}'", tool="docker.docker_ps", status=400
            )
        labels: dict[str, str | None] = dict(args.labels)
        for item in args.filters.get("label", []):
            key, _, value = item.partition("=")
            labels[key] = value if _ else None
        names = [*args.filters.get("name", []), *([args.name] if args.name else [])]
        rows = []
        for c in self.containers.values():
            if not args.all and c.state != "running" and "status" not in args.filters:
                continue
            if "status" in args.filters and c.state not in args.filters["status"]:
                continue
            if "id" in args.filters and not any(c.id.startswith(i) for i in args.filters["id"]):
                continue
            if names and not any(n in c.name for n in names):  # the engine matches substrings
                continue
            if _labels_match(c.labels, labels):
                rows.append(c)
        return DockerPsResult(
            containers=[
                ContainerSummary(
                    id=c.id,
                    name=c.name,
                    image=c.image,
                    state=c.state,
                    status="Up" if c.state == "running" else f"Exited ({c.exit_code})",
                    labels=c.labels,
                    created=c.created,
                )
                for c in rows
            ]
        )

    @tool(read_only=True)
    async def docker_logs(self, args: DockerLogsArgs) -> DockerLogsResult:
        """The container's canned logs, last ``tail`` lines."""
        self._enter("docker_logs", args)
        lines = self._container(args.container, "docker_logs").logs.splitlines(keepends=True)
        if args.tail is not None:
            lines = lines[-args.tail :] if args.tail else []
        if args.timestamps:
            lines = [f"2023-11-14T22:13:20.000000000Z {line}" for line in lines]
        return DockerLogsResult(container=args.container, logs="".join(lines))

    @tool()
    async def docker_stop(self, args: DockerStopArgs) -> DockerStopResult:
        """Stop a running container (exit 143, as after SIGTERM)."""
        self._enter("docker_stop", args)
        container = self._container(args.container, "docker_stop")
        if container.state == "running":
            container.state, container.exit_code = "exited", _SIGTERM_EXIT
            if container.auto_remove:
                del self.containers[container.id]
        return DockerStopResult(
            container=args.container, state=container.state, exit_code=container.exit_code
        )

    @tool()
    async def docker_remove(self, args: DockerRemoveArgs) -> DockerRemoveResult:
        """Remove a container; a running one only with ``force``."""
        self._enter("docker_remove", args)
        container = self._container(args.container, "docker_remove")
        if container.state == "running" and not args.force:
            raise ToolFailed(
                f"You cannot remove a running container {container.id}. "
                "Stop the container before attempting removal or force remove",
                tool="docker.docker_remove",
                status=409,
            )
        del self.containers[container.id]
        return DockerRemoveResult(container=args.container)

    @tool(read_only=True)
    async def docker_images(self, args: DockerImagesArgs) -> DockerImagesResult:
        """List fake images; ``reference`` is a glob on ``name`` or ``name:tag``.

        The fake has no intermediate images, so ``all`` changes nothing.
        """
        self._enter("docker_images", args)
        found = []
        for image in self.images.values():
            if args.reference is not None and not any(
                fnmatch.fnmatchcase(t, args.reference)
                or fnmatch.fnmatchcase(t.rsplit(":", 1)[0], args.reference)
                for t in image.tags
            ):
                continue
            if _labels_match(image.labels, args.labels):
                found.append(image)
        return DockerImagesResult(
            images=[
                ImageSummary(
                    id=i.id, repo_tags=list(i.tags), size=i.size, created=i.created, labels=i.labels
                )
                for i in found
            ]
        )

    @tool()
    async def docker_system_prune(self, args: DockerSystemPruneArgs) -> DockerSystemPruneResult:
        """Drop stopped containers, then unused (or only untagged) images."""
        self._enter("docker_system_prune", args)
        result = DockerSystemPruneResult()
        if args.containers:
            for c in list(self.containers.values()):
                if c.state != "running" and _labels_match(c.labels, args.labels):
                    result.containers_deleted.append(c.id)
                    del self.containers[c.id]
        if args.images:
            in_use = {id(self.image(c.image)) for c in self.containers.values()}
            for image in list(self.images.values()):
                unused = id(image) not in in_use and (not args.dangling or not image.tags)
                if unused and _labels_match(image.labels, args.labels):
                    result.images_deleted.append(image.id)
                    result.space_reclaimed += image.size
                    del self.images[image.id]
        return result
