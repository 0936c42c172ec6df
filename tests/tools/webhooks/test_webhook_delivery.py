"""WebhookSender against local aiohttp receivers: signing, classification, pinning,
redirects, and refusal of internal targets before any connection."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from schemas.envelope import new_event
from schemas.gateway_config import OutboundSubscription
from tools.errors import ToolFailed, ToolTimeout, ToolTransientError
from tools.webhooks.delivery import WebhookSender, WebhookTransientError
from tools.webhooks.ssrf import WebhookBlocked

SECRET = "whsec_" + base64.b64encode(b"receiver-secret-0123456789").decode()
LOOPBACK = [ipaddress.ip_network("127.0.0.1/32")]


def independent_signature(secret: str, msg_id: str, ts: str, body: bytes) -> str:
    """The Standard Webhooks signature computed here, not with the code under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class Receiver:
    """A local webhook receiver whose behaviour each test chooses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.headers: dict[str, str] = {}
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        h = request.headers
        self.requests.append(
            {
                "path": request.path,
                "host": h.get("Host"),
                "body": body,
                "headers": dict(h),
                "valid": h.get("webhook-signature")
                == independent_signature(
                    SECRET, h.get("webhook-id", ""), h.get("webhook-timestamp", ""), body
                ),
            }
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, headers=self.headers, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, TestServer]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield rec, server
    await server.close()


def event():
    return new_event("deployment.completed", {"app": "shop", "version": "1.0"}, source="test")


def sub(url: str, **kw: Any) -> OutboundSubscription:
    return OutboundSubscription(name="rx", url=url, patterns=["#"], secret=SECRET, **kw)


async def test_signed_delivery_to_an_allowed_receiver(receiver) -> None:
    rec, server = receiver
    ev = event()
    sender = WebhookSender(allowed_cidrs=LOOPBACK)
    result = await sender.deliver(sub(f"http://127.0.0.1:{server.port}/hook"), ev)
    assert result.status == 200 and result.addresses == ("127.0.0.1",)
    [req] = rec.requests
    assert req["valid"]
    assert req["headers"]["webhook-id"] == ev.id
    assert abs(int(req["headers"]["webhook-timestamp"]) - time.time()) < 5
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"] == ev.to_json()


async def test_loopback_is_refused_without_allowlist(receiver) -> None:
    rec, server = receiver
    with pytest.raises(WebhookBlocked):
        await WebhookSender().deliver(sub(f"http://127.0.0.1:{server.port}/hook"), event())
    with pytest.raises(WebhookBlocked):
        await WebhookSender().deliver(sub(f"http://localhost:{server.port}/hook"), event())
    assert rec.requests == []


async def test_name_is_pinned_to_the_vetted_address(receiver) -> None:
    rec, server = receiver
    calls: list[str] = []

    async def rebinding_resolver(host: str, port: int) -> list[str]:
        # A rebinding attacker answers differently the second time; there is none.
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["10.9.9.9"]

    sender = WebhookSender(allowed_cidrs=LOOPBACK, resolve=rebinding_resolver)
    await sender.deliver(sub(f"http://receiver.test:{server.port}/hook"), event())
    assert calls == ["receiver.test"]
    # The Host header keeps the name although the connection went to the address.
    assert rec.requests[0]["host"] == f"receiver.test:{server.port}"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, WebhookTransientError),
        (503, WebhookTransientError),
        (429, WebhookTransientError),
        (400, ToolFailed),
        (404, ToolFailed),
        (410, ToolFailed),
    ],
)
async def test_outcome_classification(receiver, status, error) -> None:
    rec, server = receiver
    rec.status = status
    sender = WebhookSender(allowed_cidrs=LOOPBACK)
    with pytest.raises(error) as info:
        await sender.deliver(sub(f"http://127.0.0.1:{server.port}/"), event())
    assert info.value.status == status
    if error is ToolFailed:
        assert not isinstance(info.value, ToolTransientError)


async def test_retry_after_is_reported(receiver) -> None:
    rec, server = receiver
    rec.status, rec.headers = 429, {"Retry-After": "7"}
    with pytest.raises(WebhookTransientError) as info:
        await WebhookSender(allowed_cidrs=LOOPBACK).deliver(
            sub(f"http://127.0.0.1:{server.port}/"), event()
        )
    assert info.value.retry_after == 7.0


async def test_redirect_to_internal_address_is_not_followed(receiver) -> None:
    rec, server = receiver
    internal = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", internal.handle)
    internal_server = TestServer(app, host="127.0.0.1")
    await internal_server.start_server()
    try:
        rec.status = 302
        rec.headers = {"Location": f"http://127.0.0.1:{internal_server.port}/admin"}
        with pytest.raises(ToolFailed, match="redirect") as info:
            await WebhookSender(allowed_cidrs=LOOPBACK).deliver(
                sub(f"http://127.0.0.1:{server.port}/"), event()
            )
        assert info.value.status == 302
        assert internal.requests == []
    finally:
        await internal_server.close()


async def test_timeout_is_transient(receiver) -> None:
    rec, server = receiver
    rec.delay = 2.0
    with pytest.raises(ToolTimeout):
        await WebhookSender(allowed_cidrs=LOOPBACK).deliver(
            sub(f"http://127.0.0.1:{server.port}/", timeout_seconds=0.3), event()
        )


async def test_connection_refused_is_transient(unused_tcp_port: int) -> None:
    with pytest.raises(WebhookTransientError):
        await WebhookSender(allowed_cidrs=LOOPBACK).deliver(
            sub(f"http://127.0.0.1:{unused_tcp_port}/"), event()
        )


async def test_unresolvable_name_is_transient() -> None:
    async def nxdomain(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(WebhookTransientError, match="cannot resolve"):
        await WebhookSender(resolve=nxdomain).deliver(sub("https://gone.example/"), event())
