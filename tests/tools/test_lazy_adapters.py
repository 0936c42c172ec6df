"""A worker imports only the tool adapters its tools file configures (issue 11 item 6):
the adapter of each configured section and its library, nothing of the others. Checked
in the worker process itself (``codebus worker audit`` against the live RabbitMQ and
Redis), by the modules it had loaded when SIGTERM stopped it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bus.rabbitmq import RabbitBroker
from tests.helpers import free_port
from tools.servers import SERVER_KINDS
from workers.units import UNITS

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).parents[2]
LIBRARIES = ("aiodocker", "docker", "kubernetes_asyncio", "aiobotocore", "botocore", "fakeredis")

#: Runs the CLI; at exit, writes the loaded tool modules and libraries to argv[1].
WORKER = """
import atexit, json, sys
out = sys.argv.pop(1)
libs = {libs!r}
ours = ("tools.adapters.", "tools.fakes")
def dump():
    with open(out, "w") as f:
        json.dump({{
            "libs": sorted(m for m in libs if m in sys.modules),
            "modules": sorted(m for m in sys.modules if m.startswith(ours)),
        }}, f)
atexit.register(dump)
from workers.cli import main
main()
"""


def adapter_modules(section: str) -> set[str]:
    kind = SERVER_KINDS[section]
    return {kind.adapter.split(":")[0], kind.config.split(":")[0]}


async def run_worker(tmp_path: Path, tools_yaml: str | None, amqp_url, redis_url, names):
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CODEBUS_AMQP_URL": amqp_url,
        "CODEBUS_REDIS_URL": redis_url,
        "CODEBUS_PREFIX": names.prefix,
        "CODEBUS_HTTP_HOST": "127.0.0.1",
        "CODEBUS_HTTP_PORT": str(port),
    }
    env.pop("CODEBUS_TOOLS_CONFIG", None)
    env.pop("CODEBUS_FAKE_TOOLS", None)
    if tools_yaml is not None:
        (tmp_path / "tools.yaml").write_text(tools_yaml)
        env["CODEBUS_TOOLS_CONFIG"] = str(tmp_path / "tools.yaml")
    dump = tmp_path / "modules.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER.format(libs=LIBRARIES),
        str(dump),
        "worker",
        "audit",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    try:
        for _ in range(300):
            if proc.returncode is not None or await asyncio.to_thread(ready):
                break
            await asyncio.sleep(0.1)
        assert proc.returncode is None, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
        assert await asyncio.to_thread(ready), "the worker never became ready"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        broker = RabbitBroker(amqp_url, names=names)
        await broker.connect()
        try:
            await broker.delete_topology(
                [
                    names.subscription_queue(s.name)
                    for u in UNITS.values()
                    for s in u.subscriptions()
                ]
            )
        finally:
            await broker.close()
    loaded: dict[str, list[str]] = json.loads(dump.read_text())
    return loaded


async def test_worker_without_tools_file_imports_no_adapter(tmp_path, amqp_url, redis_url, names):
    loaded = await run_worker(tmp_path, None, amqp_url, redis_url, names)
    every = set().union(*(adapter_modules(s) for s in SERVER_KINDS))
    assert loaded["libs"] == []
    assert every.isdisjoint(loaded["modules"])
    assert not [m for m in loaded["modules"] if m.startswith("tools.fakes")]


async def test_worker_imports_only_its_configured_adapter(tmp_path, amqp_url, redis_url, names):
    tools = "slack_notifications:\n  incoming_webhook_url: https://hooks.slack.invalid/x\n"
    loaded = await run_worker(tmp_path, tools, amqp_url, redis_url, names)
    assert adapter_modules("slack_notifications") <= set(loaded["modules"])
    others = set().union(*(adapter_modules(s) for s in SERVER_KINDS if s != "slack_notifications"))
    assert others.isdisjoint(loaded["modules"]), others & set(loaded["modules"])
    assert loaded["libs"] == []


def test_import_tools_fakes_is_light_and_every_fake_resolves():
    code = (
        "import sys, tools.fakes as f\n"
        "before = sorted(m for m in ('aiohttp', 'tools.fakes.slack') if m in sys.modules)\n"
        "names = [getattr(f, n).__name__ for n in f.SERVER_FAKES]\n"
        "print(before, names)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    before, _, names = out.stdout.strip().partition("] ")
    assert before == "["
    import tools.fakes

    assert names == repr(list(tools.fakes.SERVER_FAKES))
    with pytest.raises(AttributeError, match="FakeNothing"):
        _ = tools.fakes.FakeNothing


def test_a_bad_section_names_section_and_field(tmp_path):
    from workers.settings import ConfigError
    from workers.toolbox import load_tools_file

    path = tmp_path / "tools.yaml"
    path.write_text("docker:\n  api_timeout: soon\n")
    with pytest.raises(ConfigError, match=r"invalid tools config .*: docker\.api_timeout: "):
        load_tools_file(path)
    path.write_text("dokcer: {}\n")
    with pytest.raises(ConfigError, match=r"dokcer: Extra inputs are not permitted"):
        load_tools_file(path)
