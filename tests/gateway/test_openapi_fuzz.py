"""Property-based fuzzing of the running gateway against its own /openapi.json.

Schemathesis generates requests for every documented operation; each response must not
be a 5xx and must conform to the document (status code, content type, body schema).
The broker (in-memory, with a catch-all queue) and Redis (live) are up, so a 5xx would
be a bug. Requests are also re-signed / authenticated in some runs so that the fuzzer
gets past authentication into body parsing, mapping and publishing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bus.memory import MemoryBroker
from gateway.app import create_app
from schemas.gateway_config import GatewayConfig
from schemas.names import Names
from schemas.webhooks import github_signature, sign_headers
from tests.gateway.conftest import (
    ALERT_TOKEN,
    CATCH_ALL,
    GITHUB_SECRET,
    OPS_KEY,
    STANDARD_SECRET,
    config_document,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 50


class GatewayThread:
    """Runs the gateway app with a memory broker and live Redis on its own loop."""

    def __init__(self, redis_url: str, names: Names) -> None:
        self._redis_url, self._names = redis_url, names
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.base_url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._setup())
        self._ready.set()
        self._loop.run_forever()

    async def _setup(self) -> None:
        self.broker = MemoryBroker(self._names)
        await self.broker.connect()
        await self.broker.declare_queue(CATCH_ALL, ["#"])
        self.redis = aioredis.Redis.from_url(self._redis_url)
        config = GatewayConfig.model_validate({**config_document(), "max_body_bytes": 65536})
        self.runner = web.AppRunner(create_app(config, self.broker, self.redis, names=self._names))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def _teardown(self) -> None:
        await self.runner.cleanup()
        keys = [k async for k in self.redis.scan_iter(match=f"{self._names.prefix}:*")]
        if keys:
            await self.redis.delete(*keys)
        await self.redis.aclose()
        await self.broker.close()

    def __enter__(self) -> GatewayThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("gateway did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._teardown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class SigningSession(requests.Session):
    """Rewrites webhook requests to a configured source and authenticates them
    properly, so that generated bodies reach the mapping and publishing code."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        if self.mode == "events":
            request.headers["Authorization"] = f"Bearer {OPS_KEY}"
        elif self.mode == "standard":
            request.url = _with_source(request.url, "ci")
            request.headers.update(
                sign_headers(STANDARD_SECRET, f"msg_{uuid.uuid4().hex}", int(time.time()), raw)
            )
        elif self.mode == "github":
            request.url = _with_source(request.url, "github")
            request.headers["X-Hub-Signature-256"] = github_signature(GITHUB_SECRET, raw)
            request.headers.setdefault("X-GitHub-Event", "push")
            request.headers.setdefault("X-GitHub-Delivery", str(uuid.uuid4()))
        elif self.mode == "alertmanager":
            request.url = _with_source(request.url, "alerts")
            request.headers["Authorization"] = f"Bearer {ALERT_TOKEN}"
        return super().send(request, **kwargs)


def _with_source(url: str | None, source: str) -> str:
    assert url is not None
    base = url.split("/webhooks/", 1)[0]
    return f"{base}/webhooks/{source}"


@pytest.fixture(scope="module")
def fuzz_names() -> Names:
    return Names(prefix=f"tfuzz{uuid.uuid4().hex[:8]}")


@pytest.fixture
def gateway(redis_url: str, fuzz_names: Names):
    with GatewayThread(redis_url, fuzz_names) as running:
        yield running


def _fuzz(gateway: GatewayThread, path: str, method: str, mode: str) -> dict[int, int]:
    schema = schemathesis.openapi.from_url(f"{gateway.base_url}/openapi.json")
    operation = schema[path][method]
    statuses: dict[int, int] = {}
    session = SigningSession(mode)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(base_url=gateway.base_url, session=session, timeout=10)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    run()
    session.close()
    return statuses


@pytest.mark.parametrize(
    ("path", "method", "mode"),
    [
        ("/events", "POST", "none"),
        ("/events", "POST", "events"),
        ("/webhooks/{source}", "POST", "none"),
        ("/webhooks/{source}", "POST", "standard"),
        ("/webhooks/{source}", "POST", "github"),
        ("/webhooks/{source}", "POST", "alertmanager"),
        ("/healthz", "GET", "none"),
        ("/readyz", "GET", "none"),
        ("/metrics", "GET", "none"),
        ("/openapi.json", "GET", "none"),
    ],
)
def test_no_server_errors_and_responses_match_the_document(gateway, path, method, mode) -> None:
    statuses = _fuzz(gateway, path, method, mode)
    assert not any(s >= 500 for s in statuses), statuses
    if mode == "events":
        # Authenticated and schema-guided: some generated events must get published.
        assert statuses.get(202, 0) > 0, statuses
    if mode in ("standard", "github", "alertmanager"):
        # Authentication passed, so the fuzzer reached body handling.
        assert statuses.get(401, 0) == 0, statuses


def test_document_is_valid_json(gateway) -> None:
    doc = requests.get(f"{gateway.base_url}/openapi.json", timeout=5).json()
    assert json.loads(json.dumps(doc)) == doc
