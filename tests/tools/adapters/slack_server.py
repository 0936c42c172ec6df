"""A small Slack stand-in (aiohttp) that checks request shapes the way Slack does.

It serves ``POST /api/chat.postMessage`` and one incoming webhook path. Requests with
the wrong method, auth, content type or body get Slack's own error codes
(``not_authed``, ``invalid_auth``, ``channel_not_found``, ``no_text``...), so an adapter
that talks to it correctly would also talk to Slack correctly. ``fail_next`` queues a
canned HTTP answer (429 with Retry-After, 500...) for the next request.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

WEBHOOK_PATH = "/services/T0000/B0000/webhooksecret"


@dataclass
class Received:
    """One accepted message."""

    channel: str | None
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class SlackStub:
    """State and handlers of the stand-in; ``app`` is the aiohttp application."""

    token: str
    channels: dict[str, str] = field(
        default_factory=lambda: {"#deployments": "C0DEPLOY", "#security-alerts": "C0SECURE"}
    )
    messages: list[Received] = field(default_factory=list)
    webhook_messages: list[Received] = field(default_factory=list)
    canned: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    _ts: Any = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        """Answer the next request with this status, body and headers."""
        self.canned.append((status, headers or {}, body))

    @property
    def app(self) -> web.Application:
        """The aiohttp application serving the Slack paths."""
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post(WEBHOOK_PATH, self._webhook)
        return app

    def _canned(self) -> web.Response | None:
        if not self.canned:
            return None
        status, headers, body = self.canned.pop(0)
        return web.Response(status=status, headers=headers, text=body)

    async def _post_message(self, request: web.Request) -> web.Response:
        canned = self._canned()
        if canned is not None:
            return canned
        auth = request.headers.get("Authorization")
        if not auth:
            return _slack_error("not_authed")
        if auth != f"Bearer {self.token}":
            return _slack_error("invalid_auth")
        if request.content_type != "application/json" or request.charset != "utf-8":
            return _slack_error("invalid_form_data")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _slack_error("invalid_json")
        if not isinstance(body, dict):
            return _slack_error("invalid_json")
        channel = body.get("channel")
        if not isinstance(channel, str) or not channel:
            return _slack_error("channel_not_found")
        channel_id = self.channels.get(channel) or (
            channel if channel in self.channels.values() else None
        )
        if channel_id is None:
            return _slack_error("channel_not_found")
        if not (body.get("text") or body.get("blocks") or body.get("attachments")):
            return _slack_error("no_text")
        if "blocks" in body and not _valid_blocks(body["blocks"]):
            return _slack_error("invalid_blocks")
        self.messages.append(Received(channel_id, body, dict(request.headers)))
        ts = f"1700000000.{next(self._ts):06d}"
        return web.json_response(
            {"ok": True, "channel": channel_id, "ts": ts, "message": {"text": body.get("text")}}
        )

    async def _webhook(self, request: web.Request) -> web.Response:
        canned = self._canned()
        if canned is not None:
            return canned
        if request.content_type != "application/json":
            return web.Response(status=400, text="invalid_payload")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return web.Response(status=400, text="no_text")
        self.webhook_messages.append(Received(None, body, dict(request.headers)))
        return web.Response(text="ok")


def _slack_error(code: str) -> web.Response:
    # Slack reports API errors with HTTP 200 and ok=false.
    return web.json_response({"ok": False, "error": code})


def _valid_blocks(blocks: Any) -> bool:
    return (
        isinstance(blocks, list)
        and len(blocks) <= 50
        and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
    )


async def start_slack_stub(stub: SlackStub) -> TestServer:
    """Serve ``stub`` on a free loopback port; the caller closes the returned server."""
    server = TestServer(stub.app, host="127.0.0.1")
    await server.start_server()
    return server
