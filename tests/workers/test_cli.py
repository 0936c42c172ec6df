"""The ``codebus`` CLI as a shell user runs it: settings from the environment only."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bus.rabbitmq import RabbitBroker
from schemas.envelope import Event
from workers.cli import cli
from workers.units import UNITS


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``codebus ARGS`` in a fresh interpreter, as from a shell."""
    return subprocess.run(
        [sys.executable, "-c", "from workers.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_tools_list_from_a_shell_lists_every_server():
    out = run("tools", "list", "--json", env={"CODEBUS_FAKE_TOOLS": "true"})
    assert out.returncode == 0, out.stderr
    names = {t["name"] for t in json.loads(out.stdout)}
    for expected in (
        "docker.docker_build",
        "kubernetes.kubectl_apply",
        "security-scanner.docker_security_scan",
        "s3-storage.s3_upload_file",
        "slack-notifications.send_notification",
        "prometheus-monitoring.prometheus_query",
        "azure-devops.create_work_item",
        "desktop-commander.execute_command",
    ):
        assert expected in names


def test_bad_configuration_is_one_line_naming_the_variable():
    out = run("dlq", "list", env={"CODEBUS_CONCURRENCY": "0"})
    assert out.returncode == 3
    assert out.stderr.strip().splitlines() == [
        "Error: invalid configuration: CODEBUS_CONCURRENCY: Input should be greater than or "
        "equal to 1"
    ]


def test_unreachable_broker_is_one_line_not_a_traceback():
    out = run("dlq", "list", env={"CODEBUS_AMQP_URL": "amqp://u:secret@127.0.0.1:1/"})
    assert out.returncode == 4
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("Error: cannot reach RabbitMQ at amqp://127.0.0.1:1/")
    assert "secret" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["publish", "deployment.requested", "--data", '{"app":"web"}'], "data.version"),
        (["publish", "deployment.requested", "--data", "{bad"], "--data is not valid JSON"),
        (["publish", "no.such", "--data", "{}"], "unknown event type 'no.such'"),
        (["worker", "nope"], "unknown worker unit 'nope'"),
        (["tail", "a..b"], "empty word"),
    ],
)
def test_bad_input_names_the_problem(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


async def _inspect_and_clean(amqp_url, names, event_id=None):
    """Check the published event reached the deploy unit's queue; delete the topology."""
    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    try:
        if event_id is not None:
            d = await broker.get(names.subscription_queue("deploy.requested"))
            assert d is not None, "published event not in the deploy unit's queue"
            event = Event.from_json(d.message.body)
            assert (event.id, event.subject, event.data) == (
                event_id,
                "web",
                {"app": "web", "version": "1"},
            )
            await d.ack()
        queues = [
            names.subscription_queue(s.name) for u in UNITS.values() for s in u.subscriptions()
        ]
        await broker.delete_topology(queues)
    finally:
        await broker.close()


def test_publish_topology_and_dlq_against_rabbitmq(amqp_url, names):
    env = {"CODEBUS_AMQP_URL": amqp_url, "CODEBUS_PREFIX": names.prefix}
    assert run("topology", "--declare", env=env).returncode == 0
    data = '{"app":"web","version":"1"}'
    out = run("publish", "deployment.requested", "--data", data, "--subject", "web", env=env)
    assert out.returncode == 0, out.stderr
    listed = run("dlq", "list", "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    asyncio.run(_inspect_and_clean(amqp_url, names, out.stdout.strip()))


def test_demo_runs_every_flow():
    out = run("demo")
    assert out.returncode == 0, out.stdout + out.stderr
    summary = {
        name.strip(): outcome.strip()
        for name, _, outcome in (
            line.partition("->") for line in out.stdout.split("\nsummary\n")[1].splitlines()
        )
        if outcome
    }
    assert summary["web 1.4.2"].startswith("deployment.completed")
    assert summary["shop 2.0.0"].startswith("deployment.failed")
    # the canary's rollback, in one line, with the metric, value, condition and counts
    assert summary["api 1.1 canary"].startswith("rolled_back: analysis error-rate failed:")
    assert "0.09" in summary["api 1.1 canary"] and "failure_limit 1" in summary["api 1.1 canary"]
    assert summary["portal 2.0 blue-green"].startswith("succeeded")
    assert "approved by demo-operator" in summary["portal 2.0 blue-green"]
    assert "deployment.weight_set" in out.stdout and "deployment.analysis_measured" in out.stdout
    # then the guide's pipeline stops at its scan step and its saga is undone in reverse
    workflows = out.stdout.split("codebus flows demo:")[1]
    assert "workflow.failed" in workflows
    assert "undone, in order: deploy_backend, create_database" in workflows
    assert out.stdout.count("demo OK") == 2 and "demo FAILED" not in out.stdout


def test_queue_type_mismatch_is_one_clear_line(amqp_url, names):
    env = {"CODEBUS_AMQP_URL": amqp_url, "CODEBUS_PREFIX": names.prefix}
    assert run("topology", "--declare", env=env).returncode == 0
    try:
        out = run("topology", "--declare", env={**env, "CODEBUS_QUEUE_TYPE": "classic"})
        assert out.returncode == 4
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert "exists on the broker with other arguments" in lines[0]
        assert "CODEBUS_QUEUE_TYPE" in lines[0]
    finally:
        asyncio.run(_inspect_and_clean(amqp_url, names))


async def test_breaker_commands_from_a_shell(redis_client, redis_url, names):
    from tests.tools.toolbox_helpers import HttpishServer, fast_config, make_toolbox
    from tools.errors import CircuitOpen, ToolTransientError

    server = HttpishServer()
    config = fast_config(**{"httpish.*": {"breaker_reset_timeout": 60}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    server.plan.extend([ToolTransientError("503", status=503)] * 9)
    for _ in range(3):  # three failed calls (3 attempts each) open the circuit
        with pytest.raises(ToolTransientError):
            await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    with pytest.raises(CircuitOpen):
        await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})

    env = {"CODEBUS_REDIS_URL": redis_url, "CODEBUS_PREFIX": names.prefix}
    status = await asyncio.to_thread(run, "breaker", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    [row] = [r for r in json.loads(status.stdout) if r["server"] == "httpish"]
    assert row["state"] == "open"
    reset = await asyncio.to_thread(run, "breaker", "reset", "httpish", env=env)
    assert reset.returncode == 0, reset.stderr
    server.plan.clear()
    assert (await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})).deployed


async def test_worker_process_serves_health_records_events_and_drains(
    amqp_url, redis_url, redis_client, names
):
    import signal
    import urllib.request

    from tests.helpers import free_port

    port = free_port()
    env = {
        **os.environ,
        "CODEBUS_AMQP_URL": amqp_url,
        "CODEBUS_REDIS_URL": redis_url,
        "CODEBUS_PREFIX": names.prefix,
        "CODEBUS_FAKE_TOOLS": "true",
        "CODEBUS_HTTP_HOST": "127.0.0.1",
        "CODEBUS_HTTP_PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from workers.cli import main; main()",
        "worker",
        "audit",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def ready() -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return json.loads(r.read())
        except OSError:
            return None

    try:
        for _ in range(100):
            if (status := await asyncio.to_thread(ready)) is not None:
                break
            await asyncio.sleep(0.1)
        assert status == {"status": "ok", "checks": {"broker": "ok", "redis": "ok", "worker": "ok"}}
        out = await asyncio.to_thread(
            run,
            "publish",
            "security.issue_found",
            "--data",
            '{"issue":"x"}',
            env={k: env[k] for k in ("CODEBUS_AMQP_URL", "CODEBUS_PREFIX")},
        )
        assert out.returncode == 0, out.stderr
        for _ in range(100):
            if await redis_client.xlen(names.event_log_stream) == 1:
                break
            await asyncio.sleep(0.05)
        [(_, fields)] = await redis_client.xrange(names.event_log_stream)
        assert fields[b"id"].decode() == out.stdout.strip()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await _inspect_and_clean(amqp_url, names)
    assert proc.stdout is not None
    assert b"stopped cleanly" in await proc.stdout.read()


def test_units_build_their_extra_dependencies(tmp_path, monkeypatch):
    import fakeredis.aioredis

    from workers.settings import ConfigError, Settings

    assert UNITS["audit"].extra_deps(Settings(), None) == {}
    with pytest.raises(ConfigError, match="needs CODEBUS_GATEWAY_CONFIG"):
        UNITS["webhooks"].extra_deps(Settings(gateway_config=None), None)
    bad = tmp_path / "gateway.yaml"
    bad.write_text("subscriptions: 5\n")
    with pytest.raises(ConfigError, match="subscriptions"):
        UNITS["webhooks"].extra_deps(Settings(gateway_config=bad), None)
    for var in ("ALERTMANAGER_WEBHOOK_TOKEN", "AUDIT_SINK_SECRET", "CI_WEBHOOK_SECRET"):
        monkeypatch.setenv(var, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "gh-secret")
    example = Settings(gateway_config="deploy/gateway.example.yaml")
    deps = UNITS["webhooks"].extra_deps(example, fakeredis.aioredis.FakeRedis())
    assert len(deps) == 3
    assert any(type(v).__name__ == "GatewayConfig" for v in deps.values())


async def test_a_hung_redis_is_an_error_not_a_wait(monkeypatch):
    """A server that accepts and never answers (a half-open connection) fails the
    command after the socket timeout instead of stalling the worker forever."""
    import time

    from tests.helpers import silent_server
    from workers import app

    monkeypatch.setattr(app, "REDIS_SOCKET_TIMEOUT", 0.5)
    async with silent_server() as url:
        port = url.rsplit(":", 1)[1]
        t0 = time.monotonic()
        with pytest.raises(app.RedisUnavailable, match="cannot reach Redis"):
            await asyncio.wait_for(app.connect_redis(f"redis://127.0.0.1:{port}/0"), 10)
        assert time.monotonic() - t0 < 5
