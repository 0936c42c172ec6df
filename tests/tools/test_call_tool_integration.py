"""Every tool server end to end through ``Toolbox.call_tool``, with every guard on.

The adapter tests call bound adapter methods directly. Here each server is built the way
a worker builds it: a YAML tools file (``load_tools_file``), ``real_servers``,
``guard_config`` (unit roles + per-tool overrides) and ``build_toolbox`` (full guard
chain, real Redis, a ``RedisStreamSink`` audit trail). Calls go through a least-privilege
role view against the same real or faithful servers the adapter tests use: the strict
Kubernetes API stand-in, the Slack and Azure DevOps stand-ins, the real prometheus
binary, moto's S3 server, the live Docker Engine, local processes and the built-in
security scanner.

Each test checks the typed result (real data from the server), the audit record in the
Redis stream, and for read-only tools that a second identical call is answered from the
Redis cache without reaching the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import boto3
import pytest
import yaml
from aiodocker.exceptions import DockerError

from schemas.names import Names
from schemas.tools.azure_devops import BuildStatus, ListProjectsResult, PipelineRun
from schemas.tools.desktop_commander import CommandResult, ReadFileResult, WriteFileResult
from schemas.tools.docker import DockerBuildResult, DockerImagesResult, DockerRunResult
from schemas.tools.kubernetes import KubectlApplyResult, KubectlGetResult, KubectlScaleResult
from schemas.tools.prometheus import PrometheusQueryResult, PrometheusTargetsResult
from schemas.tools.s3_storage import (
    S3DownloadFileResult,
    S3ListObjectsResult,
    S3UploadFileResult,
)
from schemas.tools.security_scanner import DockerSecurityScanResult, FileSecurityScanResult
from schemas.tools.slack import SendNotificationResult, SlackPostResult
from tests.helpers import moto_server
from tests.tools.adapters.ado_server import AdoStub, start_ado_stub
from tests.tools.adapters.k8s_apiserver import FakeApiServer, serve
from tests.tools.adapters.k8s_state import by_kind
from tests.tools.adapters.prom_process import JOB, prometheus_binary, running_prometheus
from tests.tools.adapters.slack_server import SlackStub, start_slack_stub
from tests.tools.adapters.test_docker import BUSYBOX
from tests.tools.adapters.test_kubernetes import deployment
from tests.tools.adapters.test_security_scanner import ADVISORIES, VULNERABLE_FILES, _build
from tools.errors import ToolArgumentError, ToolPermissionDenied
from tools.toolbox import Toolbox
from workers.toolbox import build_toolbox, guard_config, load_tools_file, real_servers

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PRINCIPAL = "integration-test"
SLACK_TOKEN = "xoxb-test-0000-secret"
ADO_PAT = "pat-secret-0123456789"
S3_KEY_ID = "AKIDTESTING"
S3_SECRET = "moto-secret-not-real"
FAST_RETRY = {"retry_base_delay": 0.01, "retry_max_delay": 0.05}


# ---- helpers -----------------------------------------------------------------------------


def make_toolbox(
    tmp_path: Path,
    redis: Any,
    names: Names,
    sections: dict[str, dict[str, Any]],
    roles: dict[str, list[str]],
) -> Toolbox:
    """The toolbox a worker would build from a tools file holding ``sections``."""
    path = tmp_path / f"tools-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        yaml.safe_dump({**sections, "guards": {"defaults": FAST_RETRY, "roles": roles}})
    )
    cfg = load_tools_file(path)
    servers = real_servers(cfg)
    assert len(servers) == len(sections)
    return build_toolbox(servers, redis, names, guard_config(cfg), principal=PRINCIPAL)


async def audit_records(redis: Any, names: Names) -> list[dict[str, Any]]:
    """Every record of the Redis audit stream, oldest first (checking the index fields)."""
    records = []
    for _, fields in await redis.xrange(names.audit_stream):
        record = json.loads(fields[b"record"])
        assert fields[b"tool"].decode() == record["tool"]
        assert fields[b"outcome"].decode() == record["outcome"]
        records.append(record)
    return records


def summary(records: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """(tool, outcome, cache_hit) of each record."""
    return [(r["tool"], r["outcome"], r["cache_hit"]) for r in records]


async def cache_keys(redis: Any, names: Names, tool: str) -> list[bytes]:
    """The cached results of ``tool`` in Redis."""
    return [k async for k in redis.scan_iter(match=names.cache_pattern(tool), count=500)]


def assert_full_chain(toolbox: Toolbox, tool: str) -> None:
    """Every guard is on for ``tool`` (retry is off only where the worker turns it off)."""
    policy = toolbox.policy(tool)
    assert policy.permission and policy.audit and policy.breaker
    assert policy.timeout is not None
    assert policy.retry or tool.startswith("desktop-commander.")
    assert policy.cache or not toolbox.spec(tool).read_only
    assert toolbox.cache is not None and toolbox.breakers is not None


async def assert_closed_breaker(toolbox: Toolbox, server: str) -> None:
    """The server's breaker (in Redis) saw no failures."""
    assert toolbox.breakers is not None
    status = await toolbox.breakers.status(server)
    assert (status.state, status.failures) == ("closed", 0)


