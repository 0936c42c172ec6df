"""The ``prometheus-monitoring`` adapter against the real prometheus binary, plus the fake.

The real-binary tests share one Prometheus (module scope: it takes a few seconds to
start and scrape). Without the binary they skip locally and fail in CI. HTTP error
mapping and auth headers are checked against a small aiohttp stand-in, because a real
Prometheus does not answer 503/429 on demand.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import BaseModel, ValidationError

from schemas.tools.prometheus import (
    PrometheusQueryArgs,
    PrometheusQueryRangeArgs,
    PrometheusTargetsArgs,
)
from tests.helpers import assert_names_field
from tests.tools.adapters.prom_process import (
    DEAD_JOB,
    JOB,
    RunningPrometheus,
    free_port,
    prometheus_binary,
    running_prometheus,
)
from tools.adapters.prometheus import PrometheusConfig, PrometheusServer
from tools.errors import ToolFailed, ToolTimeout, ToolTransientError
from tools.fakes.prometheus import FakePrometheusServer

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


async def call(server: Any, tool: str, args: BaseModel) -> Any:
    """Call a bound tool by its short name."""
    return await {t.spec.tool: t for t in server.tools()}[tool].call(args)


# ---- the real binary ---------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningPrometheus]:
    """A running Prometheus scraping the test target; skipped locally if not installed."""
    binary = prometheus_binary()
    if binary is None:
        msg = "prometheus binary not found (apt-get install prometheus)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    async with running_prometheus(binary, tmp_path_factory.mktemp("prometheus")) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def prom(prometheus: RunningPrometheus) -> AsyncIterator[PrometheusServer]:
    """The adapter pointed at the real Prometheus."""
    server = PrometheusServer(PrometheusConfig(base_url=prometheus.url, timeout=5))
    yield server
    await server.close()


@pytest.mark.prometheus
@MODULE_LOOP
async def test_query_returns_the_scraped_series(prom: PrometheusServer) -> None:
    result = await call(prom, "prometheus_query", PrometheusQueryArgs(query="codebus_test_up"))
    assert result.result_type == "vector"
    assert len(result.series) == 1
    series = result.series[0]
    assert series.metric["__name__"] == "codebus_test_up"
    assert series.metric["job_label"] == "x" and series.metric["job"] == JOB
    assert series.value.value == 1.0
    assert abs(series.value.timestamp - time.time()) < 60


@pytest.mark.prometheus
@MODULE_LOOP
async def test_query_counter_and_scalar(
    prom: PrometheusServer, prometheus: RunningPrometheus
) -> None:
    counter = await call(
        prom, "prometheus_query", PrometheusQueryArgs(query="codebus_test_requests_total")
    )
    value = counter.series[0].value.value
    assert value > 0 and value % 5 == 0 and value <= 5 * len(prometheus.scrapes)
    scalar = await call(prom, "prometheus_query", PrometheusQueryArgs(query="1 + 1"))
    assert scalar.result_type == "scalar" and scalar.series[0].value.value == 2.0
    past = await call(
        prom,
        "prometheus_query",
        PrometheusQueryArgs(query="codebus_test_up", time=datetime.now(UTC) - timedelta(days=1)),
    )
    assert past.series == []  # nothing was scraped a day ago: the time was sent


@pytest.mark.prometheus
@MODULE_LOOP
async def test_query_range_returns_points_over_time(prom: PrometheusServer) -> None:
    # Let a few scrapes land so the range holds several distinct samples.
    end = datetime.now(UTC)
    deadline = time.monotonic() + 20
    while True:
        end = datetime.now(UTC)
        args = PrometheusQueryRangeArgs(
            query="codebus_test_requests_total",
            start=end - timedelta(seconds=30),
            end=end,
            step="1s",
        )
        result = await call(prom, "prometheus_query_range", args)
        points = result.series[0].values if result.series else []
        if len({p.value for p in points}) >= 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert result.result_type == "matrix"
    assert len(points) >= 3
    stamps = [p.timestamp for p in points]
    assert all(b - a == pytest.approx(1.0) for a, b in itertools.pairwise(stamps))
    values = [p.value for p in points]
    assert values == sorted(values) and len(set(values)) >= 3  # the counter really grew


@pytest.mark.prometheus
@MODULE_LOOP
async def test_targets_report_health_and_errors(
    prom: PrometheusServer, prometheus: RunningPrometheus
) -> None:
    result = await call(prom, "prometheus_targets", PrometheusTargetsArgs())
    by_job = {t.job: t for t in result.targets}
    up = by_job[JOB]
    assert (up.health, up.instance, up.last_error) == ("up", prometheus.target, "")
    assert up.scrape_url == f"http://{prometheus.target}/metrics"
    assert up.state == "active" and up.labels["job"] == JOB

    deadline = time.monotonic() + 20
    while by_job[DEAD_JOB].health != "down" and time.monotonic() < deadline:
        await asyncio.sleep(0.5)  # the dead target's first scrape may still be pending
        result = await call(prom, "prometheus_targets", PrometheusTargetsArgs())
        by_job = {t.job: t for t in result.targets}
    dead = by_job[DEAD_JOB]
    assert dead.health == "down" and "connection refused" in dead.last_error
    assert (result.up, result.down) == (1, 1)

    only_down = await call(prom, "prometheus_targets", PrometheusTargetsArgs(health="down"))
    assert [t.job for t in only_down.targets] == [DEAD_JOB]
    by_name = await call(prom, "prometheus_targets", PrometheusTargetsArgs(job=JOB))
    assert [t.instance for t in by_name.targets] == [prometheus.target]


@pytest.mark.prometheus
@MODULE_LOOP
async def test_bad_promql_is_a_permanent_failure(prom: PrometheusServer) -> None:
    with pytest.raises(ToolFailed) as err:
        await call(prom, "prometheus_query", PrometheusQueryArgs(query="sum(rate(x[5m]"))
    assert err.value.status == 400
    assert "bad_data" in str(err.value) and "parse error" in str(err.value)
    assert err.value.tool == "prometheus-monitoring.prometheus_query"
    with pytest.raises(ToolFailed, match="parse error"):
        now = datetime.now(UTC)
        await call(
            prom,
            "prometheus_query_range",
            PrometheusQueryRangeArgs(
                query="up{", start=now - timedelta(minutes=1), end=now, step=15
            ),
        )


# ---- HTTP mapping and auth against a stand-in --------------------------------------------


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[list[web.Request], list[tuple[int, Any]], str]]:
    """An aiohttp app answering queued (status, JSON body) pairs and recording requests."""
    seen: list[web.Request] = []
    answers: list[tuple[int, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        await request.post()
        seen.append(request)
        status, body = answers.pop(0)
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield seen, answers, f"http://127.0.0.1:{port}/prom/"
    await runner.cleanup()


OK_VECTOR = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [{"metric": {"job": "a"}, "value": [1700000000.5, "NaN"]}],
    },
    "warnings": ["slow"],
}


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            503,
            {"status": "error", "errorType": "timeout", "error": "query timed out"},
            ToolTransientError,
        ),
        (429, "too many requests", ToolTransientError),
        (500, {"status": "error", "errorType": "internal", "error": "boom"}, ToolTransientError),
        (422, {"status": "error", "errorType": "execution", "error": "many-to-many"}, ToolFailed),
        (404, "404 page not found", ToolFailed),
    ],
)
async def test_http_errors_are_mapped(stand_in: Any, status: int, body: Any, error: type) -> None:
    _, answers, url = stand_in
    answers.append((status, body))
    server = PrometheusServer(PrometheusConfig(base_url=url))
    with pytest.raises(error) as err:
        await call(server, "prometheus_query", PrometheusQueryArgs(query="up"))
    await server.close()
    assert type(err.value) is error and err.value.status == status
    expected = body["error"] if isinstance(body, dict) else body
    assert expected in str(err.value)


async def test_auth_headers_path_prefix_and_values(stand_in: Any) -> None:
    seen, answers, url = stand_in
    answers.extend([(200, OK_VECTOR), (200, OK_VECTOR)])
    bearer = PrometheusServer(PrometheusConfig(base_url=url, bearer_token="s3cret"))
    result = await call(
        bearer, "prometheus_query", PrometheusQueryArgs(query="up", time=1700000000)
    )
    await bearer.close()
    request = seen[-1]
    assert request.path == "/prom/api/v1/query" and request.method == "POST"
    assert request.headers["Authorization"] == "Bearer s3cret"
    form = await request.post()
    assert (form["query"], form["time"], form["timeout"]) == ("up", "1700000000.000", "10s")
    assert result.warnings == ["slow"]
    assert result.series[0].value.timestamp == 1700000000.5
    assert result.series[0].value.value != result.series[0].value.value  # NaN survives

    basic = PrometheusServer(PrometheusConfig(base_url=url, username="u", password="p"))
    await call(basic, "prometheus_query", PrometheusQueryArgs(query="up"))
    await basic.close()
    assert seen[-1].headers["Authorization"] == aiohttp.BasicAuth("u", "p").encode()


async def test_slow_prometheus_is_a_timeout() -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response(OK_VECTOR)

    app = web.Application()
    app.router.add_post("/api/v1/query", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server = PrometheusServer(PrometheusConfig(base_url=f"http://127.0.0.1:{port}", timeout=0.2))
    try:
        with pytest.raises(ToolTimeout, match=r"did not answer within 0\.2s"):
            await call(server, "prometheus_query", PrometheusQueryArgs(query="up"))
    finally:
        await server.close()
        await runner.cleanup()


async def test_unreachable_prometheus_is_transient() -> None:
    server = PrometheusServer(PrometheusConfig(base_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ToolTransientError, match="cannot reach Prometheus"):
        await call(server, "prometheus_targets", PrometheusTargetsArgs())
    await server.close()


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (PrometheusQueryArgs, {"query": "  "}, "query"),
        (PrometheusQueryArgs, {"query": "up", "time": "yesterday"}, "time"),
        (PrometheusQueryRangeArgs, {"query": "up", "start": 10, "end": 0, "step": 1}, "end"),
        (PrometheusQueryRangeArgs, {"query": "up", "start": 0, "end": 10, "step": "5x"}, "step"),
        (PrometheusQueryRangeArgs, {"query": "up", "start": 0, "end": 10**6, "step": 1}, "step"),
        (PrometheusTargetsArgs, {"state": "sleeping"}, "state"),
    ],
)
def test_bad_arguments_name_the_field(
    model: type[BaseModel], data: dict[str, Any], field: str
) -> None:
    assert_names_field(model, data, field)


def test_config_rejects_two_auth_methods() -> None:
    with pytest.raises(ValidationError, match="either bearer_token or username/password"):
        PrometheusConfig(base_url="http://x", bearer_token="t", username="u", password="p")


# ---- the fake ----------------------------------------------------------------------------


def test_fake_has_the_same_tools_and_models() -> None:
    def shape(server: Any) -> dict[str, Any]:
        return {
            t.spec.name: (t.spec.args_model, t.spec.result_model, t.spec.read_only)
            for t in server.tools()
        }

    real = PrometheusServer(PrometheusConfig(base_url="http://127.0.0.1:1"))
    assert shape(FakePrometheusServer()) == shape(real)
    assert set(shape(real)) == {
        "prometheus-monitoring.prometheus_query",
        "prometheus-monitoring.prometheus_query_range",
        "prometheus-monitoring.prometheus_targets",
    }
    assert all(read_only for _, _, read_only in shape(real).values())


async def test_fake_answers_canned_series_and_errors() -> None:
    fake = FakePrometheusServer()
    fake.add_series('up{job="web"}', {"job": "web", "instance": "a"}, [1, 0, 1])
    fake.set_error("sum(", "parse error: unclosed left parenthesis")
    fake.add_target("web", "a:80")
    fake.add_target("db", "b:5432", health="down", last_error="connection refused")

    now = await call(fake, "prometheus_query", PrometheusQueryArgs(query='up{job="web"}'))
    assert [(s.metric["instance"], s.value.value) for s in now.series] == [("a", 1.0)]
    empty = await call(fake, "prometheus_query", PrometheusQueryArgs(query="nothing"))
    assert empty.result_type == "vector" and empty.series == []
    start = datetime(2024, 1, 1, tzinfo=UTC)
    span = await call(
        fake,
        "prometheus_query_range",
        PrometheusQueryRangeArgs(
            query='up{job="web"}', start=start, end=start + timedelta(minutes=4), step="1m"
        ),
    )
    assert [p.value for p in span.series[0].values] == [1, 0, 1, 1, 0]
    assert span.series[0].values[1].timestamp == start.timestamp() + 60
    with pytest.raises(ToolFailed, match="unclosed left parenthesis") as err:
        await call(fake, "prometheus_query", PrometheusQueryArgs(query="sum("))
    assert err.value.status == 400
    down = await call(fake, "prometheus_targets", PrometheusTargetsArgs(health="down"))
    assert [(t.job, t.last_error) for t in down.targets] == [("db", "connection refused")]
    assert (down.up, down.down) == (0, 1)
    fake.fail_next("prometheus_targets", ToolTransientError("down", status=503))
    with pytest.raises(ToolTransientError):
        await call(fake, "prometheus_targets", PrometheusTargetsArgs())
