"""POST /events: API keys, scopes, validation."""

from __future__ import annotations

import pytest

from gateway.ids import keyed_id
from tests.gateway.conftest import DEPLOYER_KEY, OPS_KEY, published

DEPLOY = {"type": "deployment.requested", "data": {"app": "shop", "version": "1.0.0"}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_bearer_key_publishes(client, broker) -> None:
    resp = await client.post("/events", json=DEPLOY, headers=bearer(DEPLOYER_KEY))
    assert resp.status == 202, await resp.text()
    [event] = await published(broker)
    assert (await resp.json())["id"] == event.id
    assert event.source == "codebus/gateway/api/deployer"
    assert event.correlationid == event.id


async def test_x_api_key_header_and_client_ids(client, broker) -> None:
    body = {**DEPLOY, "id": "client-chosen-1", "subject": "shop", "correlationid": "wf-9"}
    resp = await client.post("/events", json=body, headers={"X-API-Key": OPS_KEY})
    assert resp.status == 202
    [event] = await published(broker)
    # Caller ids are scoped to the key (gateway.ids), never used as given.
    assert event.id == keyed_id(OPS_KEY, "api", "ops", "client-chosen-1")
    assert event.correlationid == keyed_id(OPS_KEY, "correlation", "ops", "wf-9")
    assert event.subject == "shop"
    assert await resp.json() == {
        "status": "accepted",
        "id": event.id,
        "correlationid": event.correlationid,
    }


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("nope"), {"X-API-Key": "nope"}, {"Authorization": f"Basic {OPS_KEY}"}],
)
async def test_missing_or_unknown_key(client, broker, headers) -> None:
    resp = await client.post("/events", json=DEPLOY, headers=headers)
    assert resp.status == 401
    assert await published(broker) == []


async def test_out_of_scope_key_is_forbidden(client, broker) -> None:
    body = {"type": "notification.requested", "data": {"channel": "#x", "title": "t"}}
    resp = await client.post("/events", json=body, headers=bearer(DEPLOYER_KEY))
    assert resp.status == 403
    assert (await resp.json())["fields"] == ["type"]
    # The catch-all key may publish the same event.
    assert (await client.post("/events", json=body, headers=bearer(OPS_KEY))).status == 202
    assert [e.type for e in await published(broker)] == ["notification.requested"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "deployment.requested", "data": {"app": "shop"}}, "data.version"),
        ({"type": "deployment.requested", "data": {"app": "Shop!", "version": "1"}}, "data.app"),
        ({"type": "deployment.requested", "data": {"app": "s", "version": 1}}, "data.version"),
        ({"type": "deployment.nope", "data": {}}, "type"),
        ({"type": "deployment.requested"}, "data"),
        ({**DEPLOY, "surprise": True}, "surprise"),
        ({**DEPLOY, "id": ""}, "id"),
    ],
)
async def test_invalid_bodies_name_the_field(client, broker, body, field) -> None:
    resp = await client.post("/events", json=body, headers=bearer(OPS_KEY))
    assert resp.status == 400
    answer = await resp.json()
    assert field in answer["fields"], answer
    assert field in answer["detail"]
    assert await published(broker) == []


async def test_wrong_content_type_and_bad_json(client) -> None:
    resp = await client.post(
        "/events", data="x", headers={**bearer(OPS_KEY), "Content-Type": "text/plain"}
    )
    assert resp.status == 415
    resp = await client.post(
        "/events", data="{", headers={**bearer(OPS_KEY), "Content-Type": "application/json"}
    )
    assert resp.status == 400


async def test_auth_is_checked_before_the_body(client) -> None:
    resp = await client.post("/events", data="x" * 10_000, headers={"Content-Type": "text/plain"})
    assert resp.status == 401
