"""V5 (idle, slow and excess connections; accept errors in the log) and V10 (a malformed
``Authorization :`` header neither logged nor echoed), against the real server."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway import server as server_module
from gateway.app import create_app
from gateway.server import GatewayServer, RateLimitedLog
from gateway.state import STATE
from schemas.gateway_config import GatewayConfig, ServerLimits
from tests.gateway.conftest import OPS_KEY, config_document
from tests.reports import report


def limits(**overrides: Any) -> ServerLimits:
    values = {"max_connections": 4, "idle_timeout_seconds": 0.3, "body_timeout_seconds": 0.5}
    return ServerLimits.model_validate({**values, **overrides})


@pytest.fixture
async def serve(broker, redis_client, names, clock) -> AsyncIterator[Any]:
    servers: list[GatewayServer] = []

    async def start(server_limits: ServerLimits) -> GatewayServer:
        config = GatewayConfig.model_validate(
            {**config_document(), "server": server_limits.model_dump()}
        )
        app = create_app(config, broker, redis_client, names=names, clock=clock)
        server = GatewayServer(app, "127.0.0.1", 0, config.server, shutdown_timeout=1)
        await server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        await s.stop()


def port_of(server: GatewayServer) -> int:
    return int(server.addresses[0][1])


async def closed_by_server(reader: asyncio.StreamReader, within: float = 10.0) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``within`` s."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def test_idle_and_trickling_clients_are_disconnected(serve) -> None:
    server = await serve(limits(max_connections=16))
    port = port_of(server)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
    slow_writer.write(b"POST /events HTTP/1.1\r\nHost: gw\r\nX-Slow: ")

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                slow_writer.write(b"a")
                await slow_writer.drain()
                await asyncio.sleep(0.05)

    dripping = asyncio.create_task(trickle())
    try:
        assert await closed_by_server(idle_reader)
        assert await closed_by_server(slow_reader)
    finally:
        dripping.cancel()
        idle_writer.close()
        slow_writer.close()


async def test_a_stalled_body_gets_408_and_the_connection_closes(serve) -> None:
    server = await serve(limits(max_connections=16, idle_timeout_seconds=5))
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    writer.write(
        b"POST /events HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {OPS_KEY}\r\nContent-Length: 100\r\n\r\n".encode()
        + b'{"type": '
    )
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


async def test_connections_are_capped_and_real_clients_get_through(serve) -> None:
    server = await serve(limits(max_connections=4))
    port = port_of(server)
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
    try:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def health() -> int:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    return resp.status

            statuses = await asyncio.gather(*(health() for _ in range(5)))
    finally:
        for _, writer in idle:
            writer.close()
    report(
        "gateway_connection_cap",
        f"idle_connections=40 cap=4 peak_open={server.peak_connections} "
        f"real_requests_ok={statuses.count(200)}/5",
    )
    assert statuses == [200] * 5
    assert server.peak_connections <= 4
    registry = server.app[STATE].metrics.registry
    assert registry.get_sample_value("codebus_gateway_open_connections") <= 4


async def test_accept_errors_are_logged_rarely_and_serving_goes_on(
    serve, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(server_module, "ACCEPT_ERROR_BACKOFF", 0.001)
    loop = asyncio.get_running_loop()
    real_accept = loop.sock_accept
    failures = 0

    async def failing_accept(sock: socket.socket) -> Any:
        nonlocal failures
        if failures < 300:
            failures += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return await real_accept(sock)

    monkeypatch.setattr(loop, "sock_accept", failing_accept)
    caplog.set_level(logging.DEBUG)
    server = await serve(limits())
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.get(f"http://127.0.0.1:{port_of(server)}/healthz") as resp,
    ):
        assert resp.status == 200
    lines = [r for r in caplog.records if "accept" in r.getMessage()]
    report("gateway_accept_errors", f"accept_errors={failures} log_lines={len(lines)}")
    assert failures == 300
    assert len(lines) == 1 and lines[0].exc_info is None
    registry = server.app[STATE].metrics.registry
    assert registry.get_sample_value("codebus_gateway_accept_errors_total") == 300


def test_rate_limited_log_counts_what_it_suppressed(caplog) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t"), interval=60, clock=lambda: now[0])
    caplog.set_level(logging.WARNING)
    written = sum(limited.warning("k", "boom %s", i) for i in range(1000))
    now[0] = 61
    written += limited.warning("k", "boom %s", "again")
    assert written == 2
    assert "999 more like this suppressed" in caplog.records[-1].getMessage()


async def test_malformed_authorization_header_is_neither_logged_nor_echoed(serve, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = await serve(limits())
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    writer.write(
        b"POST /events HTTP/1.1\r\nHost: gw\r\n"
        + f"Authorization : Bearer {OPS_KEY}\r\nContent-Length: 0\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    logged = "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in caplog.records
    )
    leaked = int(OPS_KEY in answer.decode("latin-1")) + int(OPS_KEY in logged)
    report("gateway_malformed_header", f"key_leaked={leaked}")
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:200]
    assert OPS_KEY not in answer.decode("latin-1")
    assert OPS_KEY not in logged
    registry = server.app[STATE].metrics.registry
    rejected = {"reason": "bad_request"}
    assert registry.get_sample_value("codebus_gateway_rejections_total", rejected) == 1


@pytest.mark.parametrize("cap", [32, 1000], ids=["cap-below-fd-limit", "cap-above-fd-limit"])
async def test_more_idle_sockets_than_file_descriptors(cap, redis_url) -> None:
    """The attack of V5 at scale: a gateway process limited to 64 file descriptors gets
    150 idle connections, then real requests. With the cap below the limit nothing
    fails; with a cap set too high, accept() hits EMFILE: a few log lines, no
    tracebacks, and real requests are still served as idle connections time out."""
    import os
    import sys

    from tests.helpers import free_port

    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.security.gateway.fd_gateway", str(port), "64", str(cap),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.create_task(proc.stderr.read())
    try:
        async with asyncio.timeout(30):
            assert (await proc.stdout.readline()).strip() == b"READY"
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(150)]
        timeout = aiohttp.ClientTimeout(total=90)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def health() -> int:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    return resp.status

            statuses = await asyncio.gather(*(health() for _ in range(5)))
        for _, writer in idle:
            writer.close()
    finally:
        proc.terminate()
        await proc.wait()
    log = (await stderr_task).decode(errors="replace")
    accept_lines = [ln for ln in log.splitlines() if "accept() failed" in ln]
    report(
        f"gateway_fd_exhaustion_cap{cap}",
        f"fd_limit=64 idle_sockets=150 real_requests_ok={statuses.count(200)}/5 "
        f"accept_error_lines={len(accept_lines)} log_bytes={len(log)} "
        f"tracebacks={log.count('Traceback')}",
    )
    assert statuses == [200] * 5
    assert "Traceback" not in log
    assert len(accept_lines) <= 2
    if cap < 64:
        assert accept_lines == []
