"""Least-privilege roles and the audit trail (JSON-lines file and Redis stream)."""

from __future__ import annotations

import json

import pytest

from tests.tools.toolbox_helpers import HttpishServer, OtherServer, fast_config, make_toolbox
from tools.errors import ToolPermissionDenied, ToolTransientError
from tools.guards.audit_sinks import JsonlFileSink, RedisStreamSink
from tools.guards.permission import Permissions, allowed


def test_wildcard_patterns() -> None:
    assert allowed(["docker.*"], "docker.docker_build")
    assert not allowed(["docker.*"], "dockerx.docker_build")
    assert allowed(["*.kubectl_get"], "kubernetes.kubectl_get")
    assert not allowed(["kubernetes.kubectl_get"], "kubernetes.kubectl_apply")
    assert allowed(["*"], "anything.at_all")
    perms = Permissions({"dev": ["docker.docker_ps"]})
    assert perms.permits("dev", "docker.docker_ps")
    assert not perms.permits("dev", "docker.docker_build")
    assert not perms.permits("nobody", "docker.docker_ps")
    assert perms.permits(None, "docker.docker_build")  # no role, no default: trusted


async def test_role_view_allows_only_its_tools_and_audits_denials(
    redis_client, names, tmp_path
) -> None:
    server = HttpishServer()
    path = tmp_path / "audit.jsonl"
    toolbox = make_toolbox(
        redis_client, names, server, OtherServer(), audit_sinks=[JsonlFileSink(path)]
    )
    developer = toolbox.as_role("developer")
    assert (await developer.call_tool("httpish.get_status", {"service": "a"})).n == 1
    message = r"role 'developer' may not call httpish\.deploy"
    with pytest.raises(ToolPermissionDenied, match=message):
        await developer.call_tool("httpish.deploy", {"image_tag": "x", "registry_password": "pw1"})
    assert server.calls["deploy"] == 0
    # A view cannot escalate.
    with pytest.raises(ToolPermissionDenied):
        await developer.call_tool("httpish.deploy", {"image_tag": "x"}, role="deployer")
    with pytest.raises(ToolPermissionDenied):
        developer.as_role("deployer")
    with pytest.raises(ToolPermissionDenied, match="unknown role"):
        toolbox.as_role("root")
    assert {i.name for i in developer.list_tools()} == {
        "httpish.get_status",
        "httpish.get_version",
        "other.deploy",
        "other.get_status",
        "other.get_version",
    }

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["tool"], r["outcome"]) for r in records] == [
        ("httpish.get_status", "ok"),
        ("httpish.deploy", "denied"),
        ("httpish.deploy", "denied"),
    ]
    denied = records[1]
    assert denied["role"] == "developer"
    assert denied["error_type"] == "ToolPermissionDenied"
    assert denied["arguments"]["registry_password"] == "***REDACTED***"
    assert "pw1" not in path.read_text()


async def test_default_role_applies_to_calls_without_role(redis_client, names) -> None:
    config = fast_config().model_copy(update={"default_role": "developer"})
    toolbox = make_toolbox(redis_client, names, config=config)
    with pytest.raises(ToolPermissionDenied):
        await toolbox.call_tool("httpish.deploy", {"image_tag": "x"})
    assert (await toolbox.call_tool("httpish.deploy", {"image_tag": "x"}, role="deployer")).deployed


async def test_permission_check_can_be_switched_off_per_tool(redis_client, names) -> None:
    config = fast_config(**{"httpish.deploy": {"permission": False}})
    toolbox = make_toolbox(redis_client, names, config=config)
    result = await toolbox.as_role("developer").call_tool("httpish.deploy", {"image_tag": "x"})
    assert result.deployed == "x"


