"""POST /webhooks/{source}: the three source kinds, every refusal and its status."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from gateway.adapters import derived_id
from gateway.state import STATE
from schemas.webhooks import github_signature, sign_headers
from tests.gateway.conftest import (
    ALERT_TOKEN,
    GITHUB_SECRET,
    NOW,
    STANDARD_SECRET,
    Clock,
    published,
)

DEPLOY = {"type": "deployment.requested", "data": {"app": "shop", "version": "1.2.3"}}


def standard(body: bytes, *, msg_id: str | None = None, ts: float = NOW) -> dict[str, str]:
    """Signed Standard Webhooks headers for ``body``."""
    return {
        **sign_headers(STANDARD_SECRET, msg_id or f"msg_{uuid.uuid4().hex}", int(ts), body),
        "Content-Type": "application/json",
    }


def github(body: bytes, event: str, delivery: str | None = None) -> dict[str, str]:
    """GitHub delivery headers for ``body``."""
    return {
        "X-Hub-Signature-256": github_signature(GITHUB_SECRET, body),
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json",
    }


async def test_standard_webhook_is_published(client, broker) -> None:
    body = json.dumps(DEPLOY).encode()
    resp = await client.post("/webhooks/ci", data=body, headers=standard(body, msg_id="msg_1"))
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    [event] = await published(broker)
    assert answer["id"] == event.id == derived_id(client.app[STATE].config.source("ci"), "msg_1")
    assert event.type == "deployment.requested"
    assert event.data["app"] == "shop" and event.data["environment"] == "production"
    assert event.source == "codebus/gateway/webhooks/ci"


async def test_standard_replay_is_refused(client, broker) -> None:
    body = json.dumps(DEPLOY).encode()
    headers = standard(body, msg_id="msg_replayed")
    assert (await client.post("/webhooks/ci", data=body, headers=headers)).status == 202
    again = await client.post("/webhooks/ci", data=body, headers=headers)
    assert again.status == 409
    assert (await again.json())["error"] == "replay"
    assert len(await published(broker)) == 1


async def test_tampered_body_is_refused(client, broker) -> None:
    body = json.dumps(DEPLOY).encode()
    headers = standard(body)
    tampered = body.replace(b"1.2.3", b"6.6.6")
    resp = await client.post("/webhooks/ci", data=tampered, headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"] == "signature"
    assert await published(broker) == []


@pytest.mark.parametrize("offset", [-301, 301, -3600, 7200])
async def test_stale_and_future_timestamps_are_refused(client, broker, offset) -> None:
    body = json.dumps(DEPLOY).encode()
    resp = await client.post("/webhooks/ci", data=body, headers=standard(body, ts=NOW + offset))
    assert resp.status == 401
    assert (await resp.json())["error"] == "timestamp"
    assert await published(broker) == []


async def test_clock_moves_and_timestamp_expires(client, broker, clock: Clock) -> None:
    body = json.dumps(DEPLOY).encode()
    headers = standard(body)
    clock.now = NOW + 299
    assert (await client.post("/webhooks/ci", data=body, headers=headers)).status == 202
    clock.now = NOW + 301
    headers = standard(body, ts=NOW)
    assert (await client.post("/webhooks/ci", data=body, headers=headers)).status == 401


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_missing_standard_headers(client, missing) -> None:
    body = json.dumps(DEPLOY).encode()
    headers = standard(body)
    del headers[missing]
    resp = await client.post("/webhooks/ci", data=body, headers=headers)
    assert resp.status == 401
    assert missing in (await resp.json())["detail"]


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type(client, ctype) -> None:
    body = json.dumps(DEPLOY).encode()
    headers = standard(body)
    if ctype is None:
        del headers["Content-Type"]
    else:
        headers["Content-Type"] = ctype
    resp = await client.post("/webhooks/ci", data=body, headers=headers)
    assert resp.status == 415


async def test_json_with_charset_is_accepted(client) -> None:
    body = json.dumps(DEPLOY).encode()
    headers = {**standard(body), "Content-Type": "application/json; charset=utf-8"}
    assert (await client.post("/webhooks/ci", data=body, headers=headers)).status == 202


async def test_oversize_body(client, broker) -> None:
    body = json.dumps({**DEPLOY, "pad": "x" * 5000}).encode()
    resp = await client.post("/webhooks/ci", data=body, headers=standard(body))
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"


async def test_oversize_chunked_body(client) -> None:
    body = json.dumps({**DEPLOY, "pad": "x" * 5000}).encode()

    async def chunks():
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    resp = await client.post("/webhooks/ci", data=chunks(), headers=standard(body))
    assert resp.status == 413


async def test_unknown_source(client) -> None:
    body = json.dumps(DEPLOY).encode()
    resp = await client.post("/webhooks/nope", data=body, headers=standard(body))
    assert resp.status == 404
    assert (await resp.json())["error"] == "unknown_source"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "deployment.requested", "data": {"app": "shop"}}, "data.version"),
        ({"type": "no.such_type", "data": {}}, "type"),
        ({"type": "deployment.requested"}, "data"),
        ({"type": "deployment.requested", "data": {}, "extra": 1}, "extra"),
        ([1, 2], "(body)"),
    ],
)
async def test_malformed_standard_bodies_name_the_field(client, payload, field) -> None:
    body = json.dumps(payload).encode()
    resp = await client.post("/webhooks/ci", data=body, headers=standard(body))
    assert resp.status == 400
    answer = await resp.json()
    assert field in answer["fields"], answer


async def test_invalid_json(client) -> None:
    body = b'{"type": '
    resp = await client.post("/webhooks/ci", data=body, headers=standard(body))
    assert resp.status == 400


def push(ref: str = "refs/tags/v1.4.0") -> dict[str, Any]:
    return {
        "ref": ref,
        "after": "a" * 40,
        "repository": {"name": "shop", "full_name": "acme/shop"},
    }


async def test_github_tag_push_becomes_deployment(client, broker) -> None:
    body = json.dumps(push()).encode()
    delivery = str(uuid.uuid4())
    resp = await client.post("/webhooks/github", data=body, headers=github(body, "push", delivery))
    assert resp.status == 202, await resp.text()
    [event] = await published(broker)
    assert event.id == derived_id(client.app[STATE].config.source("github"), delivery)
    assert event.data["app"] == "shop"
    assert event.data["version"] == "v1.4.0"
    assert event.data["environment"] == "staging"
    assert event.subject == "acme/shop"


async def test_github_redelivery_is_a_duplicate_not_a_second_event(client, broker) -> None:
    body = json.dumps(push()).encode()
    headers = github(body, "push")
    first = await client.post("/webhooks/github", data=body, headers=headers)
    second = await client.post("/webhooks/github", data=body, headers=headers)
    assert first.status == 202
    assert second.status == 200
    assert (await second.json())["status"] == "duplicate"
    assert (await second.json())["id"] == (await first.json())["id"]
    assert len(await published(broker)) == 1


async def test_github_branch_push_and_ping_are_ignored(client, broker) -> None:
    body = json.dumps(push("refs/heads/feature")).encode()
    resp = await client.post("/webhooks/github", data=body, headers=github(body, "push"))
    assert resp.status == 200
    assert (await resp.json())["status"] == "ignored"
    ping = json.dumps({"zen": "Keep it logically awesome."}).encode()
    assert (
        await client.post("/webhooks/github", data=ping, headers=github(ping, "ping"))
    ).status == 200
    assert await published(broker) == []


async def test_github_workflow_run_success_only(client, broker) -> None:
    run = {
        "action": "completed",
        "workflow_run": {"conclusion": "success", "head_branch": "main", "head_sha": "b" * 40},
        "repository": {"name": "shop"},
    }
    body = json.dumps(run).encode()
    assert (
        await client.post("/webhooks/github", data=body, headers=github(body, "workflow_run"))
    ).status == 202
    failed = json.dumps(
        {**run, "workflow_run": {**run["workflow_run"], "conclusion": "failure"}}
    ).encode()
    resp = await client.post(
        "/webhooks/github", data=failed, headers=github(failed, "workflow_run")
    )
    assert resp.status == 200
    [event] = await published(broker)
    assert event.data["version"] == "b" * 40


async def test_github_registry_package_published(client, broker) -> None:
    pkg = {
        "action": "published",
        "registry_package": {"name": "shop", "package_version": {"version": "2.0.1"}},
    }
    body = json.dumps(pkg).encode()
    resp = await client.post(
        "/webhooks/github", data=body, headers=github(body, "registry_package")
    )
    assert resp.status == 202
    [event] = await published(broker)
    assert (event.data["app"], event.data["version"]) == ("shop", "2.0.1")


@pytest.mark.parametrize("header", ["X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery"])
async def test_github_missing_headers(client, header) -> None:
    body = json.dumps(push()).encode()
    headers = github(body, "push")
    del headers[header]
    resp = await client.post("/webhooks/github", data=body, headers=headers)
    assert resp.status == (401 if header == "X-Hub-Signature-256" else 400)


async def test_github_bad_signature(client, broker) -> None:
    body = json.dumps(push()).encode()
    headers = github(body, "push")
    headers["X-Hub-Signature-256"] = github_signature("wrong", body)
    assert (await client.post("/webhooks/github", data=body, headers=headers)).status == 401
    assert await published(broker) == []


def alert(status: str, fingerprint: str = "f00d") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "HighErrorRate", "service": "shop"},
        "annotations": {"summary": "5xx above 5%"},
        "startsAt": "2026-11-25T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    }


def alertmanager_body(*alerts: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{alertname="HighErrorRate"}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "codebus",
            "groupLabels": {"alertname": "HighErrorRate"},
            "commonLabels": {"alertname": "HighErrorRate"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": list(alerts),
        }
    ).encode()


AM_HEADERS = {"Authorization": f"Bearer {ALERT_TOKEN}", "Content-Type": "application/json"}


async def test_alertmanager_one_event_per_alert_and_idempotent_ids(client, broker) -> None:
    body = alertmanager_body(
        alert("firing", "aaa"), alert("firing", "bbb"), alert("resolved", "ccc")
    )
    resp = await client.post("/webhooks/alerts", data=body, headers=AM_HEADERS)
    assert resp.status == 202, await resp.text()
    events = await published(broker)
    assert len(events) == 3
    assert [e.data["notification_type"] for e in events] == ["warning", "warning", "success"]
    assert events[0].data["title"] == "HighErrorRate"
    assert events[0].data["details"]["service"] == "shop"
    assert events[0].subject == "aaa"
    # Alertmanager retrying the same notification yields the same ids.
    again = await client.post("/webhooks/alerts", data=body, headers=AM_HEADERS)
    assert (await again.json())["ids"] == (await resp.json())["ids"]
    assert len({e.id for e in events}) == 3


@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong", f"Basic {ALERT_TOKEN}", f"Bearer {ALERT_TOKEN}x"]
)
async def test_alertmanager_token_required(client, broker, auth) -> None:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    resp = await client.post(
        "/webhooks/alerts", data=alertmanager_body(alert("firing")), headers=headers
    )
    assert resp.status == 401
    assert "Bearer" in resp.headers["WWW-Authenticate"]
    assert await published(broker) == []


async def test_alertmanager_bad_alert_names_field(client) -> None:
    bad = alert("firing")
    del bad["fingerprint"]
    resp = await client.post("/webhooks/alerts", data=alertmanager_body(bad), headers=AM_HEADERS)
    assert resp.status == 400
    assert "alerts.0.fingerprint" in (await resp.json())["fields"]
