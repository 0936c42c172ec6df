"""The ``docker`` tool server: the Docker Engine API through aiodocker.

Every engine failure is translated into the tool error tree (``tools.errors``):
HTTP 5xx/429 and connection failures are :class:`ToolTransientError` (worth a retry),
other HTTP errors and errors reported inside a build stream are :class:`ToolFailed`.
``docker_build`` sends the build context made by ``tools.adapters.docker_context``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError, DockerStreamError
from pydantic import BaseModel, ConfigDict, Field

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
from tools.adapters.docker_context import build_context_tar, context_chunks
from tools.errors import (
    ToolArgumentError,
    ToolError,
    ToolFailed,
    ToolTimeout,
    ToolTransientError,
)
from tools.spec import ToolServer, tool

# aiodocker reports "cannot connect" as a DockerError with this pseudo status.
_CONNECT_STATUS = 900


class DockerConfig(BaseModel):
    """Where the engine is and how long to wait for it."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, description="None: DOCKER_HOST or the unix socket")
    api_timeout: float = Field(default=60.0, gt=0, description="seconds per short API call")
    build_timeout: float = Field(default=900.0, gt=0)
    run_timeout: float = Field(default=300.0, gt=0, description="wait for a non-detached run")
    context_root: Path | None = Field(
        default=None,
        description="base of a relative dockerfile_path, and the directory every build "
        "context must lie in (None: relative to the process cwd, anywhere)",
    )
    max_context_bytes: int = Field(default=1024**3, gt=0)
    max_log_bytes: int = Field(default=64 * 1024, gt=0, description="cap on returned logs")
    log_tail_lines: int = Field(default=40, ge=0, description="build output lines returned")


def translate_docker_error(exc: BaseException, tool: str) -> ToolError:
    """Map an aiodocker/aiohttp/OS exception onto the tool error tree."""
    if isinstance(exc, DockerStreamError):
        return ToolFailed(exc.message, tool=tool)
    if isinstance(exc, DockerError):
        status = exc.status
        if status == _CONNECT_STATUS:
            return ToolTransientError(exc.message, tool=tool)
        message = f"engine error {status}: {exc.message}"
        if status >= 500 or status == 429:
            return ToolTransientError(message, tool=tool, status=status)
        return ToolFailed(message, tool=tool, status=status or None)
    if isinstance(exc, TimeoutError):
        return ToolTimeout(f"Docker Engine did not answer in time: {exc}", tool=tool)
    return ToolTransientError(f"cannot reach Docker Engine: {exc}", tool=tool)


