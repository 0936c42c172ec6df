"""The ``docker`` adapter against the live Docker Engine, and its in-memory fake.

No registry is reachable, so every image is built ``FROM scratch`` with a static busybox.
Each test labels what it creates with a unique value and removes it afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from aiodocker.exceptions import DockerError
from pydantic import BaseModel, ValidationError

from schemas.tools.docker import (
    DockerBuildArgs,
    DockerImagesArgs,
    DockerLogsArgs,
    DockerPsArgs,
    DockerRemoveArgs,
    DockerRunArgs,
    DockerStopArgs,
    DockerSystemPruneArgs,
)
from tools.adapters.docker import DockerConfig, DockerServer, translate_docker_error
from tools.errors import ToolArgumentError, ToolFailed, ToolTimeout, ToolTransientError
from tools.fakes.docker import CannedRun, FakeDockerServer

BUSYBOX = Path("/usr/bin/busybox")

# Two stages; ``target`` picks one, ``build_args`` reaches the image through ENV.
# Every stage carries the test label, so unused stage images can be pruned by label.
MULTI_STAGE = """\
FROM scratch AS a
LABEL codebus.test=$LABEL
ARG GREETING=nobody
ENV GREETING=$GREETING
COPY busybox /bin/busybox
ENTRYPOINT ["/bin/busybox"]
CMD ["sh", "-c", "echo stage-a $GREETING"]

FROM scratch AS b
LABEL codebus.test=$LABEL
COPY busybox /bin/busybox
ENTRYPOINT ["/bin/busybox"]
CMD ["sh", "-c", "echo stage-b"]
"""


@dataclass
class Engine:
    """The adapter under test plus what this test must clean up."""

    server: DockerServer
    raw: aiodocker.Docker
    label: str
    tags: list[str]

    async def call(self, tool: str, args: BaseModel) -> Any:
        """Call ``docker.<tool>`` through its bound method, as the registry would."""
        bound = {t.spec.name: t for t in self.server.tools()}[f"docker.{tool}"]
        return await bound.call(args)

    def tag(self, name: str = "img") -> str:
        """A unique image tag that is removed after the test."""
        tag = f"codebus-test/{name}:{self.label}"
        self.tags.append(tag)
        return tag

    @property
    def labels(self) -> dict[str, str]:
        """Labels marking objects as this test's."""
        return {"codebus.test": self.label}

    @property
    def selector(self) -> dict[str, str | None]:
        """A label filter matching only this test's objects."""
        return {"codebus.test": self.label}


