"""First-run rough edges of the CLI (issue 11, item 7): one line instead of a traceback,
distinct exit codes, misspelled variables, stable dead-letter order, completion."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from click.testing import CliRunner

from tests.workers.test_cli import _inspect_and_clean, run
from workers.cli import cli
from workers.cli_support import EXIT_CONFIG, EXIT_SERVICE, EXIT_USAGE


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("Error:")]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("args", [("breaker", "status"), ("breaker", "reset", "docker")])
def test_breaker_with_redis_down_is_one_line(args):
    out = run(*args, env={"CODEBUS_REDIS_URL": "redis://:secret@127.0.0.1:1/0"})
    line = one_error_line(out.stderr)
    assert out.returncode == EXIT_SERVICE
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in line
    assert "secret" not in out.stderr


def test_wrong_vhost_is_one_line_naming_the_vhost(amqp_url):
    url = amqp_url.rstrip("/") + "/no-such-vhost"
    out = run("dlq", "list", env={"CODEBUS_AMQP_URL": url})
    line = one_error_line(out.stderr)
    assert out.returncode == EXIT_SERVICE
    assert "'no-such-vhost'" in line and "vhost" in line


def test_health_port_in_use_is_one_line(amqp_url, redis_url, names):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "CODEBUS_AMQP_URL": amqp_url,
            "CODEBUS_REDIS_URL": redis_url,
            "CODEBUS_PREFIX": names.prefix,
            "CODEBUS_FAKE_TOOLS": "true",
            "CODEBUS_HTTP_HOST": "127.0.0.1",
            "CODEBUS_HTTP_PORT": str(port),
        }
        try:
            out = run("worker", "audit", env=env)
        finally:
            asyncio.run(_inspect_and_clean(amqp_url, names))
    line = one_error_line(out.stderr)
    assert out.returncode == EXIT_SERVICE
    assert f"127.0.0.1:{port}" in line and "CODEBUS_HTTP_PORT" in line


def test_unit_without_tool_role_is_one_config_line(monkeypatch):
    from workers import units

    audit = units.UNITS["audit"]
    monkeypatch.setitem(
        units.UNITS, "changelog", units.Unit("changelog", "records changes", audit.routers)
    )
    # Redis is unreachable on purpose: the role is checked before anything connects.
    result = CliRunner().invoke(
        cli,
        ["worker", "changelog"],
        env={"CODEBUS_FAKE_TOOLS": "true", "CODEBUS_REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert result.exit_code == EXIT_CONFIG, result.output
    assert "Traceback" not in result.output
    assert "unit 'changelog' has no tool role" in result.output
    assert "CODEBUS_TOOLS_CONFIG" in result.output


def test_misspelled_variable_is_warned_naming_the_closest(monkeypatch):
    out = run(
        "dlq",
        "list",
        env={"CODEBUS_CONCURENCY": "4", "CODEBUS_AMQP_URL": "amqp://u:p@127.0.0.1:1/"},
    )
    assert out.returncode == EXIT_SERVICE
    assert (
        "warning: CODEBUS_CONCURENCY is not a codebus variable "
        "(did you mean CODEBUS_CONCURRENCY?)" in out.stderr
    )


def test_unknown_variables_lists_only_the_unknown():
    from workers.settings import unknown_variables

    env = {
        "CODEBUS_REDIS_URL": "redis://x",
        "CODEBUS_REDIS_ULR": "redis://x",
        "CODEBUS_TEST_AMQP_URL": "amqp://x",  # the test harness's own variables
        "CODEBUS_SERVICES_DIR": "/tmp",
        "CODEBUS_ZZZZZZ": "1",
        "OTHER": "1",
    }
    assert unknown_variables(env) == [
        "CODEBUS_REDIS_ULR is not a codebus variable (did you mean CODEBUS_REDIS_URL?)",
        "CODEBUS_ZZZZZZ is not a codebus variable",
    ]


def test_exit_codes_are_distinct_and_documented():
    assert len({EXIT_USAGE, EXIT_CONFIG, EXIT_SERVICE, 0, 1}) == 5
    usage = run("dlq", "list", "--limit", "0")
    assert usage.returncode == EXIT_USAGE
    config = run("dlq", "list", env={"CODEBUS_CONCURRENCY": "0"})
    assert config.returncode == EXIT_CONFIG
    helptext = run("--help").stdout
    for code in (EXIT_USAGE, EXIT_CONFIG, EXIT_SERVICE):
        assert f"  {code}  " in helptext
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for code in (EXIT_USAGE, EXIT_CONFIG, EXIT_SERVICE):
        assert f"| {code} |" in readme


def test_dlq_list_is_oldest_first_and_stable(amqp_url, names):
    from bus.abc import Message
    from bus.rabbitmq import RabbitBroker
    from schemas.names import HEADER_DEAD_AT, HEADER_DEAD_KIND

    times = ["2026-01-01T00:00:03+00:00", "2026-01-01T00:00:01+00:00", "2026-01-01T00:00:02+00:00"]

    async def seed() -> None:
        broker = RabbitBroker(amqp_url, names=names)
        await broker.connect()
        try:
            for i, at in enumerate(times):
                msg = Message(
                    body=b"{}",
                    routing_key="deployment.requested",
                    message_id=f"m{i}",
                    headers={HEADER_DEAD_AT: at, HEADER_DEAD_KIND: "rejected"},
                )
                await broker.dead_letter(msg)
        finally:
            await broker.close()

    asyncio.run(seed())
    env = {"CODEBUS_AMQP_URL": amqp_url, "CODEBUS_PREFIX": names.prefix}
    try:
        orders = []
        for _ in range(3):
            out = run("dlq", "list", "--json", env=env)
            assert out.returncode == 0, out.stderr
            orders.append([i["id"] for i in json.loads(out.stdout)])
        assert orders == [["m1", "m2", "m0"]] * 3
    finally:
        asyncio.run(_inspect_and_clean(amqp_url, names))


def test_tail_json_omits_attributes_absent_on_the_wire():
    from workers.cli_bus import tail_line

    body = json.dumps(
        {
            "specversion": "1.0",
            "id": "e1",
            "source": "ci",
            "type": "deployment.requested",
            "time": "2026-01-01T00:00:00Z",
            "data": {"app": "web", "version": "1"},
        }
    ).encode()
    printed = json.loads(tail_line(body, "m1", as_json=True))
    assert "null" not in tail_line(body, "m1", as_json=True)
    assert printed["id"] == "e1" and "subject" not in printed


def complete(words: str) -> list[str]:
    result = CliRunner().invoke(
        cli,
        [],
        prog_name="codebus",
        env={
            "_CODEBUS_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        },
    )
    return [line.split(",", 1)[1] for line in result.output.splitlines()]


def test_completion_of_units_and_event_types():
    assert "audit" in complete("codebus worker au")
    assert set(complete("codebus worker ")) >= {"audit", "deploy", "notify"}
    assert "deployment.requested" in complete("codebus publish deployment.r")
    assert "deployment.requested" in complete("codebus tail deploy")
    assert "deployment.*" in complete("codebus tail deploy")


def test_gateway_uses_the_same_exit_codes(tmp_path):
    bad = tmp_path / "gateway.yaml"
    bad.write_text("sources: 3\n")
    out = run("gateway", "--config", str(bad))
    assert out.returncode == EXIT_CONFIG
    assert "sources" in one_error_line(out.stderr)
    good = tmp_path / "ok.yaml"
    good.write_text("sources: []\n")
    args = ("--amqp-url", "amqp://127.0.0.1:1/", "--redis-url", "redis://127.0.0.1:1/0")
    down = run("gateway", "--config", str(good), "--port", "0", *args)
    assert down.returncode == EXIT_SERVICE
    assert "cannot reach" in one_error_line(down.stderr)


def test_a_declared_empty_role_passes_the_role_check(tmp_path, monkeypatch):
    from workers import units

    audit = units.UNITS["audit"]
    monkeypatch.setitem(
        units.UNITS, "changelog", units.Unit("changelog", "records changes", audit.routers)
    )
    # In-process run: keep the worker from reconfiguring this process's logging.
    monkeypatch.setattr("workers.logs.configure", lambda *a, **k: None)
    tools = tmp_path / "tools.yaml"
    tools.write_text("guards:\n  roles:\n    changelog: []\n")
    result = CliRunner().invoke(
        cli,
        ["worker", "changelog"],
        env={"CODEBUS_TOOLS_CONFIG": str(tools), "CODEBUS_REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    # Past the role check, the worker goes on to connect: Redis is down on purpose.
    assert result.exit_code == EXIT_SERVICE, result.output
    assert "cannot reach Redis" in result.output