def check_ok(record: dict[str, Any], tool: str, *, cache_hit: bool = False) -> None:
    """One successful audit record of ``tool`` made through the ``ops`` view."""
    assert record["tool"] == tool and record["outcome"] == "ok"
    assert record["role"] == "ops" and record["principal"] == PRINCIPAL
    assert record["server"] == tool.split(".")[0]
    assert record["cache_hit"] is cache_hit
    assert record["error"] is None
    # The retry guard counts attempts; a cache hit never reaches it.
    assert record["attempts"] == (0 if cache_hit else 1)


async def assert_audited_ok(
    redis: Any, names: Names, expected: list[tuple[str, str, bool]]
) -> list[dict[str, Any]]:
    """The audit stream holds exactly ``expected`` as (tool, outcome, cache_hit), each a
    successful record made through the ``ops`` view; returns the records."""
    records = await audit_records(redis, names)
    assert summary(records) == expected
    for record in records:
        check_ok(record, record["tool"], cache_hit=record["cache_hit"])
    return records


# ---- kubernetes --------------------------------------------------------------------------


@pytest.fixture
async def k8s() -> AsyncIterator[tuple[FakeApiServer, str]]:
    """The strict Kubernetes API stand-in of the adapter tests."""
    server = FakeApiServer()
    runner, url = await serve(server)
    try:
        yield server, url
    finally:
        await runner.cleanup()


async def test_kubernetes_through_call_tool(
    k8s: tuple[FakeApiServer, str], redis_client: Any, names: Names, tmp_path: Path
) -> None:
    api, url = k8s
    section = {"host": url, "token": api.token, "rollout_poll_interval": 0.01}
    toolbox = make_toolbox(
        tmp_path, redis_client, names, {"kubernetes": section}, {"ops": ["kubernetes.*"]}
    )
    manifest = tmp_path / "web.yaml"
    manifest.write_text(yaml.safe_dump(deployment(replicas=2)))
    async with toolbox:
        ops = toolbox.as_role("ops")
        for tool in ("kubectl_apply", "kubectl_get", "kubectl_scale"):
            assert_full_chain(toolbox, f"kubernetes.{tool}")

        applied = await ops.call_tool(
            "kubernetes.kubectl_apply", {"manifest_path": str(manifest), "namespace": "shop"}
        )
        assert isinstance(applied, KubectlApplyResult)
        assert applied.status == "created"
        assert applied.applied_resources == ["deployment/web"]
        stored = api.state.get(by_kind("Deployment"), "shop", "web")
        assert stored is not None and stored["spec"]["replicas"] == 2

        get_args = {"resource_type": "deploy", "name": "web", "namespace": "shop"}
        got = await ops.call_tool("kubernetes.kubectl_get", get_args)
        assert isinstance(got, KubectlGetResult)
        [item] = got.items
        assert item["metadata"]["name"] == "web" and item["spec"]["replicas"] == 2
        seen = len(api.requests)
        again = await ops.call_tool("kubernetes.kubectl_get", get_args)
        assert again == got
        assert len(api.requests) == seen  # served from the cache
        assert len(await cache_keys(redis_client, names, "kubernetes.kubectl_get")) == 1

        scaled = await ops.call_tool(
            "kubernetes.kubectl_scale", {"name": "web", "replicas": 5, "namespace": "shop"}
        )
        assert isinstance(scaled, KubectlScaleResult)
        assert (scaled.success, scaled.previous_replicas, scaled.replicas) == (True, 2, 5)
        stored = api.state.get(by_kind("Deployment"), "shop", "web")
        assert stored is not None and stored["spec"]["replicas"] == 5
        await assert_closed_breaker(toolbox, "kubernetes")

    records = await assert_audited_ok(
        redis_client,
        names,
        [
            ("kubernetes.kubectl_apply", "ok", False),
            ("kubernetes.kubectl_get", "ok", False),
            ("kubernetes.kubectl_get", "ok", True),
            ("kubernetes.kubectl_scale", "ok", False),
        ],
    )
    assert records[0]["arguments"]["manifest_path"] == str(manifest)
    assert records[0]["result"]["applied_resources"] == ["deployment/web"]
    assert records[3]["arguments"] == {
        "resource_type": "deployment",
        "name": "web",
        "replicas": 5,
        "namespace": "shop",
    }
    # The API token never reaches the audit trail.
    assert api.token not in json.dumps(records)