def make_context(root: Path, dockerfile: str, **files: str) -> Path:
    """A build context with busybox, the Dockerfile and extra text files."""
    if not BUSYBOX.exists():
        pytest.skip("needs /usr/bin/busybox (Debian busybox-static)")
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, root / "busybox")
    (root / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@pytest.fixture
async def engine(docker_host: str) -> AsyncIterator[Engine]:
    """The adapter on the live engine; removes labelled containers and tagged images."""
    server = DockerServer(DockerConfig(url=docker_host, api_timeout=30, run_timeout=30))
    raw = aiodocker.Docker(url=docker_host)
    env = Engine(server, raw, uuid.uuid4().hex[:12], [])
    try:
        yield env
    finally:
        filters = {"label": [f"codebus.test={env.label}"]}
        for row in await raw.containers.list(all=True, filters=filters):
            try:
                await row.delete(force=True)
            except DockerError:
                pass
        # Labelled images, including the untagged images of stages a build passed through.
        with contextlib.suppress(DockerError):
            await raw.images.prune(filters={"label": filters["label"], "dangling": ["false"]})
        for tag in env.tags:
            try:
                await raw.images.delete(tag, force=True)
            except DockerError:
                pass
        await server.close()
        await raw.close()


async def build(engine: Engine, tmp_path: Path, dockerfile: str = MULTI_STAGE, **kw: Any) -> Any:
    """Build ``dockerfile`` in a fresh context through the adapter."""
    make_context(tmp_path / "ctx", dockerfile.replace("$LABEL", engine.label))
    kw.setdefault("image_tag", engine.tag())
    args = DockerBuildArgs(dockerfile_path=str(tmp_path / "ctx"), labels=engine.labels, **kw)
    return await engine.call("docker_build", args)


@pytest.mark.docker
async def test_build_with_build_args_and_target_then_run(engine: Engine, tmp_path: Path) -> None:
    built = await build(engine, tmp_path, target="a", build_args={"GREETING": "world"})
    assert built.image_id.startswith("sha256:")
    assert any("Successfully tagged" in line for line in built.log_tail)

    ran = await engine.call(
        "docker_run", DockerRunArgs(image=built.image_tag, labels=engine.labels, remove=True)
    )
    # target "a" rather than the last stage "b"; the build arg reached the image.
    assert ran.exit_code == 0
    assert ran.logs == "stage-a world\n"
    assert ran.removed


@pytest.mark.docker
async def test_build_relative_context_and_custom_dockerfile(engine: Engine, tmp_path: Path) -> None:
    make_context(tmp_path / "app", MULTI_STAGE.replace("$LABEL", engine.label))
    (tmp_path / "app" / "Dockerfile").rename(tmp_path / "app" / "build.Dockerfile")
    server = DockerServer(engine.server.config.model_copy(update={"context_root": tmp_path}))
    try:
        bound = {t.spec.name: t for t in server.tools()}["docker.docker_build"]
        args = DockerBuildArgs(
            dockerfile_path="app",
            dockerfile="build.Dockerfile",
            image_tag=engine.tag("rel"),
            labels=engine.labels,
        )
        built: Any = await bound.call(args)
    finally:
        await server.close()
    images = await engine.call("docker_images", DockerImagesArgs(reference="codebus-test/rel"))
    assert [i.id for i in images.images if args.image_tag in i.repo_tags] == [built.image_id]


@pytest.mark.docker
async def test_build_failure_names_the_engine_error(engine: Engine, tmp_path: Path) -> None:
    broken = "FROM scratch\nCOPY missing-file.txt /x\n"
    with pytest.raises(ToolFailed) as caught:
        await build(engine, tmp_path, dockerfile=broken)
    assert "missing-file.txt" in str(caught.value)
    assert "COPY failed" in str(caught.value)


@pytest.mark.docker
async def test_build_checks_context_directory(engine: Engine, tmp_path: Path) -> None:
    args = DockerBuildArgs(dockerfile_path=str(tmp_path / "nope"), image_tag=engine.tag())
    with pytest.raises(ToolArgumentError) as caught:
        await engine.call("docker_build", args)
    assert caught.value.fields == ("dockerfile_path",)


@pytest.mark.docker
async def test_build_context_honours_dockerignore_and_context_root(
    engine: Engine, tmp_path: Path
) -> None:
    dockerfile = "FROM scratch\nCOPY secret.txt /\n"
    make_context(tmp_path / "ctx", dockerfile, **{"secret.txt": "pw"})
    (tmp_path / "ctx" / ".dockerignore").write_text("# keep secrets out\nsecret.txt\n")
    args = DockerBuildArgs(dockerfile_path=str(tmp_path / "ctx"), image_tag=engine.tag())
    with pytest.raises(ToolFailed, match=r"secret\.txt"):  # it never reached the engine
        await engine.call("docker_build", args)
    confined = DockerServer(
        engine.server.config.model_copy(update={"context_root": tmp_path / "ctx"})
    )
    try:
        bound = {t.spec.name: t for t in confined.tools()}["docker.docker_build"]
        with pytest.raises(ToolArgumentError) as caught:
            await bound.call(DockerBuildArgs(dockerfile_path="..", image_tag=engine.tag()))
        assert caught.value.fields == ("dockerfile_path",)
    finally:
        await confined.close()


@pytest.mark.parametrize(
    "bad", ["Upper:1", "app/UP:1", "app:1:2", "has space", "-lead", "a:" + "x" * 200]
)
def test_invalid_image_tag_names_the_field(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DockerBuildArgs.model_validate({"dockerfile_path": ".", "image_tag": bad})
    assert [e["loc"] for e in caught.value.errors()] == [("image_tag",)]


@pytest.mark.docker
async def test_container_lifecycle_run_ps_logs_stop_remove(engine: Engine, tmp_path: Path) -> None:
    built = await build(engine, tmp_path, target="b")
    name = f"codebus-test-{engine.label}"
    command = ["sh", "-c", "echo started; echo warning >&2; exec sleep 30"]
    run = DockerRunArgs(
        image=built.image_tag, command=command, name=name, labels=engine.labels, detach=True
    )
    started = await engine.call("docker_run", run)
    assert started.name == name and started.exit_code is None

    ps = await engine.call("docker_ps", DockerPsArgs(labels={"codebus.test": engine.label}))
    assert [(c.name, c.state) for c in ps.containers] == [(name, "running")]

    logs = None
    for _ in range(50):  # the echo lands a moment after start
        logs = await engine.call("docker_logs", DockerLogsArgs(container=name, tail=10))
        if logs.logs.count("\n") == 2:
            break
    # stdout and stderr both; the engine does not promise their relative order.
    assert logs is not None and sorted(logs.logs.splitlines()) == ["started", "warning"]

    stopped = await engine.call("docker_stop", DockerStopArgs(container=name, timeout=0))
    assert stopped.state == "exited"
    running = await engine.call("docker_ps", DockerPsArgs(name=name))
    assert running.containers == []
    every = await engine.call("docker_ps", DockerPsArgs(name=name, all=True))
    assert [c.state for c in every.containers] == ["exited"]

    await engine.call("docker_remove", DockerRemoveArgs(container=name))
    gone = await engine.call("docker_ps", DockerPsArgs(name=name, all=True))
    assert gone.containers == []
    with pytest.raises(ToolFailed) as caught:
        await engine.call("docker_logs", DockerLogsArgs(container=name))
    assert caught.value.status == 404


@pytest.mark.docker
async def test_run_returns_exit_code_and_capped_logs(engine: Engine, tmp_path: Path) -> None:
    built = await build(engine, tmp_path, target="b")
    engine.server.config.max_log_bytes = 100
    script = "i=0; while [ $i -lt 50 ]; do echo line-$i; i=$((i+1)); done; exit 3"
    run = DockerRunArgs(image=built.image_tag, command=["sh", "-c", script], labels=engine.labels)
    ran = await engine.call("docker_run", run)
    assert ran.exit_code == 3 and ran.status == "exited" and not ran.removed
    # The newest bytes are kept: the end of the output explains how the run ended.
    assert ran.logs_truncated and len(ran.logs.encode()) <= 100
    assert ran.logs.endswith("line-48\nline-49\n") and "line-1\n" not in ran.logs


@pytest.mark.docker
async def test_run_timeout_kills_and_removes(engine: Engine, tmp_path: Path) -> None:
    built = await build(engine, tmp_path, target="b")
    run = DockerRunArgs(
        image=built.image_tag,
        command=["sleep", "30"],
        labels=engine.labels,
        remove=True,
        timeout=1,
    )
    with pytest.raises(ToolTimeout):
        await engine.call("docker_run", run)
    left = await engine.call("docker_ps", DockerPsArgs(all=True, labels=engine.selector))
    assert left.containers == []


@pytest.mark.docker
async def test_run_unknown_image_is_a_permanent_failure(engine: Engine) -> None:
    with pytest.raises(ToolFailed) as caught:
        await engine.call("docker_run", DockerRunArgs(image=engine.tag("absent")))
    assert caught.value.status == 404


@pytest.mark.docker
async def test_prune_removes_only_labelled_objects(engine: Engine, tmp_path: Path) -> None:
    # A unique file makes a layer that no other image shares, so bytes are reclaimed.
    dockerfile = "FROM scratch\nCOPY busybox /bin/busybox\nCOPY unique.txt /unique.txt\n"
    make_context(tmp_path / "ctx", dockerfile, **{"unique.txt": uuid.uuid4().hex * 1000})
    tag = engine.tag("prune")
    built = await engine.call(
        "docker_build",
        DockerBuildArgs(dockerfile_path=str(tmp_path / "ctx"), image_tag=tag, labels=engine.labels),
    )
    await engine.call(
        "docker_run",
        DockerRunArgs(image=tag, command=["/bin/busybox", "true"], labels=engine.labels),
    )

    pruned = await engine.call(
        "docker_system_prune", DockerSystemPruneArgs(dangling=False, labels=engine.selector)
    )
    assert len(pruned.containers_deleted) == 1
    assert built.image_id in pruned.images_deleted
    assert pruned.space_reclaimed >= 32_000
    images = await engine.call("docker_images", DockerImagesArgs(labels=engine.selector))
    assert images.images == []


async def test_unreachable_engine_is_transient(tmp_path: Path) -> None:
    server = DockerServer(DockerConfig(url=f"unix://{tmp_path}/absent.sock"))
    try:
        bound = {t.spec.name: t for t in server.tools()}["docker.docker_ps"]
        assert bound.spec.read_only
        with pytest.raises(ToolTransientError):
            await bound.call(DockerPsArgs())
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, ToolTransientError), (503, ToolTransientError), (429, ToolTransientError),
     (404, ToolFailed), (409, ToolFailed), (400, ToolFailed)],
)  # fmt: skip
def test_engine_status_mapping(status: int, kind: type[Exception]) -> None:
    error = translate_docker_error(DockerError(status, "boom"), "docker.docker_ps")
    assert type(error) is kind
    assert error.status == status and error.tool == "docker.docker_ps"  # type: ignore[attr-defined]


