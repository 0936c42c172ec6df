"""V4 (the gateway's part): an API key limited to some apps / environments cannot aim a
deployment elsewhere; the 403 names the field."""

from __future__ import annotations

import pytest

from schemas.gateway_config import GatewayConfig
from schemas.webhooks import hash_api_key
from tests.gateway.conftest import config_document, published

CI_KEY = "key-ci-limited-0123456789"


@pytest.fixture
async def client(make_client):
    doc = config_document()
    doc["api_keys"].append(
        {
            "name": "ci-shop",
            "sha256": hash_api_key(CI_KEY),
            "scopes": ["deployment.requested"],
            "apps": ["shop", "shop-*"],
            "environments": ["staging", "production"],
        }
    )
    return await make_client(config=GatewayConfig.model_validate(doc))


def deploy(**data: str) -> dict[str, object]:
    return {"type": "deployment.requested", "data": {"version": "1.0.0", **data}}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"app": "shop", "environment": "kube-system"}, "data.environment"),
        ({"app": "billing", "environment": "staging"}, "data.app"),
        ({"app": "shopping", "environment": "staging"}, "data.app"),
    ],
)
async def test_out_of_scope_targets_are_forbidden(client, broker, data, field) -> None:
    resp = await client.post("/events", json=deploy(**data), headers={"X-API-Key": CI_KEY})
    assert resp.status == 403
    answer = await resp.json()
    assert answer["fields"] == [field]
    assert field.split(".")[1] in answer["detail"]
    assert await published(broker) == []


@pytest.mark.parametrize(
    "data",
    [{"app": "shop", "environment": "staging"}, {"app": "shop-api"}],  # default: production
)
async def test_in_scope_targets_are_published(client, broker, data) -> None:
    resp = await client.post("/events", json=deploy(**data), headers={"X-API-Key": CI_KEY})
    assert resp.status == 202, await resp.text()
    assert len(await published(broker)) == 1


def test_empty_limits_are_refused() -> None:
    doc = config_document()
    doc["api_keys"][0]["apps"] = []
    with pytest.raises(ValueError, match="apps"):
        GatewayConfig.model_validate(doc)