# ---- slack-notifications -----------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[tuple[SlackStub, str]]:
    """The Slack stand-in and its base URL."""
    state = SlackStub(token=SLACK_TOKEN)
    server = await start_slack_stub(state)
    try:
        yield state, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_slack_through_call_tool(
    slack: tuple[SlackStub, str], redis_client: Any, names: Names, tmp_path: Path
) -> None:
    stub, base = slack
    section = {"bot_token": SLACK_TOKEN, "base_url": f"{base}/api", "timeout": 5}
    toolbox = make_toolbox(
        tmp_path,
        redis_client,
        names,
        {"slack_notifications": section},
        {"ops": ["slack-notifications.*"]},
    )
    async with toolbox:
        ops = toolbox.as_role("ops")
        assert_full_chain(toolbox, "slack-notifications.send_notification")
        sent = await ops.call_tool(
            "slack-notifications.send_notification",
            {
                "channel": "#deployments",
                "notification_type": "deployment_success",
                "title": "Deployed myapp v1.2.3",
                "details": {"app": "myapp", "replicas": 3},
            },
        )
        assert isinstance(sent, SendNotificationResult)
        assert (sent.channel, sent.color, sent.via) == ("C0DEPLOY", "good", "web_api")
        assert sent.ok
        assert sent.ts

        posted = await ops.call_tool(
            "slack-notifications.post_message",
            {"channel": "#deployments", "text": "rollout finished", "thread_ts": sent.ts},
        )
        assert isinstance(posted, SlackPostResult)
        assert posted.ok and posted.channel == "C0DEPLOY" and posted.ts != sent.ts
        await assert_closed_breaker(toolbox, "slack-notifications")

    first, second = stub.messages
    assert first.headers["Authorization"] == f"Bearer {SLACK_TOKEN}"
    assert "Deployed myapp v1.2.3" in first.body["text"]
    assert first.body["attachments"][0]["color"] == "good"
    assert (second.body["text"], second.body["thread_ts"]) == ("rollout finished", sent.ts)
    # Posting is not read-only: never cached.
    assert await cache_keys(redis_client, names, "slack-notifications.*") == []

    records = await assert_audited_ok(
        redis_client,
        names,
        [
            ("slack-notifications.send_notification", "ok", False),
            ("slack-notifications.post_message", "ok", False),
        ],
    )
    assert records[0]["arguments"]["title"] == "Deployed myapp v1.2.3"
    assert records[0]["result"]["channel"] == "C0DEPLOY"
    assert SLACK_TOKEN not in json.dumps(records)


# ---- azure-devops ------------------------------------------------------------------------


@pytest.fixture
async def ado() -> AsyncIterator[AdoStub]:
    """The Azure DevOps stand-in (organization ``org``)."""
    stub = AdoStub(pat=ADO_PAT)
    server = await start_ado_stub(stub)
    try:
        yield stub
    finally:
        await server.close()


async def test_azure_devops_through_call_tool(
    ado: AdoStub, redis_client: Any, names: Names, tmp_path: Path
) -> None:
    section = {
        "organization_url": f"{ado.base}/org",
        "personal_access_token": ADO_PAT,
        "timeout": 5,
    }
    toolbox = make_toolbox(
        tmp_path, redis_client, names, {"azure_devops": section}, {"ops": ["azure-devops.*"]}
    )
    async with toolbox:
        ops = toolbox.as_role("ops")
        for tool in ("list_projects", "run_pipeline", "get_build_status"):
            assert_full_chain(toolbox, f"azure-devops.{tool}")

        # A 503 on the first attempt: the retry guard calls again and succeeds.
        ado.fail_next(503, "service busy")
        projects = await ops.call_tool("azure-devops.list_projects", {"top": 2})
        assert isinstance(projects, ListProjectsResult)
        assert [p.name for p in projects.projects] == ["Operations", "Platform"]
        assert projects.continuation_token
        seen = len(ado.requests)
        assert await ops.call_tool("azure-devops.list_projects", {"top": 2}) == projects
        assert len(ado.requests) == seen  # served from the cache

        run = await ops.call_tool(
            "azure-devops.run_pipeline",
            {"project": "Platform", "pipeline_id": 7, "branch": "release/1.2"},
        )
        assert isinstance(run, PipelineRun)
        assert (run.pipeline_id, run.state) == (7, "inProgress")
        assert ado.builds[run.id]["sourceBranch"] == "refs/heads/release/1.2"

        ado.finish_build(run.id, "succeeded")
        status = await ops.call_tool(
            "azure-devops.get_build_status", {"project": "Platform", "build_id": run.id}
        )
        assert isinstance(status, BuildStatus)
        assert (status.status, status.result, status.definition) == (
            "completed",
            "succeeded",
            "deploy",
        )
        assert len(await cache_keys(redis_client, names, "azure-devops.get_build_status")) == 1
        await assert_closed_breaker(toolbox, "azure-devops")

    records = await audit_records(redis_client, names)
    assert summary(records) == [
        ("azure-devops.list_projects", "ok", False),
        ("azure-devops.list_projects", "ok", True),
        ("azure-devops.run_pipeline", "ok", False),
        ("azure-devops.get_build_status", "ok", False),
    ]
    assert records[0]["attempts"] == 2  # the 503, then the success
    assert records[2]["attempts"] == 1
    for record in records:
        assert record["role"] == "ops" and record["principal"] == PRINCIPAL
    assert records[2]["result"]["id"] == run.id
    assert ADO_PAT not in json.dumps(records)


