"""Fixtures of the console tests: a console app served on a free loopback port, wired to
the live RabbitMQ and Redis under this test's names, and the credentials that sign in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bus.abc import Message
from bus.rabbitmq import RabbitBroker
from gateway.console.app import create_console_app
from gateway.console.config import ConsoleConfig
from schemas.envelope import new_event
from schemas.gateway_config import ApiKey
from schemas.names import (
    HEADER_ATTEMPT,
    HEADER_DEAD_AT,
    HEADER_DEAD_KIND,
    HEADER_DEAD_REASON,
    HEADER_ORIGIN_QUEUE,
    Names,
)
from schemas.webhooks import hash_api_key

OPERATOR_TOKEN = "console-operator-token-0123456789"
READ_TOKEN = "console-read-token-0123456789"
DEPLOYER_KEY = "gateway-deployer-key-0123456789"  # gateway key given operator scope
VIEWER_KEY = "gateway-viewer-key-0123456789"  # gateway key, read-only by default
SECRET = "hunter2-do-not-show-0123456789"
ORIGIN_QUEUE_SUB = "console.t"


def console_config() -> ConsoleConfig:
    """Two tokens (operator, read) and the deployer key promoted to operator."""
    return ConsoleConfig.model_validate(
        {
            "key_scopes": {"deployer": "operator"},
            "tokens": [
                {"name": "oncall", "token": OPERATOR_TOKEN, "scope": "operator"},
                {"name": "auditor", "token": READ_TOKEN, "scope": "read"},
            ],
        }
    )


GATEWAY_KEYS = [
    ApiKey(name="deployer", sha256=hash_api_key(DEPLOYER_KEY), scopes=["deployment.*"]),
    ApiKey(name="viewer", sha256=hash_api_key(VIEWER_KEY), scopes=["#"]),
]


@dataclass
class Console:
    """A running console and its collaborators."""

    url: str
    app: web.Application
    broker: RabbitBroker
    redis: Any
    names: Names

    @property
    def origin_queue(self) -> str:
        """A subscription queue for dead letters to come from and go back to."""
        return self.names.subscription_queue(ORIGIN_QUEUE_SUB)

    async def add_dead_letter(self, reason: str = f"bad token={SECRET}") -> str:
        """Dead-letter one event as the runtime would; returns its id."""
        await self.broker.declare_queue(self.origin_queue, ["console.never"])
        event = new_event(
            "notification.requested",
            {"channel": "#ops", "title": "t", "details": {"password": SECRET}},
            source="tests",
        )
        message = Message(
            event.to_json(),
            event.type,
            event.id,
            {
                HEADER_DEAD_KIND: "rejected",
                HEADER_DEAD_REASON: reason,
                HEADER_ORIGIN_QUEUE: self.origin_queue,
                HEADER_ATTEMPT: 3,
                HEADER_DEAD_AT: "2026-12-01T18:00:00+00:00",
            },
        )
        await self.broker.dead_letter(message)
        return event.id


@pytest.fixture
async def console(amqp_url: str, redis_client: Any, names: Names) -> AsyncIterator[Console]:
    """The console app on 127.0.0.1:<free port> over the live services."""
    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    app = create_console_app(
        console_config(), broker, redis_client, api_keys=GATEWAY_KEYS, names=names
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Console(str(server.make_url("")).rstrip("/"), app, broker, redis_client, names)
    finally:
        await server.close()
        queues = [*broker._queue_args, names.subscription_queue(ORIGIN_QUEUE_SUB)]
        await broker.delete_topology(sorted(set(queues)))
        await broker.close()


@pytest.fixture
async def http(console: Console) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session against the console (cookies kept, like a browser)."""
    async with aiohttp.ClientSession(
        base_url=console.url, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as session:
        yield session


async def sign_in(http: aiohttp.ClientSession, console: Console, key: str) -> str:
    """Sign in with ``key``; returns the session's CSRF token."""
    async with http.post("/api/login", json={"key": key}, headers={"Origin": console.url}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["csrf"])
