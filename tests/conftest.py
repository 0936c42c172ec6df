"""Shared fixtures: live services (RabbitMQ, Redis, Docker) and per-test names.

Live-service tests skip on a laptop where the service is absent, and fail in CI
(``CI=true``), where ``scripts/services.sh`` must have started them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import pytest

from schemas.names import Names
from tests import reports

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

AMQP_URL = os.environ.get("CODEBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5682/")
REDIS_URL = os.environ.get("CODEBUS_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")
DOCKER_HOST = os.environ.get("CODEBUS_TEST_DOCKER_HOST", "unix:///var/run/docker.sock")


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        path = parsed.path
        if not os.path.exists(path):
            return False
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            try:
                sock.connect(path)
            except OSError:
                return False
            return True
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, url: str) -> str:
    """Return ``url`` if the service answers; skip locally, fail in CI."""
    if _reachable(url):
        return url
    msg = f"{name} is not reachable at {url}; run scripts/services.sh start"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def amqp_url() -> str:
    """URL of the live RabbitMQ node."""
    return require_service("RabbitMQ", AMQP_URL)


@pytest.fixture
def redis_url() -> str:
    """URL of the live Redis server."""
    return require_service("Redis", REDIS_URL)


@pytest.fixture
def docker_host() -> str:
    """Socket URL of the live Docker Engine."""
    return require_service("Docker Engine", DOCKER_HOST)


@pytest.fixture
def names() -> Names:
    """Topology and Redis key names unique to this test."""
    return Names(prefix=f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def redis_client(redis_url: str, names: Names) -> AsyncIterator[object]:
    """An asyncio Redis client; this test's keys are deleted afterwards."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{names.prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Forget the figures reported by an earlier run."""
    reports.clear()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show the figures of crash, chaos and attack tests (lost, applied twice, ...)."""
    lines = reports.collected()
    if lines:
        terminalreporter.section("reported figures")
        for line in lines:
            terminalreporter.write_line(line)
