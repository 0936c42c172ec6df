"""Fixtures of the gateway tests: a config with one source of each kind, a memory broker
with a catch-all queue, a controllable clock and an aiohttp test client (live Redis)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bus.memory import MemoryBroker
from gateway.app import create_app
from schemas.envelope import Event
from schemas.gateway_config import GatewayConfig
from schemas.names import Names
from schemas.webhooks import hash_api_key

STANDARD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
GITHUB_SECRET = "gh-secret-for-tests"
ALERT_TOKEN = "am-token-for-tests"
DEPLOYER_KEY = "key-deployer-1234567890"
OPS_KEY = "key-ops-1234567890"
NOW = 1_764_000_000.0
CATCH_ALL = "test.all"


def config_document() -> dict[str, Any]:
    """The raw configuration used by most gateway tests."""
    return {
        "max_body_bytes": 4096,
        "sources": [
            {"name": "ci", "kind": "standard", "secret": STANDARD_SECRET},
            {
                "name": "github",
                "kind": "github",
                "secret": GITHUB_SECRET,
                "rules": [
                    {
                        "event": "push",
                        "match": {"ref": ["refs/tags/v*"]},
                        "type": "deployment.requested",
                        "data": {
                            "app": "repository.name",
                            "version": {"path": "ref", "strip_prefix": "refs/tags/"},
                        },
                        "static": {"environment": "staging"},
                        "subject": "repository.full_name",
                    },
                    {
                        "event": "workflow_run",
                        "match": {
                            "action": ["completed"],
                            "workflow_run.conclusion": ["success"],
                            "workflow_run.head_branch": ["main"],
                        },
                        "type": "deployment.requested",
                        "data": {"app": "repository.name", "version": "workflow_run.head_sha"},
                    },
                    {
                        "event": "registry_package",
                        "match": {"action": ["published"]},
                        "type": "deployment.requested",
                        "data": {
                            "app": "registry_package.name",
                            "version": "registry_package.package_version.version",
                        },
                    },
                ],
            },
            {
                "name": "alerts",
                "kind": "alertmanager",
                "token": ALERT_TOKEN,
                "rules": [
                    {
                        "event": "firing",
                        "type": "notification.requested",
                        "data": {
                            "title": "labels.alertname",
                            "text": "annotations.summary",
                            "details": "labels",
                        },
                        "static": {"channel": "#alerts", "notification_type": "warning"},
                        "subject": "fingerprint",
                    },
                    {
                        "event": "resolved",
                        "type": "notification.requested",
                        "data": {"title": "labels.alertname"},
                        "static": {"channel": "#alerts", "notification_type": "success"},
                    },
                ],
            },
        ],
        "api_keys": [
            {"name": "deployer", "sha256": hash_api_key(DEPLOYER_KEY), "scopes": ["deployment.*"]},
            {"name": "ops", "sha256": hash_api_key(OPS_KEY), "scopes": ["#"]},
        ],
    }


class Clock:
    """A settable clock returning Unix seconds."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """The gateway's clock, fixed at ``NOW`` unless a test moves it."""
    return Clock()


@pytest.fixture
def gateway_config() -> GatewayConfig:
    """The validated test configuration."""
    return GatewayConfig.model_validate(config_document())


@pytest.fixture
async def broker(names: Names) -> AsyncIterator[MemoryBroker]:
    """A connected memory broker with a queue bound to every event type."""
    b = MemoryBroker(names)
    await b.connect()
    await b.declare_queue(CATCH_ALL, ["#"])
    yield b
    await b.close()


async def published(broker: Any, queue: str = CATCH_ALL) -> list[Event]:
    """Every event waiting in ``queue`` (acknowledged)."""
    events: list[Event] = []
    while (delivery := await broker.get(queue)) is not None:
        events.append(Event.from_json(delivery.message.body))
        await delivery.ack()
    return events


ClientFactory = Callable[..., Any]


@pytest.fixture
async def make_client(
    broker: MemoryBroker, redis_client: Any, names: Names, clock: Clock
) -> AsyncIterator[ClientFactory]:
    """Build test clients; keyword arguments override the app's dependencies."""
    clients: list[TestClient[Any, Any]] = []

    async def factory(**overrides: Any) -> TestClient[Any, Any]:
        kwargs: dict[str, Any] = {
            "config": GatewayConfig.model_validate(config_document()),
            "broker": broker,
            "redis": redis_client,
            "names": names,
            "clock": clock,
        }
        kwargs.update(overrides)
        app = create_app(kwargs.pop("config"), kwargs.pop("broker"), kwargs.pop("redis"), **kwargs)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for c in clients:
        await c.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, Any]:
    """A client of the gateway with the default test dependencies."""
    return await make_client()
