"""V2 and V3: no sender can choose, predict or reuse another sender's event id or
correlation id (the gateway mints them, keyed by the credential that authenticated)."""

from __future__ import annotations

import json
import uuid

from schemas.webhooks import github_signature, sign_headers
from tests.gateway.conftest import (
    DEPLOYER_KEY,
    GITHUB_SECRET,
    NOW,
    OPS_KEY,
    STANDARD_SECRET,
    published,
)

#: The namespace the gateway once used for webhook ids; it is public (in git history).
OLD_PUBLIC_NAMESPACE = uuid.UUID("0b3f7a51-62d4-4f0e-8a7e-2d6c9c1f4e10")
DEPLOY = {"type": "deployment.requested", "data": {"app": "shop", "version": "1.0.0"}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def predicted(kind: str, source: str, delivery: str) -> str:
    return str(uuid.uuid5(OLD_PUBLIC_NAMESPACE, "\x1f".join((kind, source, delivery))))


async def test_a_key_cannot_preclaim_a_future_github_event_id(client, broker) -> None:
    delivery = str(uuid.uuid4())
    guesses = {predicted("github", "github", delivery), delivery}
    for guess in guesses:
        body = {**DEPLOY, "id": guess}
        assert (await client.post("/events", json=body, headers=bearer(DEPLOYER_KEY))).status == 202
    attacker_ids = {e.id for e in await published(broker)}
    assert not attacker_ids & guesses  # the caller's id is never used as is

    payload = json.dumps({"ref": "refs/tags/v2.0.0", "repository": {"name": "shop"}}).encode()
    headers = {
        "X-Hub-Signature-256": github_signature(GITHUB_SECRET, payload),
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }
    resp = await client.post("/webhooks/github", data=payload, headers=headers)
    assert resp.status == 202
    [real] = await published(broker)
    assert real.id not in attacker_ids and real.id not in guesses


async def test_a_key_cannot_preclaim_a_standard_webhook_id(client, broker) -> None:
    msg_id = "msg_future_1"
    guess = predicted("standard", "ci", msg_id)
    await client.post("/events", json={**DEPLOY, "id": guess}, headers=bearer(DEPLOYER_KEY))
    [attacker] = await published(broker)
    body = json.dumps(DEPLOY).encode()
    headers = {
        **sign_headers(STANDARD_SECRET, msg_id, int(NOW), body),
        "Content-Type": "application/json",
    }
    assert (await client.post("/webhooks/ci", data=body, headers=headers)).status == 202
    [real] = await published(broker)
    assert real.id != attacker.id and real.id != guess


async def test_two_keys_with_the_same_id_get_different_event_ids(client, broker) -> None:
    for key in (DEPLOYER_KEY, OPS_KEY):
        body = {**DEPLOY, "id": "release-42"}
        assert (await client.post("/events", json=body, headers=bearer(key))).status == 202
    first, second = await published(broker)
    assert first.id != second.id
    assert "release-42" not in (first.id, second.id)


async def test_correlation_ids_are_scoped_to_the_key(client, broker) -> None:
    """V3: a second key reusing a CI deployment's correlation id does not join its
    workflow; the same key reusing it does (tracing across its own requests)."""
    victim = await client.post(
        "/events", json={**DEPLOY, "correlationid": "ci-run-7"}, headers=bearer(OPS_KEY)
    )
    again = await client.post(
        "/events", json={**DEPLOY, "correlationid": "ci-run-7"}, headers=bearer(OPS_KEY)
    )
    attacker = await client.post(
        "/events",
        json={**DEPLOY, "correlationid": (await victim.json())["correlationid"]},
        headers=bearer(DEPLOYER_KEY),
    )
    attacker_raw = await client.post(
        "/events", json={**DEPLOY, "correlationid": "ci-run-7"}, headers=bearer(DEPLOYER_KEY)
    )
    for resp in (victim, again, attacker, attacker_raw):
        assert resp.status == 202
    v, v2, a, a2 = await published(broker)
    assert v.correlationid == v2.correlationid != "ci-run-7"
    assert a.correlationid != v.correlationid
    assert a2.correlationid != v.correlationid


async def test_without_a_correlation_id_the_event_starts_its_own(client, broker) -> None:
    resp = await client.post("/events", json=DEPLOY, headers=bearer(OPS_KEY))
    [event] = await published(broker)
    assert event.correlationid == event.id == (await resp.json())["id"]