def test_read_only_marks() -> None:
    specs = {t.spec.tool: t.spec.read_only for t in DockerServer().tools()}
    assert {name for name, ro in specs.items() if ro} == {
        "docker_ps",
        "docker_logs",
        "docker_images",
    }
    assert len(specs) == 8


# --- the fake ------------------------------------------------------------------------


def test_fake_has_the_real_tools_and_models() -> None:
    def shape(server: DockerServer | FakeDockerServer) -> set[tuple[Any, ...]]:
        return {
            (t.spec.name, t.spec.args_model, t.spec.result_model, t.spec.read_only)
            for t in server.tools()
        }

    assert shape(FakeDockerServer()) == shape(DockerServer())


async def fake_call(fake: FakeDockerServer, tool: str, args: BaseModel) -> Any:
    """Call a tool of the fake through its bound method."""
    return await {t.spec.tool: t for t in fake.tools()}[tool].call(args)


async def test_fake_build_is_deterministic_and_moves_tags() -> None:
    fake = FakeDockerServer()
    args = DockerBuildArgs(dockerfile_path=".", image_tag="app:1", build_args={"V": "1"})
    first = await fake_call(fake, "docker_build", args)
    again = await fake_call(fake, "docker_build", args)
    assert first.image_id == again.image_id and first.image_id.startswith("sha256:")
    changed = args.model_copy(update={"build_args": {"V": "2"}})
    moved = await fake_call(fake, "docker_build", changed)
    assert moved.image_id != first.image_id
    listed = await fake_call(fake, "docker_images", DockerImagesArgs(reference="app"))
    assert {i.id: i.repo_tags for i in listed.images} == {moved.image_id: ["app:1"]}
    pruned = await fake_call(fake, "docker_system_prune", DockerSystemPruneArgs())
    assert pruned.images_deleted == [first.image_id] and pruned.space_reclaimed > 0