async def test_audit_records_every_outcome_redacted_in_file_and_stream(
    redis_client, names, tmp_path
) -> None:
    server = HttpishServer()
    path = tmp_path / "nested" / "audit.jsonl"
    sinks = [JsonlFileSink(path), RedisStreamSink(redis_client, names, maxlen=1000)]
    config = fast_config(**{"httpish.*": {"breaker": False, "retry_attempts": 2}})
    toolbox = make_toolbox(
        redis_client, names, server, config=config, audit_sinks=sinks, principal="deploy-worker"
    )
    secret = "hunter2-Secret"
    args = {"image_tag": "app:1", "registry_password": secret}
    await toolbox.call_tool("httpish.deploy", args, role="deployer")
    server.plan.extend([ToolTransientError("503 for https://bot:tok3n@reg/x")] * 2)
    with pytest.raises(ToolTransientError):
        await toolbox.call_tool("httpish.deploy", args, role="deployer")
    await toolbox.call_tool("httpish.get_status", {"service": "a"})
    await toolbox.call_tool("httpish.get_status", {"service": "a"})

    file_records = [json.loads(line) for line in path.read_text().splitlines()]
    entries = await redis_client.xrange(names.audit_stream)
    stream_records = [json.loads(fields[b"record"]) for _, fields in entries]
    assert file_records == stream_records
    assert entries[0][1][b"tool"] == b"httpish.deploy"

    ok, failed, miss, hit = file_records
    assert ok["outcome"] == "ok" and ok["principal"] == "deploy-worker"
    assert ok["role"] == "deployer" and ok["attempts"] == 1
    assert ok["arguments"] == {
        "image_tag": "app:1",
        "replicas": 1,
        "registry_password": "***REDACTED***",
    }
    assert ok["result"] == {"deployed": "app:1", "note": "***"}
    assert ok["duration_ms"] >= 0
    assert failed["outcome"] == "error" and failed["error_type"] == "ToolTransientError"
    assert failed["attempts"] == 2
    assert failed["error"] == "503 for https://bot:***@reg/x"
    assert (miss["cache_hit"], hit["cache_hit"]) == (False, True)
    raw = path.read_text() + json.dumps(stream_records)
    for leaked in (secret, "tok3n", "xoxb-123456"):
        assert leaked not in raw


async def test_stream_is_trimmed_approximately(redis_client, names) -> None:
    sink = RedisStreamSink(redis_client, names, maxlen=10)
    config = fast_config(**{"httpish.*": {"cache": False}})
    toolbox = make_toolbox(redis_client, names, config=config, audit_sinks=[sink])
    for _ in range(300):
        await toolbox.call_tool("httpish.get_status", {"service": "a"})
    # "~" trims whole macro nodes (100 entries by default), never below maxlen.
    assert 10 <= await redis_client.xlen(names.audit_stream) < 300


async def test_audit_can_be_switched_off_and_a_broken_sink_does_not_fail_calls(
    redis_client, names, tmp_path
) -> None:
    class Broken:
        async def write(self, record):
            raise OSError("disk full")

        async def close(self):
            raise OSError("still full")

    path = tmp_path / "a.jsonl"
    config = fast_config(**{"httpish.get_version": {"audit": False}})
    toolbox = make_toolbox(
        redis_client, names, config=config, audit_sinks=[Broken(), JsonlFileSink(path)]
    )
    await toolbox.call_tool("httpish.get_version", {"service": "a"})
    await toolbox.call_tool("httpish.get_status", {"service": "a"})
    await toolbox.close()
    tools = [json.loads(line)["tool"] for line in path.read_text().splitlines()]
    assert tools == ["httpish.get_status"]


async def test_a_view_can_name_the_principal_behind_it(redis_client, names, tmp_path) -> None:
    path = tmp_path / "audit.jsonl"
    toolbox = make_toolbox(redis_client, names, audit_sinks=[JsonlFileSink(path)])
    alice = toolbox.as_role("deployer", principal="alice@example.com")
    await alice.call_tool("httpish.deploy", {"image_tag": "x"})
    with pytest.raises(ToolPermissionDenied):
        await alice.call_tool("httpish.deploy", {"image_tag": "x"}, role="developer")
    await toolbox.call_tool("httpish.deploy", {"image_tag": "y"})
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["principal"], r["role"], r["outcome"]) for r in records] == [
        ("alice@example.com", "deployer", "ok"),
        ("alice@example.com", "deployer", "denied"),
        ("codebus", None, "ok"),
    ]


async def test_long_string_arguments_are_recorded_by_size(redis_client, names, tmp_path) -> None:
    path = tmp_path / "audit.jsonl"
    toolbox = make_toolbox(redis_client, names, audit_sinks=[JsonlFileSink(path)])
    await toolbox.call_tool("httpish.deploy", {"image_tag": "x" * 5000})
    record = json.loads(path.read_text().splitlines()[0])
    assert record["arguments"]["image_tag"] == "<5000 characters, not recorded>"