# ---- prometheus-monitoring ---------------------------------------------------------------


@pytest.mark.prometheus
async def test_prometheus_through_call_tool(
    redis_client: Any, names: Names, tmp_path: Path
) -> None:
    binary = prometheus_binary()
    if binary is None:
        msg = "prometheus binary not found (apt-get install prometheus)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    async with running_prometheus(binary, workdir) as prom:
        section = {"base_url": prom.url, "timeout": 5}
        toolbox = make_toolbox(
            tmp_path,
            redis_client,
            names,
            {"prometheus_monitoring": section},
            {"ops": ["prometheus-monitoring.*"]},
        )
        async with toolbox:
            ops = toolbox.as_role("ops")
            assert_full_chain(toolbox, "prometheus-monitoring.prometheus_query")
            query = {"query": "codebus_test_requests_total"}
            result = await ops.call_tool("prometheus-monitoring.prometheus_query", query)
            assert isinstance(result, PrometheusQueryResult)
            assert result.result_type == "vector"
            [series] = result.series
            assert series.metric["job"] == JOB and series.metric["path"] == "/a"
            assert series.value is not None and series.value.value > 0
            assert series.value.value % 5 == 0

            # The counter grows by 5 on every scrape (each second); a cached answer cannot.
            scrapes = len(prom.scrapes)
            while len(prom.scrapes) == scrapes:
                await asyncio.sleep(0.1)
            again = await ops.call_tool("prometheus-monitoring.prometheus_query", query)
            assert again == result
            keys = await cache_keys(redis_client, names, "prometheus-monitoring.prometheus_query")
            assert len(keys) == 1

            targets = await ops.call_tool("prometheus-monitoring.prometheus_targets", {"job": JOB})
            assert isinstance(targets, PrometheusTargetsResult)
            [target] = targets.targets
            assert (target.health, target.instance, targets.up, targets.down) == (
                "up",
                prom.target,
                1,
                0,
            )
            await assert_closed_breaker(toolbox, "prometheus-monitoring")

    records = await assert_audited_ok(
        redis_client,
        names,
        [
            ("prometheus-monitoring.prometheus_query", "ok", False),
            ("prometheus-monitoring.prometheus_query", "ok", True),
            ("prometheus-monitoring.prometheus_targets", "ok", False),
        ],
    )
    assert records[0]["arguments"]["query"] == "codebus_test_requests_total"
    assert records[1]["result"] == records[0]["result"]


# ---- s3-storage --------------------------------------------------------------------------


@pytest.fixture
def moto() -> Iterator[str]:
    """moto's S3 server over real HTTP on loopback."""
    with moto_server() as url:
        yield url


