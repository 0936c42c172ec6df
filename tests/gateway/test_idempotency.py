"""Issue 8, C: a 503 says whether the event was not accepted or its outcome is unknown,
and a retry with the same ``Idempotency-Key`` publishes the same event id once."""

from __future__ import annotations

import asyncio
import json

import pytest

from bus.errors import BrokerUnavailable, PublishNacked, PublishOutcomeUnknown, Unroutable
from gateway.replay import Claim
from gateway.routes_events import PublishRequest
from gateway.state import STATE
from tests.gateway.conftest import DEPLOYER_KEY, OPS_KEY, published

DEPLOY = {"type": "deployment.requested", "data": {"app": "shop", "version": "1.0.0"}}


def auth(key: str = OPS_KEY, idem: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return headers


class FlakyBroker:
    """Fails the first ``len(errors)`` publishes with those errors, then delegates. An
    ``outcome unknown`` failure really delivers the event first (the confirm was lost)."""

    def __init__(self, inner, *errors: Exception) -> None:
        self.names = inner.names
        self._inner = inner
        self._errors = list(errors)

    async def publish(self, event, *, headers=None) -> None:
        if self._errors:
            error = self._errors.pop(0)
            if isinstance(error, PublishOutcomeUnknown):
                await self._inner.publish(event)
            raise error
        await self._inner.publish(event)

    async def ping(self) -> None:
        return None


@pytest.mark.parametrize(
    "error",
    [BrokerUnavailable("connection refused"), PublishNacked("nack"), Unroutable("no queue")],
)
async def test_not_accepted_is_said_so(make_client, broker, error) -> None:
    client = await make_client(broker=FlakyBroker(broker, error))
    resp = await client.post("/events", json=DEPLOY, headers=auth(idem="a-1"))
    assert resp.status == 503
    answer = await resp.json()
    assert (answer["error"], answer["accepted"]) == ("unavailable", False)
    assert resp.headers["Retry-After"]
    assert await published(broker) == []


async def test_outcome_unknown_is_said_so_and_the_retry_is_deduplicated(
    make_client, broker
) -> None:
    client = await make_client(broker=FlakyBroker(broker, PublishOutcomeUnknown("no confirm")))
    first = await client.post("/events", json=DEPLOY, headers=auth(idem="release-1.0.0"))
    assert first.status == 503
    answer = await first.json()
    assert (answer["error"], answer["accepted"]) == ("outcome_unknown", "unknown")
    retry = await client.post("/events", json=DEPLOY, headers=auth(idem="release-1.0.0"))
    assert retry.status == 202
    # The broker took both copies; they carry one id, which subscriber inboxes dedupe.
    events = await published(broker)
    assert len(events) == 2 and events[0].id == events[1].id == (await retry.json())["id"]
    assert answer["ids"] == [events[0].id]


async def test_a_confirm_timeout_is_outcome_unknown(make_client, broker) -> None:
    class Stalled(FlakyBroker):
        async def publish(self, event, *, headers=None) -> None:
            await asyncio.sleep(3600)

    client = await make_client(broker=Stalled(broker), publish_timeout=0.1)
    resp = await client.post("/events", json=DEPLOY, headers=auth(idem="k"))
    assert resp.status == 503
    assert (await resp.json())["error"] == "outcome_unknown"


async def test_retry_after_success_is_a_duplicate_not_a_second_event(client, broker) -> None:
    first = await client.post("/events", json=DEPLOY, headers=auth(idem="once"))
    again = await client.post("/events", json=DEPLOY, headers=auth(idem="once"))
    assert (first.status, again.status) == (202, 200)
    assert (await again.json())["status"] == "duplicate"
    assert (await again.json())["id"] == (await first.json())["id"]
    assert len(await published(broker)) == 1


async def test_body_id_is_an_idempotency_key_too(client, broker) -> None:
    body = {**DEPLOY, "id": "once"}
    first = await client.post("/events", json=body, headers=auth())
    same_as_header = await client.post("/events", json=DEPLOY, headers=auth(idem="once"))
    assert (first.status, same_as_header.status) == (202, 200)
    assert len(await published(broker)) == 1


async def test_reusing_a_key_for_another_request_is_refused(client, broker) -> None:
    assert (await client.post("/events", json=DEPLOY, headers=auth(idem="k1"))).status == 202
    other = {"type": "deployment.requested", "data": {"app": "shop", "version": "6.6.6"}}
    resp = await client.post("/events", json=other, headers=auth(idem="k1"))
    assert resp.status == 422
    assert (await resp.json())["fields"] == ["Idempotency-Key"]
    assert len(await published(broker)) == 1


async def test_keys_are_per_api_key(client, broker) -> None:
    a = await client.post("/events", json=DEPLOY, headers=auth(OPS_KEY, "shared"))
    b = await client.post("/events", json=DEPLOY, headers=auth(DEPLOYER_KEY, "shared"))
    assert (a.status, b.status) == (202, 202)
    assert (await a.json())["id"] != (await b.json())["id"]


@pytest.mark.parametrize(
    ("headers", "body", "field"),
    [
        ({"Idempotency-Key": ""}, DEPLOY, "Idempotency-Key"),
        ({"Idempotency-Key": "x" * 201}, DEPLOY, "Idempotency-Key"),
        ({"Idempotency-Key": "a"}, {**DEPLOY, "id": "b"}, "id"),
    ],
)
async def test_bad_idempotency_keys_name_the_field(client, headers, body, field) -> None:
    resp = await client.post("/events", json=body, headers={**auth(), **headers})
    assert resp.status == 400
    assert field in (await resp.json())["fields"]


async def test_a_request_in_flight_makes_its_twin_wait(make_client, broker) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()

    class Slow(FlakyBroker):
        async def publish(self, event, *, headers=None) -> None:
            entered.set()
            await gate.wait()
            await self._inner.publish(event)

    client = await make_client(broker=Slow(broker))
    first = asyncio.create_task(client.post("/events", json=DEPLOY, headers=auth(idem="twin")))
    await entered.wait()  # the first request holds the claim and is publishing
    twin = await client.post("/events", json=DEPLOY, headers=auth(idem="twin"))
    assert twin.status == 409 and (await twin.json())["error"] == "in_progress"
    gate.set()
    assert (await first).status == 202
    assert len(await published(broker)) == 1


async def test_a_claim_left_pending_by_a_dead_process_expires_soon(
    make_client, broker, redis_client, names
) -> None:
    """A process killed between claiming and publishing leaves a pending claim; the
    sender's retry is refused only while it lives (seconds), not for the whole window."""
    from gateway.ids import fingerprint

    client = await make_client(pending_claim_ttl=1)
    state = client.app[STATE]
    key = names.idempotency_key("ops", fingerprint("crashed"))
    body_print = fingerprint(
        json.dumps(PublishRequest.model_validate(DEPLOY).model_dump(exclude={"id"}), sort_keys=True)
    )
    assert await state.replay.claim(key, 86400, body_print) is Claim.NEW  # ... then "crash"
    first = await client.post("/events", json=DEPLOY, headers=auth(idem="crashed"))
    assert first.status == 409
    await asyncio.sleep(1.5)
    retry = await client.post("/events", json=DEPLOY, headers=auth(idem="crashed"))
    assert retry.status == 202
    assert await redis_client.ttl(key) > 3600  # published: the full window from now on


async def test_a_webhook_503_names_the_event_ids_a_retry_will_reuse(make_client, broker) -> None:
    from schemas.webhooks import sign_headers
    from tests.gateway.conftest import NOW, STANDARD_SECRET

    client = await make_client(broker=FlakyBroker(broker, PublishOutcomeUnknown("lost")))
    body = json.dumps(DEPLOY).encode()
    headers = {
        **sign_headers(STANDARD_SECRET, "msg_unknown", int(NOW), body),
        "Content-Type": "application/json",
    }
    first = await client.post("/webhooks/ci", data=body, headers=headers)
    assert first.status == 503
    answer = await first.json()
    assert answer["error"] == "outcome_unknown" and answer["accepted"] == "unknown"
    retry = await client.post("/webhooks/ci", data=body, headers=headers)
    assert retry.status == 202  # the claim was released: the retry is not a "replay"
    assert (await retry.json())["ids"] == answer["ids"]
    events = await published(broker)
    assert [e.id for e in events] == answer["ids"] * 2  # one copy each; inboxes dedupe
