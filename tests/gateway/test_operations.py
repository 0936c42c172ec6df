"""Health, readiness, metrics, the OpenAPI document, and failing dependencies (503)."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bus.errors import BrokerUnavailable, PublishNacked
from schemas.webhooks import github_signature, sign_headers
from tests.gateway.conftest import GITHUB_SECRET, NOW, OPS_KEY, STANDARD_SECRET, published

DEPLOY = {"type": "deployment.requested", "data": {"app": "shop", "version": "1.0.0"}}
AUTH = {"Authorization": f"Bearer {OPS_KEY}"}


class FailingBroker:
    """Delegates to a real broker but fails publish/ping with ``error``."""

    def __init__(self, inner, error: Exception) -> None:
        self.names = inner.names
        self._error = error

    async def publish(self, event, *, headers=None) -> None:
        raise self._error

    async def ping(self) -> None:
        raise self._error


def dead_redis() -> aioredis.Redis:
    # Nothing listens on port 1: every command fails fast with ConnectionError.
    return aioredis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )


async def test_healthz_and_readyz(client) -> None:
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["checks"] == {"broker": "ok", "redis": "ok"}


async def test_readyz_reports_broker_down(make_client, broker) -> None:
    client = await make_client(broker=FailingBroker(broker, BrokerUnavailable("down")))
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert resp.headers["Retry-After"]
    checks = (await resp.json())["checks"]
    assert checks["broker"].startswith("down") and checks["redis"] == "ok"


async def test_readyz_reports_redis_down(make_client) -> None:
    r = dead_redis()
    client = await make_client(redis=r)
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["checks"]["redis"].startswith("down")
    await r.aclose()


async def test_publish_failures_are_503_never_2xx(make_client, broker) -> None:
    for error in (BrokerUnavailable("gone"), PublishNacked("nack")):
        client = await make_client(broker=FailingBroker(broker, error))
        resp = await client.post("/events", json=DEPLOY, headers=AUTH)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"


async def test_unroutable_is_503(make_client, names) -> None:
    from bus.memory import MemoryBroker

    empty = MemoryBroker(names)  # no queue bound at all
    await empty.connect()
    client = await make_client(broker=empty)
    resp = await client.post("/events", json=DEPLOY, headers=AUTH)
    assert resp.status == 503
    assert "no subscriber" in (await resp.json())["detail"]


async def test_webhook_publish_failure_releases_the_replay_claim(
    make_client, broker, clock
) -> None:
    body = json.dumps(DEPLOY).encode()
    headers = {
        **sign_headers(STANDARD_SECRET, "msg_retry", int(NOW), body),
        "Content-Type": "application/json",
    }
    down = await make_client(broker=FailingBroker(broker, BrokerUnavailable("gone")))
    assert (await down.post("/webhooks/ci", data=body, headers=headers)).status == 503
    # The sender's retry (same id) must not be mistaken for a replay.
    up = await make_client()
    assert (await up.post("/webhooks/ci", data=body, headers=headers)).status == 202
    assert len(await published(broker)) == 1


async def test_redis_down_means_503_for_webhooks(make_client, broker) -> None:
    r = dead_redis()
    client = await make_client(redis=r)
    body = json.dumps({"ref": "refs/tags/v1", "repository": {"name": "shop"}}).encode()
    headers = {
        "X-Hub-Signature-256": github_signature(GITHUB_SECRET, body),
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-1",
        "Content-Type": "application/json",
    }
    resp = await client.post("/webhooks/github", data=body, headers=headers)
    assert resp.status == 503
    assert resp.headers["Retry-After"]
    assert await published(broker) == []
    await r.aclose()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_requests_publishes_and_rejections(client) -> None:
    await client.post("/events", json=DEPLOY, headers=AUTH)
    await client.post("/events", json=DEPLOY, headers={"Authorization": "Bearer wrong"})
    await client.post("/events", json=DEPLOY, headers={"Authorization": "Bearer wrong"})
    await client.get("/nowhere")
    samples = _samples(await (await client.get("/metrics")).text())
    req = "codebus_gateway_requests_total"
    assert samples[(req, (("route", "/events"), ("status", "202")))] == 1
    assert samples[(req, (("route", "/events"), ("status", "401")))] == 2
    assert samples[(req, (("route", "unmatched"), ("status", "404")))] == 1
    pub = "codebus_gateway_published_events_total"
    assert samples[(pub, (("type", "deployment.requested"),))] == 1
    assert samples[("codebus_gateway_rejections_total", (("reason", "bad_api_key"),))] == 2


async def test_each_app_has_its_own_registry(make_client) -> None:
    a = await make_client()
    b = await make_client()
    await a.post("/events", json=DEPLOY, headers=AUTH)
    text_b = await (await b.get("/metrics")).text()
    assert 'route="/events"' not in text_b


async def test_openapi_document_describes_every_route(client) -> None:
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    served = {
        (r.method.lower(), r.resource.canonical)
        for r in client.app.router.routes()
        if r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    hook = doc["paths"]["/webhooks/{source}"]["post"]
    assert {"202", "401", "404", "409", "413", "415", "503"} <= set(hook["responses"])
    headers = {p["name"] for p in hook["parameters"] if p["in"] == "header"}
    assert {"webhook-signature", "X-Hub-Signature-256", "X-GitHub-Delivery"} <= headers


async def test_405_keeps_allow_header(client) -> None:
    resp = await client.get("/events")
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]


class StalledBroker(FailingBroker):
    """A broker that never confirms."""

    async def publish(self, event, *, headers=None) -> None:
        await asyncio.sleep(3600)


async def test_a_broker_that_never_confirms_is_503(make_client, broker) -> None:
    client = await make_client(broker=StalledBroker(broker, None), publish_timeout=0.2)
    resp = await client.post("/events", json=DEPLOY, headers=AUTH)
    assert resp.status == 503
    assert "in time" in (await resp.json())["detail"]
