# ruff: noqa: F811 (pytest fixtures imported from other suites)
"""Tracing at the gateway: a SERVER span per request, child of an incoming W3C
``traceparent`` header; a new trace when none (or a bad one) is given; with tracing off
the context still reaches the published events."""

from __future__ import annotations

import re

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from tests.gateway.conftest import (  # noqa: F401 (fixtures)
    DEPLOYER_KEY,
    broker,
    client,
    clock,
    make_client,
    published,
)
from tests.ops.tracing_support import hex_ids, named, spans  # noqa: F401 (fixture)

TP = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

pytestmark = pytest.mark.timeout(60)


def hex_int(h: str) -> int:
    return int(h, 16)


# --- gateway --------------------------------------------------------------------------
async def _post_event(client, headers=None):
    return await client.post(
        "/events",
        json={"type": "deployment.requested", "data": {"app": "web", "version": "1"}},
        headers={"Authorization": f"Bearer {DEPLOYER_KEY}", **(headers or {})},
    )


async def test_gateway_request_span_honours_an_incoming_traceparent(client, broker, spans) -> None:
    resp = await _post_event(client, {"traceparent": PARENT})
    assert resp.status == 202
    server = named(spans, "POST /events")[0]
    pub = named(spans, "publish deployment.requested")[0]
    assert server.kind is SpanKind.SERVER
    assert hex_ids(server)[0] == PARENT.split("-")[1]
    assert server.attributes["http.response.status_code"] == 202
    assert pub.parent is not None and pub.parent.span_id == hex_int(hex_ids(server)[1])
    [event] = await published(broker)
    assert event.traceparent == f"00-{hex_ids(pub)[0]}-{hex_ids(pub)[1]}-01"


async def test_gateway_starts_a_trace_when_none_is_given(client, broker, spans) -> None:
    assert (await _post_event(client, {"traceparent": "garbage"})).status == 202
    server = named(spans, "POST /events")[0]
    assert server.parent is None
    [event] = await published(broker)
    assert event.traceparent is not None and event.traceparent.split("-")[1] == hex_ids(server)[0]


async def test_gateway_with_tracing_off_still_propagates(client, broker) -> None:
    assert (await _post_event(client, {"traceparent": PARENT})).status == 202
    assert (await _post_event(client)).status == 202
    first, second = await published(broker)
    assert first.traceparent == PARENT  # the caller's context, passed on unchanged
    assert second.traceparent is not None and TP.match(second.traceparent)
    assert trace.get_current_span().get_span_context().is_valid is False
