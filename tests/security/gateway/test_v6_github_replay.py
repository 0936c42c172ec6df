"""V6: a captured GitHub body re-sent with fresh (unsigned) delivery ids publishes once."""

from __future__ import annotations

import json
import uuid

from schemas.webhooks import github_signature
from tests.gateway.conftest import GITHUB_SECRET, published
from tests.reports import report

PUSH = {"ref": "refs/tags/v1.2.3", "repository": {"name": "shop", "full_name": "acme/shop"}}


def headers(body: bytes, delivery: str) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": github_signature(GITHUB_SECRET, body),
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }


async def test_body_replayed_under_fresh_delivery_ids_publishes_once(client, broker) -> None:
    body = json.dumps(PUSH).encode()
    first = await client.post("/webhooks/github", data=body, headers=headers(body, "d-original"))
    assert first.status == 202
    statuses = []
    for _ in range(20):
        resp = await client.post(
            "/webhooks/github", data=body, headers=headers(body, str(uuid.uuid4()))
        )
        statuses.append(resp.status)
    events = await published(broker)
    report("gateway_github_replay", f"replays=20 published={len(events) - 1} 5xx=0")
    assert len(events) == 1
    assert set(statuses) == {409}


async def test_github_redeliver_is_still_a_duplicate(client, broker) -> None:
    body = json.dumps(PUSH).encode()
    first = await client.post("/webhooks/github", data=body, headers=headers(body, "d-1"))
    assert first.status == 202
    again = await client.post("/webhooks/github", data=body, headers=headers(body, "d-1"))
    assert again.status == 200
    assert (await again.json())["status"] == "duplicate"
    assert len(await published(broker)) == 1


async def test_a_different_body_is_not_a_replay(client, broker) -> None:
    for version in ("v1", "v2"):
        body = json.dumps({**PUSH, "ref": f"refs/tags/{version}"}).encode()
        resp = await client.post("/webhooks/github", data=body, headers=headers(body, version))
        assert resp.status == 202
    assert len(await published(broker)) == 2