@contextlib.contextmanager
def _engine_errors(tool: str) -> Iterator[None]:
    try:
        yield
    except ToolError:
        raise
    except (DockerError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        # OSError covers FileNotFoundError/ConnectionRefusedError on the unix socket.
        raise translate_docker_error(exc, tool) from exc


def _label_filters(labels: dict[str, str | None]) -> list[str]:
    return [key if value is None else f"{key}={value}" for key, value in labels.items()]


def _cap_tail(text: str, limit: int) -> tuple[str, bool]:
    """Keep the newest ``limit`` bytes: the end of a log explains how it ended."""
    raw = text.encode()
    if len(raw) <= limit:
        return text, False
    return raw[-limit:].decode(errors="ignore"), True


def _start_error(exc: DockerError, tool: str) -> ToolError:
    # The engine answers 500 for a bad entrypoint too; that one will not heal on retry.
    permanent = ("executable file not found", "no such file or directory", "permission denied")
    if any(hint in exc.message.lower() for hint in permanent):
        return ToolFailed(f"container failed to start: {exc.message}", tool=tool, status=exc.status)
    return translate_docker_error(exc, tool)


# --- the server --------------------------------------------------------------------


class DockerServer(ToolServer):
    """Tools over the Docker Engine API; names and arguments as in the guide."""

    name = "docker"

    def __init__(self, config: DockerConfig | None = None) -> None:
        self.config = config or DockerConfig()
        self._docker: aiodocker.Docker | None = None

    async def start(self) -> None:
        """Open the engine client (also opened lazily by the first call)."""
        self._client()

    async def close(self) -> None:
        """Close the engine client."""
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(
                    url=self.config.url,
                    timeout=aiohttp.ClientTimeout(total=self.config.api_timeout),
                )
            except (OSError, ValueError) as exc:
                message = f"cannot reach Docker Engine: {exc}"
                raise ToolTransientError(message, tool="docker") from exc
        return self._docker

    def _context_dir(self, args: DockerBuildArgs) -> Path:
        base = self.config.context_root or Path.cwd()
        root = (base / args.dockerfile_path).resolve()
        limit = self.config.context_root
        if limit is not None and not root.is_relative_to(limit.resolve()):
            # Least privilege: a caller cannot ship arbitrary host directories to the engine.
            raise ToolArgumentError(
                f"dockerfile_path {args.dockerfile_path!r} leaves the context root {limit}",
                tool="docker.docker_build",
                fields=("dockerfile_path",),
            )
        if not root.is_dir():
            raise ToolArgumentError(
                f"dockerfile_path {args.dockerfile_path!r} is not a directory ({root})",
                tool="docker.docker_build",
                fields=("dockerfile_path",),
            )
        if not (root / args.dockerfile).is_file():
            raise ToolArgumentError(
                f"dockerfile {args.dockerfile!r} not found in build context {root}",
                tool="docker.docker_build",
                fields=("dockerfile",),
            )
        return root

    @tool()
    async def docker_build(self, args: DockerBuildArgs) -> DockerBuildResult:
        """Build an image from the build context directory ``dockerfile_path``."""
        name = "docker.docker_build"
        root = self._context_dir(args)
        started = time.monotonic()
        spool = await asyncio.to_thread(
            build_context_tar, root, args.dockerfile, self.config.max_context_bytes
        )
        params: dict[str, Any] = {
            "t": args.image_tag,
            "dockerfile": args.dockerfile,
            "rm": True,
            "forcerm": True,
            "nocache": args.no_cache,
        }
        if args.build_args:
            params["buildargs"] = json.dumps(args.build_args)
        if args.labels:
            params["labels"] = json.dumps(args.labels)
        if args.target:
            params["target"] = args.target
        tail: deque[str] = deque(maxlen=self.config.log_tail_lines)
        image_id = ""
        docker = self._client()
        try:
            with _engine_errors(name):
                async with (
                    asyncio.timeout(self.config.build_timeout),
                    docker._query(  # aiodocker's build() cannot pass ``target``
                        "build",
                        "POST",
                        params=params,
                        data=context_chunks(spool),
                        headers={"content-type": "application/x-tar"},
                        timeout=aiohttp.ClientTimeout(total=None),
                    ) as response,
                ):
                    try:
                        image_id = await self._read_build_stream(response, tail, args.image_tag)
                    finally:
                        response.release()
                if not image_id:  # old engines print the id only in "Successfully built"
                    image_id = (await docker.images.inspect(args.image_tag))["Id"]
        finally:
            spool.close()
        return DockerBuildResult(
            image_id=image_id,
            image_tag=args.image_tag,
            log_tail=list(tail),
            duration_seconds=round(time.monotonic() - started, 3),
        )

    @staticmethod
    async def _read_build_stream(
        response: aiohttp.ClientResponse, tail: deque[str], image_tag: str
    ) -> str:
        image_id = ""
        while line := await response.content.readline():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if "error" in item or "errorDetail" in item:
                detail = item.get("errorDetail") or {}
                message = detail.get("message") or item.get("error") or "unknown build error"
                # The engine's own words, e.g. "COPY failed: ... stat missing.txt: ...".
                raise ToolFailed(
                    f"build of {image_tag} failed: {message}", tool="docker.docker_build"
                )
            for text in str(item.get("stream", "")).splitlines():
                if text.strip():
                    tail.append(text)
            aux = item.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
        return image_id

    @tool()
    async def docker_run(self, args: DockerRunArgs) -> DockerRunResult:
        """Create and start a container; unless ``detach``, wait and return exit code and logs."""
        name = "docker.docker_run"
        docker = self._client()
        ports = {p if "/" in p else f"{p}/tcp": host for p, host in args.ports.items()}
        config: dict[str, Any] = {
            "Image": args.image,
            "Env": [f"{key}={value}" for key, value in args.env.items()],
            "Labels": args.labels,
            "ExposedPorts": {port: {} for port in ports},
            "HostConfig": {
                "PortBindings": {
                    port: [{"HostPort": "" if host is None else str(host)}]
                    for port, host in ports.items()
                },
                # Only a detached run can let the engine remove it: otherwise we need the
                # stopped container to read its exit code and logs first.
                "AutoRemove": args.detach and args.remove,
            },
        }
        if args.command is not None:
            config["Cmd"] = args.command
        with _engine_errors(name):
            container = await docker.containers.create(config, name=args.name)
            try:
                await container.start()
            except DockerError as exc:
                with contextlib.suppress(DockerError):
                    await container.delete(force=True)
                raise _start_error(exc, name) from exc
            if args.detach:
                return await self._detached_result(container, args)
            return await self._wait_run(container, args)

    async def _detached_result(self, container: Any, args: DockerRunArgs) -> DockerRunResult:
        try:
            info = await container.show()
        except DockerError as exc:
            # A quick command may already be gone when the engine removes it on exit.
            if exc.status != 404 or not args.remove:
                raise
            return DockerRunResult(
                container_id=container.id, name=args.name or "", status="removed", removed=True
            )
        return self._run_result(info, None, "", False, removed=False)

    async def _wait_run(self, container: Any, args: DockerRunArgs) -> DockerRunResult:
        name = "docker.docker_run"
        limit = args.timeout or self.config.run_timeout
        try:
            try:
                async with asyncio.timeout(limit):
                    status = await container.wait(timeout=aiohttp.ClientTimeout(total=None))
            except TimeoutError:
                with contextlib.suppress(DockerError):
                    await container.kill()
                raise ToolTimeout(
                    f"container {container.id[:12]} still running after {limit}s; killed",
                    tool=name,
                ) from None
            lines = await container.log(stdout=True, stderr=True)
            info = await container.show()
        finally:
            if args.remove:  # whatever happened, a remove=True run leaves nothing behind
                with contextlib.suppress(DockerError):
                    await container.delete(force=True)
        logs, truncated = _cap_tail("".join(lines), self.config.max_log_bytes)
        return self._run_result(info, status.get("StatusCode"), logs, truncated, args.remove)

    @staticmethod
    def _run_result(
        info: dict[str, Any], exit_code: int | None, logs: str, truncated: bool, removed: bool
    ) -> DockerRunResult:
        bindings = (info.get("NetworkSettings") or {}).get("Ports") or {}
        ports = {
            port: [f"{b.get('HostIp', '')}:{b.get('HostPort', '')}" for b in (bound or [])]
            for port, bound in bindings.items()
        }
        return DockerRunResult(
            container_id=info["Id"],
            name=info.get("Name", "").lstrip("/"),
            status="removed" if removed else (info.get("State") or {}).get("Status", "unknown"),
            exit_code=exit_code,
            logs=logs,
            logs_truncated=truncated,
            ports=ports,
            removed=removed,
        )

    @tool(read_only=True)
    async def docker_ps(self, args: DockerPsArgs) -> DockerPsResult:
        """List containers (running only unless ``all``), filtered by labels or name."""
        filters: dict[str, list[str]] = {key: list(v) for key, v in args.filters.items()}
        if args.labels:
            filters.setdefault("label", []).extend(_label_filters(args.labels))
        if args.name:
            filters.setdefault("name", []).append(args.name)
        with _engine_errors("docker.docker_ps"):
            rows = await self._client()._query_json(
                "containers/json", params={"all": args.all, "filters": json.dumps(filters)}
            )
        return DockerPsResult(
            containers=[
                ContainerSummary(
                    id=row["Id"],
                    name=(row.get("Names") or [""])[0].lstrip("/"),
                    image=row.get("Image", ""),
                    state=row.get("State", ""),
                    status=row.get("Status", ""),
                    labels=row.get("Labels") or {},
                    created=row.get("Created", 0),
                )
                for row in rows
            ]
        )

    @tool(read_only=True)
    async def docker_logs(self, args: DockerLogsArgs) -> DockerLogsResult:
        """Return a container's stdout and stderr, the newest bytes first kept."""
        with _engine_errors("docker.docker_logs"):
            container = self._client().containers.container(args.container)
            lines = await container.log(
                stdout=True,
                stderr=True,
                tail="all" if args.tail is None else args.tail,
                timestamps=args.timestamps,
            )
        logs, truncated = _cap_tail("".join(lines), self.config.max_log_bytes)
        return DockerLogsResult(container=args.container, logs=logs, truncated=truncated)

    @tool()
    async def docker_stop(self, args: DockerStopArgs) -> DockerStopResult:
        """Stop a container (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        with _engine_errors("docker.docker_stop"):
            container = self._client().containers.container(args.container)
            await container.stop(
                t=args.timeout,
                timeout=aiohttp.ClientTimeout(total=args.timeout + self.config.api_timeout),
            )
            state = (await container.show()).get("State") or {}
        return DockerStopResult(
            container=args.container,
            state=state.get("Status", "unknown"),
            exit_code=state.get("ExitCode"),
        )

    @tool()
    async def docker_remove(self, args: DockerRemoveArgs) -> DockerRemoveResult:
        """Remove a container; ``force`` kills it first if it is running."""
        with _engine_errors("docker.docker_remove"):
            container = self._client().containers.container(args.container)
            await container.delete(force=args.force, v=args.volumes)
        return DockerRemoveResult(container=args.container)

    @tool(read_only=True)
    async def docker_images(self, args: DockerImagesArgs) -> DockerImagesResult:
        """List images, optionally matching a reference pattern and labels."""
        filters: dict[str, list[str]] = {}
        if args.reference:
            filters["reference"] = [args.reference]
        if args.labels:
            filters["label"] = _label_filters(args.labels)
        with _engine_errors("docker.docker_images"):
            rows = await self._client().images.list(filters=filters, all=args.all)
        return DockerImagesResult(
            images=[
                ImageSummary(
                    id=row["Id"],
                    repo_tags=[t for t in row.get("RepoTags") or [] if t != "<none>:<none>"],
                    size=row.get("Size", 0),
                    created=row.get("Created", 0),
                    labels=row.get("Labels") or {},
                )
                for row in rows
            ]
        )

    @tool()
    async def docker_system_prune(self, args: DockerSystemPruneArgs) -> DockerSystemPruneResult:
        """Remove stopped containers and unused images; report the bytes reclaimed."""
        labels = _label_filters(args.labels)
        result = DockerSystemPruneResult()
        docker = self._client()
        with _engine_errors("docker.docker_system_prune"):
            # Containers first: their removal is what makes their images unused.
            if args.containers:
                pruned = await docker.containers.prune(filters={"label": labels} if labels else {})
                result.containers_deleted = pruned.get("ContainersDeleted") or []
                result.space_reclaimed += pruned.get("SpaceReclaimed") or 0
            if args.images:
                filters: dict[str, list[str]] = {"dangling": [str(args.dangling).lower()]}
                if labels:
                    filters["label"] = labels
                pruned = await docker.images.prune(filters=filters)
                for entry in pruned.get("ImagesDeleted") or []:
                    result.images_deleted.extend(v for k, v in entry.items() if k == "Deleted")
                result.space_reclaimed += pruned.get("SpaceReclaimed") or 0
        return result
