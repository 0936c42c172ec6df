# ruff: noqa: F401, F811 (pytest fixtures imported from other suites)
"""The gateway logs each rejection (401, 403, 409, 413) with its reason, the client's
address and the webhook source, never the secret; a flood is rate-limited."""

from __future__ import annotations

import json

import pytest

from schemas.webhooks import sign_headers
from tests.gateway.conftest import (
    DEPLOYER_KEY,
    NOW,
    STANDARD_SECRET,
    broker,
    client,
    clock,
    make_client,
)
from tests.ops.test_logs import json_lines

pytestmark = pytest.mark.timeout(60)


async def test_gateway_logs_rejections_with_reason_and_source_never_the_secret(
    client, json_lines
) -> None:
    body = json.dumps({"type": "deployment.requested", "data": {"app": "a", "version": "1"}})
    signed = sign_headers(STANDARD_SECRET, "msg_1", int(NOW), body.encode())
    ct = {"content-type": "application/json"}
    bad_sig = {**signed, "webhook-signature": "v1,AAAA" + STANDARD_SECRET[6:20]}
    assert (await client.post("/webhooks/ci", data=body, headers={**bad_sig, **ct})).status == 401
    assert (await client.post("/webhooks/ci", data=body, headers={**signed, **ct})).status == 202
    assert (await client.post("/webhooks/ci", data=body, headers={**signed, **ct})).status == 409
    big = "x" * 5000
    assert (await client.post("/webhooks/ci", data=big, headers={**signed, **ct})).status == 413
    forbidden = await client.post(
        "/events",
        json={"type": "notification.requested", "data": {"title": "t"}},
        headers={"Authorization": f"Bearer {DEPLOYER_KEY}"},
    )
    assert forbidden.status == 403
    output = json_lines.getvalue()
    rejected = [json.loads(x) for x in output.splitlines() if "rejected" in x]
    got = {(x["status"], x["reason"], x.get("source"), x["remote"]) for x in rejected}
    assert {(s, src) for s, _, src, _ in got} == {
        (401, "ci"),
        (409, "ci"),
        (413, "ci"),
        (403, None),
    }
    assert all(remote == "127.0.0.1" for *_, remote in got)
    assert STANDARD_SECRET not in output and STANDARD_SECRET[6:20] not in output
    assert DEPLOYER_KEY not in output


async def test_rejection_lines_are_rate_limited_per_client_and_reason(client, json_lines) -> None:
    for _ in range(20):
        resp = await client.post(
            "/events", json={}, headers={"Authorization": "Bearer wrong-key-123456789"}
        )
        assert resp.status == 401
    rejected = [x for x in json_lines.getvalue().splitlines() if "rejected" in x]
    assert len(rejected) == 1
    assert "wrong-key" not in json_lines.getvalue()
