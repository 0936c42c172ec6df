"""``codebus deployments`` from a shell, against the live Redis and RabbitMQ: reads come
from the flow documents, commands are events on the bus."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bus.rabbitmq import RabbitBroker
from flows.machine import Command, ScanDone, StepResult, decide
from flows.store import FlowStore
from schemas.envelope import Event
from schemas.names import Names
from tests.flows.helpers import new_state
from tests.workers.test_cli import run as run_in_shell
from workers.cli import cli

pytestmark = pytest.mark.timeout(120)


def rolled_back_flow() -> Any:
    """A canary flow rolled back by a failed step, built by the decision function."""
    s = new_state("canary", id="d-cli-1")
    s, _ = decide(s, ScanDone(image="web:2.0", passed=True), 10.0)
    s, _ = decide(s, StepResult(seq=s.outbox[-1]["seq"], ok=True), 11.0)
    run = next(a for a in s.outbox if a["kind"] == "run")
    s, _ = decide(
        s, StepResult(seq=run["seq"], ok=False, error='deployments "web" is forbidden'), 12.0
    )
    run = next(a for a in s.outbox if a["kind"] == "run")
    s, _ = decide(s, StepResult(seq=run["seq"], ok=True), 13.0)
    return s.model_copy(update={"outbox": []})


def waiting_flow() -> Any:
    s = new_state("canary", id="d-cli-2", app="shop")
    s, _ = decide(s, Command("abort", by="x"), 10.0)  # pending -> aborted at once
    return s.model_copy(update={"outbox": []})


class _Out:
    def __init__(self, result: Any) -> None:
        self.returncode = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr if result.exit_code else ""


def run(*args: str, env: dict[str, str]) -> Any:
    """In-process (fast); one command per test also runs from a real shell."""
    from click.testing import CliRunner

    return _Out(CliRunner().invoke(cli, list(args), env=env))


async def _store_flows(redis_url: str, names: Names, *flows: Any) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        for flow in flows:
            assert await FlowStore(client, names).create(flow)
    finally:
        await client.aclose()


async def _forget(redis_url: str, names: Names) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{names.prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def test_list_show_why_and_commands(amqp_url: str, redis_url: str, names: Names) -> None:
    env = {"CODEBUS_AMQP_URL": amqp_url, "CODEBUS_PREFIX": names.prefix}
    env["CODEBUS_REDIS_URL"] = redis_url
    asyncio.run(_store_flows(redis_url, names, rolled_back_flow(), waiting_flow()))
    try:
        _exercise(env, amqp_url, names)
    finally:
        asyncio.run(_forget(redis_url, names))


def _exercise(env: dict[str, str], amqp_url: str, names: Names) -> None:
    listed = run("deployments", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {r["id"]: r["phase"] for r in rows} == {"d-cli-1": "rolled_back", "d-cli-2": "aborted"}
    only = run("deployments", "list", "--app", "shop", env=env)
    assert "d-cli-2" in only.stdout and "d-cli-1" not in only.stdout
    by_phase = json.loads(
        run("deployments", "list", "--phase", "rolled_back", "--json", env=env).stdout
    )
    assert [r["id"] for r in by_phase] == ["d-cli-1"]

    why = run_in_shell("deployments", "why", "d-cli-1", env=env)
    assert why.returncode == 0
    assert why.stdout.splitlines() == [
        'rolled_back: step 1 (set weight 10 %) failed: deployments "web" is forbidden'
    ]
    shown = json.loads(run("deployments", "show", "d-cli-1", "--json", env=env).stdout)
    assert shown["phase"] == "rolled_back" and shown["journal"]
    text = run("deployments", "show", "d-cli-1", env=env).stdout
    assert "journal:" in text and "kubectl" not in text.split("journal:")[0]

    queue = names.subscription_queue("deploy.flow-commands")
    asyncio.run(_declare(amqp_url, names, queue))
    try:
        retried = run("deployments", "retry", "d-cli-1", "--by", "ann", "--json", env=env)
        assert retried.returncode == 0, retried.stderr
        promoted = run("deployments", "promote", "d-cli-1", "--full", "--by", "ann", env=env)
        assert promoted.returncode == 0, promoted.stderr
        missing = run("deployments", "abort", "d-nope", "--reason", "x", env=env)
        assert missing.returncode == 2 and "no deployment flow 'd-nope'" in missing.stderr
        no_reason = run("deployments", "deny", "d-cli-1", env=env)
        assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
        got = asyncio.run(_take(amqp_url, names, queue, 2))
        assert [(e.type, e.data["flow_id"], e.data["by"]) for e in got] == [
            ("deployment.retry_requested", "d-cli-1", "ann"),
            ("deployment.promote_requested", "d-cli-1", "ann"),
        ]
        assert got[1].data["full"] is True
        assert json.loads(retried.stdout)["event_id"] == got[0].id
    finally:
        asyncio.run(_take(amqp_url, names, queue, 0, delete=True))


async def _declare(amqp_url: str, names: Names, queue: str) -> None:
    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    try:
        await broker.declare_queue(
            queue, ["deployment.retry_requested", "deployment.promote_requested"]
        )
    finally:
        await broker.close()


async def _take(
    amqp_url: str, names: Names, queue: str, n: int, *, delete: bool = False
) -> list[Event]:
    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    got = []
    try:
        for _ in range(n):
            d = await broker.get(queue)
            assert d is not None
            got.append(Event.from_json(d.message.body))
            await d.ack()
        if delete:
            await broker.delete_topology([queue])
    finally:
        await broker.close()
    return got