async def test_s3_through_call_tool(
    moto: str, redis_client: Any, names: Names, tmp_path: Path
) -> None:
    bucket = f"codebus-{uuid.uuid4().hex[:12]}"
    raw = boto3.client(
        "s3",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
    )
    raw.create_bucket(Bucket=bucket)
    section = {
        "endpoint_url": moto,
        "access_key_id": S3_KEY_ID,
        "secret_access_key": S3_SECRET,
        "addressing_style": "path",
        "connect_timeout": 2.0,
        "read_timeout": 10.0,
    }
    toolbox = make_toolbox(
        tmp_path, redis_client, names, {"s3_storage": section}, {"ops": ["s3-storage.*"]}
    )
    source = tmp_path / "report.json"
    source.write_text('{"status": "deployed"}\n')
    target = tmp_path / "out" / "report.json"
    try:
        async with toolbox:
            ops = toolbox.as_role("ops")
            for tool in ("s3_upload_file", "s3_list_objects", "s3_download_file"):
                assert_full_chain(toolbox, f"s3-storage.{tool}")
            uploaded = await ops.call_tool(
                "s3-storage.s3_upload_file",
                {
                    "file_path": str(source),
                    "bucket": bucket,
                    "key": "reports/report.json",
                    "metadata": {"app": "myapp"},
                    "content_type": "application/json",
                },
            )
            assert isinstance(uploaded, S3UploadFileResult)
            assert (uploaded.key, uploaded.size) == ("reports/report.json", source.stat().st_size)
            head = raw.head_object(Bucket=bucket, Key="reports/report.json")
            assert head["Metadata"] == {"app": "myapp"}

            listing_args = {"bucket": bucket, "prefix": "reports/"}
            listed = await ops.call_tool("s3-storage.s3_list_objects", listing_args)
            assert isinstance(listed, S3ListObjectsResult)
            assert [(o.key, o.size) for o in listed.objects] == [
                ("reports/report.json", uploaded.size)
            ]
            # A second object written behind the toolbox's back: the cached listing is
            # what the second call returns, so S3 was not asked again.
            raw.put_object(Bucket=bucket, Key="reports/other.json", Body=b"{}")
            assert await ops.call_tool("s3-storage.s3_list_objects", listing_args) == listed
            assert len(await cache_keys(redis_client, names, "s3-storage.s3_list_objects")) == 1

            downloaded = await ops.call_tool(
                "s3-storage.s3_download_file",
                {"bucket": bucket, "key": "reports/report.json", "local_path": str(target)},
            )
            assert isinstance(downloaded, S3DownloadFileResult)
            assert target.read_text() == source.read_text()
            assert downloaded.metadata == {"app": "myapp"}
            assert downloaded.content_type == "application/json"
            await assert_closed_breaker(toolbox, "s3-storage")
    finally:
        for obj in raw.list_objects_v2(Bucket=bucket).get("Contents", []):
            raw.delete_object(Bucket=bucket, Key=obj["Key"])
        raw.delete_bucket(Bucket=bucket)
        raw.close()

    records = await assert_audited_ok(
        redis_client,
        names,
        [
            ("s3-storage.s3_upload_file", "ok", False),
            ("s3-storage.s3_list_objects", "ok", False),
            ("s3-storage.s3_list_objects", "ok", True),
            ("s3-storage.s3_download_file", "ok", False),
        ],
    )
    assert records[0]["arguments"]["key"] == "reports/report.json"
    assert S3_SECRET not in json.dumps(records)


# ---- docker ------------------------------------------------------------------------------

DOCKERFILE = """\
FROM scratch
LABEL codebus.test={label}
COPY busybox /bin/busybox
ENTRYPOINT ["/bin/busybox"]
CMD ["echo", "hello from {label}"]
"""


@pytest.fixture
async def engine(docker_host: str) -> AsyncIterator[tuple[aiodocker.Docker, str]]:
    """A raw client and a unique label; labelled containers and images are removed after."""
    if not BUSYBOX.exists():
        pytest.skip("needs /usr/bin/busybox (Debian busybox-static)")
    raw = aiodocker.Docker(url=docker_host)
    label = uuid.uuid4().hex[:12]
    try:
        yield raw, label
    finally:
        filters = {"label": [f"codebus.test={label}"]}
        for row in await raw.containers.list(all=True, filters=filters):
            with contextlib.suppress(DockerError):
                await row.delete(force=True)
        with contextlib.suppress(DockerError):
            await raw.images.delete(f"codebus-test/call-tool:{label}", force=True)
        with contextlib.suppress(DockerError):
            await raw.images.prune(filters={"label": filters["label"], "dangling": ["false"]})
        await raw.close()


