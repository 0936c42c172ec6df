# ruff: noqa: F811 (pytest fixtures imported from other suites)
"""Tracing in one process: set-up from the OTEL_* variables, the consumer span with its
retry and dead-letter events (on both brokers), the tool span's attributes (never the
arguments), the gateway's request span and traceparent handling, the CLI's traceparent."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from opentelemetry.trace import SpanKind

from bus import deadletters, tracing
from bus.errors import Reject
from bus.middleware.tracing import TracingMiddleware
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import Event, new_event
from schemas.events import DeploymentRequested
from tests.bus.conftest import (  # noqa: F401 (fixtures)
    broker,
    broker_kind,
    eventually,
    fast_policy,
    make_broker,
    middleware_for,
    running,
)
from tests.ops.tracing_support import hex_ids, named, spans  # noqa: F401 (fixture)
from tests.tools.toolbox_helpers import DeployArgs, HttpishServer, make_toolbox
from tests.workers.test_cli import run
from tools.errors import ToolTransientError

TP = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

pytestmark = pytest.mark.timeout(60)


# --- set-up ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_off_unless_the_otel_variables_ask(env, on) -> None:
    assert tracing.configured(env) is on


def test_off_installs_nothing_and_an_unknown_exporter_names_the_variable() -> None:
    assert tracing.setup("codebus-test", {}) is False
    assert not tracing.enabled()
    with pytest.raises(ValueError, match=r"^OTEL_TRACES_EXPORTER: unsupported exporter 'jaeger'"):
        tracing.setup("codebus-test", {"OTEL_TRACES_EXPORTER": "otlp,jaeger"})
    assert not tracing.enabled()


def test_off_the_worker_gets_no_tracing_middleware_and_a_bare_broker() -> None:
    from bus.memory import MemoryBroker
    from schemas.names import DEFAULT_NAMES

    b = MemoryBroker(DEFAULT_NAMES)
    assert tracing.traced(b) is b


# --- consumer spans -------------------------------------------------------------------
async def test_handler_span_is_the_child_of_the_event_and_parents_its_publishes(
    broker, spans
) -> None:
    router = Router("t")
    seen: list[str | None] = []

    @router.subscribe("deployment.requested", name="tr.publisher")
    async def publisher(payload: DeploymentRequested, ctx) -> None:
        await ctx.publish("deployment.started", {"app": payload.app, "version": "1"})

    @router.subscribe("deployment.started", name="tr.sink")
    async def sink(payload, ctx) -> None:
        seen.append(ctx.event.traceparent)

    worker = Worker(
        tracing.TracingBroker(broker), router.subscriptions, middleware=[TracingMiddleware()]
    )
    async with running(worker):
        await broker.publish(
            new_event("deployment.requested", {"app": "a", "version": "1"}, traceparent=PARENT)
        )
        await eventually(lambda: len(named(spans, "process deployment.started")) == 1)
    first = named(spans, "process deployment.requested")[0]
    pub = named(spans, "publish deployment.started")[0]
    second = named(spans, "process deployment.started")[0]
    assert first.kind is SpanKind.CONSUMER and pub.kind is SpanKind.PRODUCER
    assert hex_ids(first)[0] == PARENT.split("-")[1]
    assert first.parent is not None and format(first.parent.span_id, "016x") == PARENT.split("-")[2]
    assert pub.parent is not None and pub.parent.span_id == hex_int(hex_ids(first)[1])
    assert second.parent is not None and second.parent.span_id == hex_int(hex_ids(pub)[1])
    # The published event carries the producer span's traceparent.
    assert seen == [f"00-{hex_ids(pub)[0]}-{hex_ids(pub)[1]}-01"]
    assert first.attributes["codebus.subscription"] == "tr.publisher"
    assert first.attributes["codebus.outcome"] == "done"


def hex_int(h: str) -> int:
    return int(h, 16)


async def test_retries_and_dead_letters_are_span_events(broker, middleware_for, spans) -> None:
    router = Router("t")

    @router.subscribe("deployment.requested", name="tr.flaky")
    async def flaky(payload: DeploymentRequested, ctx) -> None:
        if payload.app == "reject":
            raise Reject("app not allowed here")
        raise RuntimeError("backend down")

    worker = Worker(
        broker, router.subscriptions, middleware=[TracingMiddleware(), *middleware_for()]
    )
    async with running(worker):
        await broker.publish(new_event("deployment.requested", {"app": "flaky", "version": "1"}))
        await broker.publish(new_event("deployment.requested", {"app": "reject", "version": "1"}))
        await eventually(
            lambda: (
                len([s for s in spans.get_finished_spans() if s.name.startswith("process")]) == 4
            )
        )
    runs = [s for s in spans.get_finished_spans() if s.name == "process deployment.requested"]
    events = sorted(
        (s.attributes["codebus.attempt"], [e.name for e in s.events], s.status.status_code.name)
        for s in runs
    )
    # flaky: attempts 1, 2 retried, 3 dead-lettered (max 3); reject: dead-lettered at once.
    assert events == [
        (1, ["dead_letter"], "ERROR"),
        (1, ["retry"], "ERROR"),
        (2, ["retry"], "ERROR"),
        (3, ["dead_letter"], "ERROR"),
    ]
    retry = next(e for s in runs for e in s.events if e.name == "retry")
    assert retry.attributes is not None and "backend down" in str(
        retry.attributes["codebus.reason"]
    )
    assert len(await deadletters.list_dead_letters(broker)) == 2


async def test_an_invalid_event_gets_a_dead_letter_span(broker, spans) -> None:
    router = Router("t")

    @router.subscribe("deployment.requested", name="tr.invalid")
    async def never(payload: DeploymentRequested, ctx) -> None:
        raise AssertionError("not reached")

    worker = Worker(broker, router.subscriptions, middleware=[TracingMiddleware()])
    async with running(worker):
        bad = Event.model_validate(
            {
                **new_event("deployment.requested", {"app": "a", "version": "1"}).model_dump(),
                "data": {"app": 3},
            }
        )
        await broker.publish(bad)
        await eventually(lambda: len(named(spans, "process deployment.requested")) == 1)
    span = named(spans, "process deployment.requested")[0]
    assert [e.name for e in span.events] == ["dead_letter"]
    assert span.events[0].attributes["codebus.dead_letter.kind"] == "invalid"


# --- tool spans -----------------------------------------------------------------------
async def test_tool_span_has_outcome_cache_and_breaker_but_never_arguments(
    redis_client, names, spans
) -> None:
    server = HttpishServer()
    toolbox = make_toolbox(redis_client, names, server)
    async with toolbox:
        await toolbox.call_tool("httpish.get_status", {"service": "web"})
        await toolbox.call_tool("httpish.get_status", {"service": "web"})  # cached
        await toolbox.call_tool(
            "httpish.deploy", DeployArgs(image_tag="web:1", registry_password="hunter2-secret")
        )
        server.plan.extend([ToolTransientError("flap", tool="x")] * 3)
        with pytest.raises(ToolTransientError):
            await toolbox.call_tool("httpish.get_version", {"service": "web"})
    status = named(spans, "tool httpish.get_status")
    assert [s.attributes["codebus.tool.cache_hit"] for s in status] == [False, True]
    assert {s.attributes["codebus.tool.outcome"] for s in status} == {"ok"}
    deploy = named(spans, "tool httpish.deploy")[0]
    assert deploy.attributes["codebus.tool.breaker_state"] == "closed"
    flaky = named(spans, "tool httpish.get_version")[0]
    assert flaky.attributes["codebus.tool.outcome"] == "transient"
    assert flaky.attributes["codebus.tool.attempts"] == 3
    assert flaky.status.status_code.name == "ERROR"
    for s in spans.get_finished_spans():
        text = json.dumps(dict(s.attributes or {})) + json.dumps(
            [dict(e.attributes or {}) for e in s.events]
        )
        assert "hunter2" not in text and "web:1" not in text and '"web"' not in text


async def test_tool_calls_make_no_span_when_tracing_is_off(redis_client, names) -> None:
    toolbox = make_toolbox(redis_client, names)
    call = toolbox._guards[1]
    assert type(call).__name__ == "TracingGuard"
    assert not call.enabled(None)  # type: ignore[arg-type]


# --- CLI ------------------------------------------------------------------------------
async def test_cli_publish_starts_or_joins_a_trace(amqp_url, names) -> None:
    from tests.workers.test_cli import _inspect_and_clean

    env = {"CODEBUS_AMQP_URL": amqp_url, "CODEBUS_PREFIX": names.prefix}
    assert (await asyncio.to_thread(run, "topology", "--declare", env=env)).returncode == 0
    data = '{"app": "web", "version": "1"}'
    try:
        joined = await asyncio.to_thread(
            run, "publish", "deployment.requested", "--data", data, "--traceparent", PARENT, env=env
        )
        fresh = await asyncio.to_thread(
            run, "publish", "deployment.requested", "--data", data, env=env
        )
        bad = await asyncio.to_thread(
            run, "publish", "deployment.requested", "--data", data, "--traceparent", "00-x", env=env
        )
        assert joined.returncode == 0 and fresh.returncode == 0, joined.stderr + fresh.stderr
        assert bad.returncode != 0 and "--traceparent" in bad.stderr
        from bus.rabbitmq import RabbitBroker

        b = RabbitBroker(amqp_url, names=names)
        await b.connect()
        try:
            got = []
            for _ in range(2):
                d = await b.get(names.subscription_queue("deploy.requested"))
                assert d is not None
                got.append(Event.from_json(d.message.body))
                await d.ack()
        finally:
            await b.close()
    finally:
        await _inspect_and_clean(amqp_url, names)
    by_id = {e.id: e for e in got}
    assert by_id[joined.stdout.strip()].traceparent == PARENT
    tp = by_id[fresh.stdout.strip()].traceparent
    assert tp is not None and TP.match(tp) and tp != PARENT


def test_an_unknown_exporter_stops_the_worker_with_one_config_line() -> None:
    out = run(
        "worker",
        "deploy",
        env={"OTEL_TRACES_EXPORTER": "zipkin", "CODEBUS_FAKE_TOOLS": "true"},
    )
    assert out.returncode == 3
    assert out.stderr.strip().splitlines() == [
        "Error: OTEL_TRACES_EXPORTER: unsupported exporter 'zipkin'"
        " (codebus ships otlp, console, or none)"
    ]
