"""A real Prometheus for the adapter tests: a /metrics target and a prometheus subprocess.

The target serves a gauge and a counter that grows by 5 on every scrape. Prometheus
scrapes it (and a port where nothing listens, so there is one target that is down)
every second, from a temporary directory, on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

PROMETHEUS = os.environ.get("CODEBUS_TEST_PROMETHEUS", "/usr/bin/prometheus")
JOB = "codebus-test"
DEAD_JOB = "codebus-dead"


def prometheus_binary() -> str | None:
    """The prometheus executable, if installed."""
    if os.access(PROMETHEUS, os.X_OK):
        return PROMETHEUS
    return shutil.which("prometheus")


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningPrometheus:
    """What the tests need to know about the running pair."""

    url: str
    target: str
    dead_target: str
    scrapes: list[int]


async def _serve_metrics(scrapes: list[int]) -> tuple[web.AppRunner, int]:
    async def metrics(_: web.Request) -> web.Response:
        scrapes.append(1)
        body = (
            "# HELP codebus_test_up A gauge for the adapter tests.\n"
            "# TYPE codebus_test_up gauge\n"
            'codebus_test_up{job_label="x"} 1\n'
            "# HELP codebus_test_requests_total A counter that grows by 5 per scrape.\n"
            "# TYPE codebus_test_requests_total counter\n"
            f'codebus_test_requests_total{{path="/a"}} {5 * len(scrapes)}\n'
        )
        return web.Response(text=body, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def _wait_for(check: object, deadline: float, what: str, log: Path) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                if await check(session):  # type: ignore[operator]
                    return
            except (aiohttp.ClientError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                tail = log.read_bytes()[-2000:].decode(errors="replace")  # noqa: ASYNC240
                raise RuntimeError(f"{what} timed out; prometheus log:\n{tail}")
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def prometheus_process(
    binary: str, workdir: Path, jobs: dict[str, str]
) -> AsyncIterator[tuple[str, Path]]:
    """The prometheus binary scraping each job's target (``host:port``) every second, on
    a free loopback port, from ``workdir``; yields its URL and log file; stopped at the end.
    Waiting for what a test needs (ready, first scrape, first rates) is the caller's."""
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        + "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            for job, target in jobs.items()
        )
    )
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdout=out,
            stderr=out,
        )
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def running_prometheus(binary: str, workdir: Path) -> AsyncIterator[RunningPrometheus]:
    """Start the target and prometheus; wait until the target has been scraped as up."""
    scrapes: list[int] = []
    runner, target_port = await _serve_metrics(scrapes)
    target, dead = f"127.0.0.1:{target_port}", f"127.0.0.1:{free_port()}"
    try:
        async with prometheus_process(binary, workdir, {JOB: target, DEAD_JOB: dead}) as (
            url,
            log,
        ):
            deadline = time.monotonic() + 60

            async def ready(session: aiohttp.ClientSession) -> bool:
                async with session.get(f"{url}/-/ready") as resp:
                    return resp.status == 200

            async def target_up(session: aiohttp.ClientSession) -> bool:
                params = {"query": f'up{{job="{JOB}"}} == 1'}
                async with session.get(f"{url}/api/v1/query", params=params) as resp:
                    return bool((await resp.json())["data"]["result"])

            await _wait_for(ready, deadline, "prometheus /-/ready", log)
            await _wait_for(target_up, deadline, "first scrape of the target", log)
            yield RunningPrometheus(url=url, target=target, dead_target=dead, scrapes=scrapes)
    finally:
        await runner.cleanup()