@pytest.mark.docker
async def test_docker_through_call_tool(
    engine: tuple[aiodocker.Docker, str],
    docker_host: str,
    redis_client: Any,
    names: Names,
    tmp_path: Path,
) -> None:
    raw, label = engine
    context = tmp_path / "ctx"
    context.mkdir()
    shutil.copy(BUSYBOX, context / "busybox")
    (context / "Dockerfile").write_text(DOCKERFILE.format(label=label))
    tag = f"codebus-test/call-tool:{label}"
    section = {"url": docker_host, "api_timeout": 30, "run_timeout": 30}
    roles = {"ops": ["docker.*"]}
    toolbox = make_toolbox(tmp_path, redis_client, names, {"docker": section}, roles)
    async with toolbox:
        ops = toolbox.as_role("ops")
        for tool in ("docker_build", "docker_images", "docker_run"):
            assert_full_chain(toolbox, f"docker.{tool}")

        built = await ops.call_tool(
            "docker.docker_build", {"dockerfile_path": str(context), "image_tag": tag}
        )
        assert isinstance(built, DockerBuildResult)
        assert built.image_id.startswith("sha256:") and built.image_tag == tag
        inspected = await raw.images.inspect(tag)
        assert inspected["Id"] == built.image_id

        ran = await ops.call_tool(
            "docker.docker_run",
            {"image": tag, "labels": {"codebus.test": label}, "remove": True},
        )
        assert isinstance(ran, DockerRunResult)
        assert ran.exit_code == 0 and ran.logs.strip() == f"hello from {label}"

        images_args = {"labels": {"codebus.test": label}}
        images = await ops.call_tool("docker.docker_images", images_args)
        assert isinstance(images, DockerImagesResult)
        [image] = images.images
        assert image.id == built.image_id and tag in image.repo_tags

        # Remove the image behind the toolbox's back: the cached listing still shows it.
        await raw.images.delete(tag, force=True)
        assert await ops.call_tool("docker.docker_images", images_args) == images
        assert len(await cache_keys(redis_client, names, "docker.docker_images")) == 1
        # A write through the toolbox makes the server's cached reads unreachable.
        await ops.call_tool("docker.docker_system_prune", {"labels": {"codebus.test": label}})
        fresh = await ops.call_tool("docker.docker_images", images_args)
        assert fresh.images == []
        await assert_closed_breaker(toolbox, "docker")

    records = await assert_audited_ok(
        redis_client,
        names,
        [
            ("docker.docker_build", "ok", False),
            ("docker.docker_run", "ok", False),
            ("docker.docker_images", "ok", False),
            ("docker.docker_images", "ok", True),
            ("docker.docker_system_prune", "ok", False),
            ("docker.docker_images", "ok", False),
        ],
    )
    assert records[0]["result"]["image_id"] == built.image_id


# ---- desktop-commander -------------------------------------------------------------------


