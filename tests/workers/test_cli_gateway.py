"""``codebus gateway`` and ``codebus webhooks deliveries``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from bus.memory import MemoryBroker
from schemas.gateway_config import GatewayConfig
from tests.gateway.conftest import config_document
from tools.webhooks.log import DeliveryLog
from workers.cli_gateway import deliveries, gateway_command, serve_gateway


async def test_served_gateway_is_reachable_and_stops(redis_client, names, unused_tcp_port) -> None:
    broker = MemoryBroker(names)
    await broker.connect()
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve_gateway(
            GatewayConfig.model_validate(config_document()),
            broker,
            redis_client,
            names,
            host="127.0.0.1",
            port=unused_tcp_port,
            stop=stop,
            started=started,
        )
    )
    try:
        await asyncio.wait_for(started.wait(), 10)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{unused_tcp_port}/readyz") as resp,
        ):
            assert resp.status == 200
    finally:
        stop.set()
        addresses = await asyncio.wait_for(task, 15)
        await broker.close()
    assert addresses[0][:2] == ("127.0.0.1", unused_tcp_port)


def test_gateway_needs_a_config() -> None:
    result = CliRunner().invoke(gateway_command, [], obj={}, env={"CODEBUS_GATEWAY_CONFIG": ""})
    assert result.exit_code != 0
    assert "--config" in result.output


def test_gateway_reports_the_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "gw.json"
    doc = config_document()
    doc["api_keys"][0]["sha256"] = "short"
    path.write_text(json.dumps(doc))
    result = CliRunner().invoke(
        gateway_command,
        ["--config", str(path)],
        obj={"amqp_url": "amqp://127.0.0.1:1/", "redis_url": "redis://127.0.0.1:1/0"},
    )
    assert result.exit_code == 3  # configuration error (README: exit status)
    assert "api_keys.0.sha256" in result.output


async def test_deliveries_lists_the_log(redis_client, redis_url, names) -> None:
    log = DeliveryLog(redis_client, names)
    for event_id, state, code in (("e1", "succeeded", 200), ("e2", "failed", 404)):
        await log.record(
            subscription="rx",
            url="https://rx.example/",
            event_id=event_id,
            event_type="deployment.completed",
            state=state,
            status_code=code,
            error=None if code == 200 else "gone for good",
        )

    def run(*args: str):
        # The command runs its own event loop: call it from a worker thread.
        return CliRunner().invoke(
            deliveries, list(args), obj={"redis_url": redis_url, "names": names}
        )

    table = await asyncio.to_thread(run)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert "STATE" in lines[0]
    assert "e2" in lines[1] and "failed" in lines[1] and "gone for good" in lines[2]
    as_json = await asyncio.to_thread(run, "--json", "--state", "succeeded")
    [record] = [json.loads(line) for line in as_json.output.splitlines()]
    assert (record["event_id"], record["status_code"], record["attempts"]) == ("e1", 200, 1)
