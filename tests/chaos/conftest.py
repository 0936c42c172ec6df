"""Fixtures of the chaos suite: private RabbitMQ nodes and Redis servers (faults are
injected only into these), started per test and removed afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bus.conftest import fast_policy, middleware_for  # noqa: F401 (shared fixtures)
from tests.chaos.services import PrivateRabbit, PrivateRedis

pytestmark = pytest.mark.slow


def _require(binary: Path | str) -> None:
    if shutil.which(str(binary)) is None and not Path(binary).exists():
        pytest.fail(f"{binary} is missing; run scripts/services.sh install")


@pytest.fixture(scope="session")
def private_rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    """A RabbitMQ node of the chaos suite's own, on free ports, started once (a boot
    costs 10-20 s); stopped at the end. Tests may kill, stop or alarm it but leave it
    running and unalarmed; they use their own ``names``."""
    _require("/usr/lib/rabbitmq/bin/rabbitmq-server")
    node = PrivateRabbit(tmp_path_factory.mktemp("rabbit"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, on a free port; stopped afterwards."""
    _require("redis-server")
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