async def test_fake_container_lifecycle() -> None:
    fake = FakeDockerServer(runs={"app:1": CannedRun(exit_code=0, logs="a\nb\nc\n")})
    with pytest.raises(ToolFailed) as missing:
        await fake_call(fake, "docker_run", DockerRunArgs(image="app:1"))
    assert missing.value.status == 404
    await fake_call(fake, "docker_build", DockerBuildArgs(dockerfile_path=".", image_tag="app:1"))
    run = DockerRunArgs(image="app:1", name="web", detach=True, labels={"team": "x"})
    started = await fake_call(fake, "docker_run", run)
    assert started.status == "running" and started.exit_code is None
    with pytest.raises(ToolFailed) as clash:
        await fake_call(fake, "docker_run", run)
    assert clash.value.status == 409
    ps = await fake_call(fake, "docker_ps", DockerPsArgs(labels={"team": "x"}))
    assert [c.name for c in ps.containers] == ["web"]
    logs = await fake_call(fake, "docker_logs", DockerLogsArgs(container="web", tail=2))
    assert logs.logs == "b\nc\n"
    with pytest.raises(ToolFailed) as busy:
        await fake_call(fake, "docker_remove", DockerRemoveArgs(container="web"))
    assert busy.value.status == 409
    stopped = await fake_call(fake, "docker_stop", DockerStopArgs(container="web"))
    assert (stopped.state, stopped.exit_code) == ("exited", 143)
    assert (await fake_call(fake, "docker_ps", DockerPsArgs())).containers == []
    await fake_call(fake, "docker_remove", DockerRemoveArgs(container="web"))
    assert (await fake_call(fake, "docker_ps", DockerPsArgs(all=True))).containers == []
    waited = await fake_call(fake, "docker_run", DockerRunArgs(image="app:1", remove=True))
    assert (waited.exit_code, waited.logs, waited.removed) == (0, "a\nb\nc\n", True)


async def test_fake_injected_failure_is_raised_once_and_calls_are_recorded() -> None:
    fake = FakeDockerServer(build_errors={"bad:1": "COPY failed: missing.txt"})
    fake.fail_next("docker_ps", ToolTransientError("engine restarting", status=503))
    with pytest.raises(ToolTransientError):
        await fake_call(fake, "docker_ps", DockerPsArgs())
    assert (await fake_call(fake, "docker_ps", DockerPsArgs())).containers == []
    with pytest.raises(ToolFailed, match=r"missing\.txt"):
        await fake_call(
            fake, "docker_build", DockerBuildArgs(dockerfile_path=".", image_tag="bad:1")
        )
    assert [name for name, _ in fake.calls] == ["docker_ps", "docker_ps", "docker_build"]
