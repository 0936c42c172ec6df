"""Issue 11's "done when": a separate package (examples/changelog, its own name) is
built and installed next to codebus, and its event types and unit run three ways:
``codebus worker changelog`` against the live RabbitMQ and Redis, the embedded system,
and its own pytest suite with codebus's plugin. No codebus file is edited for it."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from schemas.envelope import Event
from schemas.names import Names
from tests.extension.conftest import CLI, EXAMPLE, env_with


def codebus(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        env=env_with(site, **env),
        timeout=60,
    )


def test_the_catalogue_and_units_list_the_package(installed: Path) -> None:
    events = codebus(installed, "events", "list", "--json")
    assert events.returncode == 0, events.stderr
    types = {r["type"]: r["source"] for r in json.loads(events.stdout)["types"]}
    assert types["change.recorded"].startswith("codebus-changelog-example: changelog = ")
    assert types["deployment.requested"].startswith("codebus: core = ")
    units = codebus(installed, "units", "--json")
    assert units.returncode == 0, units.stderr
    listed = json.loads(units.stdout)
    assert listed["changelog"]["source"].startswith("codebus-changelog-example:")
    assert listed["changelog"]["tools"] == []
    assert listed["audit"]["source"] == "codebus: audit = workers.units:AUDIT"


@pytest.mark.rabbitmq
@pytest.mark.redis
def test_codebus_worker_changelog_against_rabbitmq_and_redis(
    installed: Path, amqp_url: str, redis_url: str, names: Names
) -> None:
    env = {
        "CODEBUS_AMQP_URL": amqp_url,
        "CODEBUS_REDIS_URL": redis_url,
        "CODEBUS_PREFIX": names.prefix,
        "CODEBUS_HTTP_PORT": "0",
        "CODEBUS_FAKE_TOOLS": "true",
    }
    # A downstream subscriber of what the unit announces (publishes are mandatory).
    asyncio.run(_declare_downstream(amqp_url, names))
    worker = subprocess.Popen(
        [sys.executable, "-c", CLI, "worker", "changelog"],
        env=env_with(installed, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        data = {"service": "web", "version": "1.2.0", "summary": "faster start"}
        # The worker declares its queue once connected; until then the event is unroutable.
        deadline = time.monotonic() + 30
        while True:
            out = codebus(
                installed, "publish", "change.recorded", "--data", json.dumps(data), **env
            )
            if out.returncode == 0 or time.monotonic() > deadline or worker.poll() is not None:
                break
            time.sleep(0.3)
        assert out.returncode == 0, out.stderr
        event_id = out.stdout.strip()
        entries = asyncio.run(_wait_for_entries(redis_url, f"{names.prefix}:changelog:web"))
        assert [(e["event"], e["summary"]) for e in entries] == [(event_id, "faster start")]
        announced = asyncio.run(_downstream_event(amqp_url, names))
        assert (announced.type, announced.causationid) == ("changelog.entry_added", event_id)
        assert announced.data == {"service": "web", "version": "1.2.0", "position": 1}
        # A type nobody declared is refused at publish, naming it (reject is the default).
        unknown = codebus(installed, "publish", "change.recordd", "--data", "{}", **env)
        assert unknown.returncode != 0
        assert "'change.recordd'" in unknown.stderr and "Traceback" not in unknown.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
        asyncio.run(_clean(amqp_url, redis_url, names))
    assert worker.returncode == 0, output
    assert "unit changelog stopped cleanly" in output


DOWNSTREAM = "downstream.changelog"


async def _declare_downstream(amqp_url: str, names: Names) -> None:
    from bus.rabbitmq import RabbitBroker

    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    try:
        await broker.declare_queue(names.subscription_queue(DOWNSTREAM), ["changelog.*"])
    finally:
        await broker.close()


async def _downstream_event(amqp_url: str, names: Names) -> Event:
    from bus.rabbitmq import RabbitBroker

    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    try:
        async with asyncio.timeout(30):
            while (d := await broker.get(names.subscription_queue(DOWNSTREAM))) is None:
                await asyncio.sleep(0.1)
        await d.ack()
        return Event.from_json(d.message.body)
    finally:
        await broker.close()


async def _wait_for_entries(redis_url: str, key: str) -> list[dict[str, str]]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(30):
            while not await client.llen(key):
                await asyncio.sleep(0.1)
        return [json.loads(e) for e in await client.lrange(key, 0, -1)]
    finally:
        await client.aclose()


async def _clean(amqp_url: str, redis_url: str, names: Names) -> None:
    import redis.asyncio as aioredis

    from bus.rabbitmq import RabbitBroker

    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    try:
        queues = [names.subscription_queue(q) for q in ("changelog.record", DOWNSTREAM)]
        await broker.delete_topology(queues)
    finally:
        await broker.close()
    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(match=f"{names.prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


EMBEDDED = """
import asyncio, json
from codebus.testing import run_units

async def main():
    change = {"service": "api", "version": "2.0.0", "summary": "new endpoint"}
    run = await run_units(["changelog"], [("change.recorded", change)])
    print(json.dumps([e.data for e in run.published]))

asyncio.run(main())
"""


def test_the_changelog_unit_in_the_embedded_system(installed: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", EMBEDDED],
        capture_output=True,
        text=True,
        env=env_with(installed),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"service": "api", "version": "2.0.0", "position": 1}]


def test_the_package_s_own_suite_with_the_plugin(installed: Path, tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    shutil.copytree(EXAMPLE / "tests", tests)
    shutil.copy(EXAMPLE / "pyproject.toml", tmp_path / "pyproject.toml")
    # Installed, codebus's pytest11 entry point loads the plugin; from this source tree
    # (its metadata possibly older), name it explicitly: the same plugin either way.
    declared = {ep.name for ep in metadata.entry_points(group="pytest11")}
    plugin = [] if "codebus.testing" in declared else ["-p", "codebus.testing"]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, str(tests)],
        capture_output=True,
        text=True,
        env=env_with(installed),
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def test_the_demo_runs_the_unit_beside_codebus_s(installed: Path) -> None:
    out = codebus(installed, "demo", "--units", "changelog")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert "units: deploy, security, notify, audit, changelog" in out.stdout
    assert out.stdout.count("demo OK") == 2
    wrong = codebus(installed, "demo", "--units", "changelg")
    assert wrong.returncode == 2
    assert "--units: unknown worker unit 'changelg'" in wrong.stderr
