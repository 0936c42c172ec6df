"""``codebus console`` as an operator starts it: configuration errors are one line with
exit status 3; a started console serves, signs in and stops on SIGTERM even with an
event stream open."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bus.rabbitmq import RabbitBroker
from schemas.names import Names
from tests.console.conftest import OPERATOR_TOKEN
from tests.workers.test_cli import run

pytestmark = pytest.mark.timeout(60)


def test_a_console_nobody_can_sign_in_to_does_not_start(tmp_path: Path) -> None:
    gateway = tmp_path / "gateway.yaml"
    gateway.write_text("api_keys: []\n")
    out = run("console", "--gateway-config", str(gateway))
    assert out.returncode == 3
    assert out.stderr.strip().startswith("Error: console: nobody can sign in")


def test_a_bad_console_config_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "console.yaml"
    path.write_text("tokens:\n  - {name: ops, token: short, scope: operator}\n")
    out = run("console", "--config", str(path))
    assert out.returncode == 3
    assert "tokens.0.token" in out.stderr and "Traceback" not in out.stderr
    path.write_text("tokens: []\nkey_scope: {}\n")
    out = run("console", "--config", str(path))
    assert out.returncode == 3 and "key_scope" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serves_signs_in_and_stops_on_sigterm(
    amqp_url: str, redis_url: str, names: Names, tmp_path: Path
) -> None:
    config = tmp_path / "console.yaml"
    config.write_text("tokens:\n  - {name: oncall, token: '${CONSOLE_TOKEN}', scope: operator}\n")
    port = _free_port()
    env = {
        **os.environ,
        "CODEBUS_AMQP_URL": amqp_url,
        "CODEBUS_REDIS_URL": redis_url,
        "CODEBUS_PREFIX": names.prefix,
        "CONSOLE_TOKEN": OPERATOR_TOKEN,
    }
    env.pop("CODEBUS_GATEWAY_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from workers.cli import main; main()",
        "console",
        "--config",
        str(config),
        "--port",
        str(port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            for _ in range(100):
                try:
                    async with http.get(f"{base}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("console did not start")
            async with http.post(
                f"{base}/api/login", json={"key": OPERATOR_TOKEN}, headers={"Origin": base}
            ) as r:
                assert r.status == 200
            async with http.get(f"{base}/api/breakers") as r:
                assert r.status == 200
            stream = await http.get(f"{base}/api/events/stream")
            assert (await stream.content.readuntil(b"\n\n")).startswith(b"event: ready")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 20)
            stopped_in = time.monotonic() - started
            stream.close()
        assert code == 0
        assert stopped_in < 10
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        broker = RabbitBroker(amqp_url, names=names)
        await broker.connect()
        await broker.delete_topology()
        await broker.close()
