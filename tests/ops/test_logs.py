# ruff: noqa: F401, F811 (pytest fixtures imported from other suites)
"""Correlated logs: every line logged while an event is processed (by the runtime, the
handler, or any library code it calls) carries the event's fields in JSON mode and
compactly in text mode, plus span ids when tracing is on; the gateway logs rejections
with reason and source, never the secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bus.middleware import LoggingMiddleware, RetriesMiddleware
from bus.middleware.tracing import TracingMiddleware
from bus.retry import RetryPolicy
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import new_event
from tests.bus.conftest import broker, broker_kind, eventually, make_broker, running
from tests.ops.tracing_support import hex_ids, named, spans
from workers.logs import make_handler

pytestmark = pytest.mark.timeout(60)
FIELDS = ("event_id", "type", "correlationid", "causationid", "subscription", "attempt")


def _capture(fmt: str) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = make_handler(fmt, stream)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    yield from _capture("json")


@pytest.fixture
def text_lines() -> Iterator[io.StringIO]:
    yield from _capture("text")


def _router(calls: list[int]) -> Router:
    router = Router("t")

    @router.subscribe("deployment.started", name="logs.flaky")
    async def flaky(payload, ctx) -> None:
        calls.append(ctx.attempt)
        logging.getLogger("some.library").info("inside the handler")
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")

    return router


def _worker(broker, calls: list[int], *extra) -> Worker:
    policy = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.1, jitter=0.0)
    return Worker(
        broker,
        _router(calls).subscriptions,
        middleware=[*extra, LoggingMiddleware(), RetriesMiddleware(policy)],
    )


def _event():
    cause = new_event("deployment.requested", {"app": "web", "version": "1"})
    return new_event(
        "deployment.started",
        {"app": "web", "version": "1"},
        correlationid="corr-42",
        causationid=cause.id,
    )


async def test_json_lines_about_an_event_carry_its_fields(broker, json_lines) -> None:
    calls: list[int] = []
    ev = _event()
    async with running(_worker(broker, calls)):
        await broker.publish(ev)
        await eventually(lambda: calls == [1, 2])
    lines = [json.loads(x) for x in json_lines.getvalue().splitlines()]
    about = [x for x in lines if x.get("event_id") == ev.id]
    library = [x for x in about if x["logger"] == "some.library"]
    retry = [x for x in about if "retry in" in x["message"]]
    assert [x["attempt"] for x in library] == [1, 2]
    assert len(retry) == 1
    for line in (*library, *retry):
        assert {k: line[k] for k in FIELDS} == {
            "event_id": ev.id,
            "type": "deployment.started",
            "correlationid": "corr-42",
            "causationid": ev.causationid,
            "subscription": "logs.flaky",
            "attempt": line["attempt"],
        }
        assert "trace_id" not in line  # tracing is off
    # Outside a delivery, no event fields leak onto other lines.
    logging.getLogger("some.library").warning("after the worker stopped")
    last = json.loads(json_lines.getvalue().splitlines()[-1])
    assert "event_id" not in last and "subscription" not in last


async def test_text_lines_carry_the_fields_compactly(broker, text_lines) -> None:
    calls: list[int] = []
    ev = _event()
    async with running(_worker(broker, calls)):
        await broker.publish(ev)
        await eventually(lambda: calls == [1, 2])
    lines = [x for x in text_lines.getvalue().splitlines() if "inside the handler" in x]
    assert len(lines) == 2
    assert lines[0].endswith(
        f"[ev={ev.id} type=deployment.started corr=corr-42 cause={ev.causationid}"
        " sub=logs.flaky try=1]"
    )


async def test_with_tracing_on_lines_carry_the_handler_span_ids(broker, json_lines, spans) -> None:
    calls: list[int] = []
    ev = _event()
    async with running(_worker(broker, calls, TracingMiddleware())):
        await broker.publish(ev)
        await eventually(lambda: len(named(spans, "process deployment.started")) == 2)
    lines = [json.loads(x) for x in json_lines.getvalue().splitlines()]
    library = [x for x in lines if x["logger"] == "some.library" and x.get("event_id") == ev.id]
    got = sorted((x["attempt"], x["trace_id"], x["span_id"]) for x in library)
    runs = sorted(
        (s.attributes["codebus.attempt"], *hex_ids(s))
        for s in named(spans, "process deployment.started")
    )
    assert got == runs
