"""V7: sizes, digits and depth bounded at the edge with a 400 naming the limit, for the
publish API, the webhook route and ``codebus publish``."""

from __future__ import annotations

import pytest

from schemas.webhooks import sign_headers
from tests.gateway.conftest import NOW, OPS_KEY, STANDARD_SECRET, published
from tests.workers.test_cli import run

AUTH = {"Authorization": f"Bearer {OPS_KEY}", "Content-Type": "application/json"}


def deploy(extra: str) -> str:
    """A notification whose free-form ``details`` carry ``extra``."""
    return (
        '{"type": "notification.requested", "data": {"channel": "#ops", "title": "t", '
        f'"details": {{"x": {extra}}}}}}}'
    )


@pytest.fixture
async def client(make_client, gateway_config):
    """A gateway whose body limit lets the attack bodies reach the JSON decoder."""
    config = gateway_config.model_copy(update={"max_body_bytes": 1024 * 1024})
    return await make_client(config=config)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


ATTACKS = {
    "5000-digit integer": (deploy("1" + "0" * 5000), "max_number_digits"),
    "100-digit integer": (deploy("9" * 100), "max_number_digits"),
    "huge float": (deploy("1e999"), "max_number_digits"),
    "NaN": (deploy("NaN"), "json"),
    "depth 200": (deploy(nested(200)), "max_json_depth"),
    "depth 600": (deploy(nested(600)), "max_json_depth"),
    "depth 5000": (deploy(nested(5000)), "max_json_depth"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
async def test_publish_api_bounds(client, broker, name) -> None:
    body, limit = ATTACKS[name]
    resp = await client.post("/events", data=body, headers=AUTH)
    assert resp.status == 400, (name, resp.status, await resp.text())
    answer = await resp.json()
    assert answer["error"] == "limit"
    assert limit in answer["detail"]
    assert answer["fields"]
    assert await published(broker) == []


@pytest.mark.parametrize("name", sorted(ATTACKS))
async def test_webhook_route_bounds(client, broker, name) -> None:
    body = ATTACKS[name][0].encode()
    headers = {
        **sign_headers(STANDARD_SECRET, f"msg-{len(body)}-{name[:3]}", int(NOW), body),
        "Content-Type": "application/json",
    }
    resp = await client.post("/webhooks/ci", data=body, headers=headers)
    assert resp.status == 400, (name, resp.status)
    assert (await resp.json())["error"] == "limit"
    assert await published(broker) == []


async def test_depth_within_the_limit_is_accepted(client, broker) -> None:
    resp = await client.post("/events", data=deploy(nested(20)), headers=AUTH)
    assert resp.status == 202, await resp.text()
    assert len(await published(broker)) == 1


@pytest.mark.parametrize("name", ["5000-digit integer", "depth 600", "depth 5000"])
def test_cli_publish_answers_one_line(name) -> None:
    body = ATTACKS[name][0]
    data_json = body[body.index('"data": ') + len('"data": ') : -1]
    out = run("publish", "notification.requested", "--data", data_json)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr[-2000:]
    assert ATTACKS[name][1] in lines[0]