async def test_desktop_commander_through_call_tool(
    redis_client: Any, names: Names, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    section = {"roots": [str(root)], "allowed_executables": ["echo", "ls"]}
    toolbox = make_toolbox(
        tmp_path,
        redis_client,
        names,
        {"desktop_commander": section},
        {"ops": ["desktop-commander.*"]},
    )
    notes = root / "notes" / "deploy.txt"
    async with toolbox:
        ops = toolbox.as_role("ops")
        for tool in ("write_file", "read_file", "execute_command"):
            assert_full_chain(toolbox, f"desktop-commander.{tool}")
        # The worker's overrides: running a command twice is not harmless.
        assert not toolbox.policy("desktop-commander.execute_command").retry

        written = await ops.call_tool(
            "desktop-commander.write_file",
            {"path": str(notes), "content": "deployed v1\n", "create_dirs": True},
        )
        assert isinstance(written, WriteFileResult)
        assert written.bytes_written == len("deployed v1\n")
        assert notes.read_text() == "deployed v1\n"

        read = await ops.call_tool("desktop-commander.read_file", {"path": str(notes)})
        assert isinstance(read, ReadFileResult)
        assert (read.content, read.size, read.truncated) == ("deployed v1\n", 12, False)
        # Changed on disk behind the toolbox's back: the second read comes from the cache.
        notes.write_text("changed\n")
        assert await ops.call_tool("desktop-commander.read_file", {"path": str(notes)}) == read
        assert len(await cache_keys(redis_client, names, "desktop-commander.read_file")) == 1

        ran = await ops.call_tool(
            "desktop-commander.execute_command",
            {"command": "ls notes", "working_directory": str(root)},
        )
        assert isinstance(ran, CommandResult)
        assert (ran.argv, ran.exit_code, ran.stdout) == (["ls", "notes"], 0, "deploy.txt\n")
        await assert_closed_breaker(toolbox, "desktop-commander")

    records = await audit_records(redis_client, names)
    assert summary(records) == [
        ("desktop-commander.write_file", "ok", False),
        ("desktop-commander.read_file", "ok", False),
        ("desktop-commander.read_file", "ok", True),
        ("desktop-commander.execute_command", "ok", False),
    ]
    for record in records:
        assert record["role"] == "ops" and record["outcome"] == "ok"
    assert records[3]["arguments"]["command"] == "ls notes"
    assert records[3]["result"]["stdout"] == "deploy.txt\n"


# ---- security-scanner --------------------------------------------------------------------


async def test_security_scanner_file_scan_through_call_tool(
    redis_client: Any, names: Names, tmp_path: Path
) -> None:
    tree = tmp_path / "repo"
    (tree / "deploy").mkdir(parents=True)
    aws_key = "AKIA" + "Q2W3E4R5T6Y7U8I9"
    (tree / "deploy" / "settings.py").write_text(
        f'AWS_ACCESS_KEY_ID = "{aws_key}"\ndata = yaml.load(stream)\n'
    )
    (tree / "deploy" / "run.sh").write_text("#!/bin/sh\nchmod 777 /srv/app\n")
    section = {
        "use_trivy": "never",
        "advisories_dir": str(ADVISORIES),
        "allowed_roots": [str(tmp_path)],
    }
    toolbox = make_toolbox(
        tmp_path,
        redis_client,
        names,
        {"security_scanner": section},
        {"ops": ["security-scanner.*"]},
    )
    async with toolbox:
        ops = toolbox.as_role("ops")
        assert_full_chain(toolbox, "security-scanner.file_security_scan")
        result = await ops.call_tool("security-scanner.file_security_scan", {"path": str(tree)})
        assert isinstance(result, FileSecurityScanResult)
        assert {(i.file, i.line, i.rule) for i in result.issues} == {
            ("deploy/settings.py", 1, "aws-access-key-id"),
            ("deploy/settings.py", 2, "yaml-unsafe-load"),
            ("deploy/run.sh", 2, "chmod-777"),
        }
        assert (result.total_issues, result.files_scanned) == (3, 2)
        assert aws_key not in result.model_dump_json()

        # Fixed on disk, but the identical call is answered from the cache.
        (tree / "deploy" / "run.sh").write_text("#!/bin/sh\n")
        again = await ops.call_tool("security-scanner.file_security_scan", {"path": str(tree)})
        assert again == result
        keys = await cache_keys(redis_client, names, "security-scanner.file_security_scan")
        assert len(keys) == 1
        await assert_closed_breaker(toolbox, "security-scanner")

    records = await assert_audited_ok(
        redis_client,
        names,
        [
            ("security-scanner.file_security_scan", "ok", False),
            ("security-scanner.file_security_scan", "ok", True),
        ],
    )
    assert records[0]["result"]["total_issues"] == 3
    assert aws_key not in json.dumps(records)


@pytest.mark.docker
async def test_security_scanner_image_scan_through_call_tool(
    docker_host: str, redis_client: Any, names: Names, tmp_path: Path
) -> None:
    if not BUSYBOX.exists():
        pytest.skip("needs /usr/bin/busybox (Debian busybox-static)")
    raw = aiodocker.Docker(url=docker_host)
    label = uuid.uuid4().hex[:10]
    tag = f"codebus-test/call-tool-scan:{label}"
    section = {
        "use_trivy": "never",
        "advisories_dir": str(ADVISORIES),
        "docker_url": docker_host,
        "scan_timeout": 60,
    }
    toolbox = make_toolbox(
        tmp_path,
        redis_client,
        names,
        {"security_scanner": section},
        {"ops": ["security-scanner.*"]},
    )
    try:
        await _build(raw, tag, label, VULNERABLE_FILES)
        async with toolbox:
            ops = toolbox.as_role("ops")
            assert_full_chain(toolbox, "security-scanner.docker_security_scan")
            args = {"image": tag, "severity": "high"}
            result = await ops.call_tool("security-scanner.docker_security_scan", args)
            assert isinstance(result, DockerSecurityScanResult)
            assert result.scanner == "builtin" and result.image == tag
            assert {(v.id, v.package) for v in result.vulnerabilities} == {
                ("UBUNTU-CVE-2022-0778", "openssl"),
                ("GHSA-x84v-xcm2-53pg", "requests"),
                ("GHSA-p6mc-m468-83gw", "lodash"),
            }
            assert result.total_vulnerabilities == 3 and result.packages_scanned == 4
            # The image is gone, yet the identical call is answered: from the cache.
            await raw.images.delete(tag, force=True)
            assert await ops.call_tool("security-scanner.docker_security_scan", args) == result
            keys = await cache_keys(redis_client, names, "security-scanner.docker_security_scan")
            assert len(keys) == 1
        leftovers = await raw.containers.list(
            all=True, filters=json.dumps({"label": ["io.codebus.purpose=security-scan-export"]})
        )
        assert leftovers == [], "the scanner left export containers behind"
    finally:
        with contextlib.suppress(DockerError):
            await raw.images.delete(tag, force=True)
        await raw.close()

    records = await assert_audited_ok(
        redis_client,
        names,
        [
            ("security-scanner.docker_security_scan", "ok", False),
            ("security-scanner.docker_security_scan", "ok", True),
        ],
    )
    assert records[0]["result"]["total_vulnerabilities"] == 3


# ---- cross-cutting: permissions and argument validation ----------------------------------


@pytest.fixture
def three_sections(
    k8s: tuple[FakeApiServer, str], slack: tuple[SlackStub, str], ado: AdoStub
) -> dict[str, dict[str, Any]]:
    """Tools-file sections for the Kubernetes, Slack and Azure DevOps stand-ins."""
    api, url = k8s
    _, base = slack
    return {
        "kubernetes": {"host": url, "token": api.token},
        "slack_notifications": {"bot_token": SLACK_TOKEN, "base_url": f"{base}/api"},
        "azure_devops": {"organization_url": f"{ado.base}/org", "personal_access_token": ADO_PAT},
    }


async def test_role_not_allowed_is_denied_and_audited(
    three_sections: dict[str, dict[str, Any]],
    k8s: tuple[FakeApiServer, str],
    slack: tuple[SlackStub, str],
    ado: AdoStub,
    redis_client: Any,
    names: Names,
    tmp_path: Path,
) -> None:
    api, _ = k8s
    stub, _ = slack
    sections = three_sections
    # No extra roles: the worker's unit roles (``notify`` may only use Slack).
    toolbox = make_toolbox(tmp_path, redis_client, names, sections, {})
    async with toolbox:
        notify = toolbox.as_role("notify")
        with pytest.raises(ToolPermissionDenied, match=r"'notify' may not call kubernetes") as e:
            await notify.call_tool(
                "kubernetes.kubectl_scale", {"name": "web", "replicas": 0, "namespace": "shop"}
            )
        assert e.value.tool == "kubernetes.kubectl_scale"
        with pytest.raises(ToolPermissionDenied):
            await notify.call_tool(
                "azure-devops.run_pipeline", {"project": "Platform", "pipeline_id": 7}
            )
        # Read-only tools are denied too, and nothing is cached for them.
        with pytest.raises(ToolPermissionDenied):
            await notify.call_tool("azure-devops.list_projects", {})
        # A view cannot escalate to a role that would be allowed.
        with pytest.raises(ToolPermissionDenied):
            await notify.call_tool(
                "kubernetes.kubectl_get", {"resource_type": "pods"}, role="operator"
            )
        # What the role may do still works.
        sent = await notify.call_tool(
            "slack-notifications.post_message", {"channel": "#deployments", "text": "hi"}
        )
        assert sent.ok  # type: ignore[attr-defined]

    assert api.requests == [] and ado.requests == []
    assert len(stub.messages) == 1
    assert await cache_keys(redis_client, names, "*") == []
    records = await audit_records(redis_client, names)
    assert summary(records) == [
        ("kubernetes.kubectl_scale", "denied", False),
        ("azure-devops.run_pipeline", "denied", False),
        ("azure-devops.list_projects", "denied", False),
        ("kubernetes.kubectl_get", "denied", False),
        ("slack-notifications.post_message", "ok", False),
    ]
    for record in records[:4]:
        assert record["role"] == "notify" and record["principal"] == PRINCIPAL
        assert record["error_type"] == "ToolPermissionDenied"
        assert record["attempts"] == 0 and record["result"] is None
    assert records[0]["arguments"]["replicas"] == 0
    assert "may not call kubernetes.kubectl_scale" in records[0]["error"]
    assert "'operator'" in records[3]["error"]


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("kubernetes.kubectl_scale", {"name": "web", "replicas": -1}, "replicas"),
        ("kubernetes.kubectl_get", {"resource_type": "gizmos"}, "resource_type"),
        ("kubernetes.kubectl_apply", {"manifest_path": "k8s/", "namespace": "Bad_NS"}, "namespace"),
        ("slack-notifications.send_notification", {"title": "x", "color": "pink"}, "color"),
        ("slack-notifications.post_message", {"channel": "#deployments", "txt": "hi"}, "txt"),
        ("azure-devops.run_pipeline", {"project": "Platform", "pipeline_id": 0}, "pipeline_id"),
        ("azure-devops.get_build_status", {"project": "Platform"}, "build_id"),
    ],
)
async def test_invalid_arguments_fail_before_any_request(
    tool: str,
    args: dict[str, Any],
    field: str,
    three_sections: dict[str, dict[str, Any]],
    k8s: tuple[FakeApiServer, str],
    slack: tuple[SlackStub, str],
    ado: AdoStub,
    redis_client: Any,
    names: Names,
    tmp_path: Path,
) -> None:
    api, _ = k8s
    stub, _ = slack
    sections = three_sections
    toolbox = make_toolbox(tmp_path, redis_client, names, sections, {"ops": ["*"]})
    async with toolbox:
        with pytest.raises(ToolArgumentError) as caught:
            await toolbox.as_role("ops").call_tool(tool, args)
    assert caught.value.tool == tool
    assert field in caught.value.fields
    assert str(caught.value).startswith(f"{tool}: ") and field in str(caught.value)
    assert api.requests == [] and stub.messages == [] and ado.requests == []
    # Nothing could have run: no audit record, no cache entry, no breaker state.
    assert await redis_client.xlen(names.audit_stream) == 0
    assert [k async for k in redis_client.scan_iter(match=f"{names.prefix}:*")] == []
