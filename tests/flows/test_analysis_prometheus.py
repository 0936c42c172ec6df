"""Analysis end to end: the real prometheus binary scrapes a target whose error rate the
test controls, and metrics are measured through ``Toolbox.call_tool`` (with Redis behind
its cache and breaker) on the real clock, as the flow engine would schedule them.

Without the binary the tests skip locally and fail in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from flows.analysis import analysis_result, measure, next_due
from schemas.analysis import AnalysisResult, AnalysisTemplate, Measurement
from schemas.names import Names
from tests.reports import report
from tests.tools.adapters.prom_process import prometheus_binary, prometheus_process
from tools.adapters.prometheus import PrometheusConfig, PrometheusServer
from tools.config import ToolboxConfig
from tools.toolbox import Toolbox

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")
pytestmark = [pytest.mark.prometheus, pytest.mark.redis]

JOB = "codebus-analysis"
WINDOW = "5s"  # scrapes every second: about five samples per rate window, slack for a slow CI
ERROR_RATE = (
    'sum(rate(http_requests_total{app="{{args.app}}", code=~"5.."}[' + WINDOW + "]))\n"
    '  / sum(rate(http_requests_total{app="{{args.app}}"}[' + WINDOW + "]))"
)


@dataclass
class Target:
    """A /metrics endpoint: each scrape adds 100 requests per app, ``ratio`` of them 5xx."""

    ratios: dict[str, float]
    totals: dict[str, tuple[int, int]] = field(default_factory=dict)

    def exposition(self) -> str:
        lines = ["# TYPE http_requests_total counter"]
        for app, ratio in self.ratios.items():
            ok, failed = self.totals.get(app, (0, 0))
            errors = round(100 * ratio)
            ok, failed = ok + 100 - errors, failed + errors
            self.totals[app] = (ok, failed)
            lines.append(f'http_requests_total{{app="{app}",code="200"}} {ok}')
            lines.append(f'http_requests_total{{app="{app}",code="500"}} {failed}')
        return "\n".join(lines) + "\n"


@dataclass
class Running:
    url: str
    target: Target


@contextlib.asynccontextmanager
async def _serve(target: Target) -> AsyncIterator[int]:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=target.exposition(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def _until(check: Any, what: str, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, ValueError, KeyError):
                if await check(session):
                    return
            if time.monotonic() > deadline:
                tail = log.read_bytes()[-2000:].decode(errors="replace")  # noqa: ASYNC240
                raise RuntimeError(f"{what} timed out; prometheus log:\n{tail}")
            await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """Prometheus scraping the controlled target every second, with rates ready."""
    binary = prometheus_binary()
    if binary is None:
        msg = "prometheus binary not found (apt-get install prometheus)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    workdir = tmp_path_factory.mktemp("prometheus-analysis")
    target = Target(ratios={"good": 0.01, "bad": 0.2, "web": 0.01})
    async with (
        _serve(target) as target_port,
        prometheus_process(binary, workdir, {JOB: f"127.0.0.1:{target_port}"}) as (url, log),
    ):

        async def rates_ready(session: aiohttp.ClientSession) -> bool:
            query = f'rate(http_requests_total{{app="good"}}[{WINDOW}])'
            async with session.get(f"{url}/api/v1/query", params={"query": query}) as resp:
                return len((await resp.json())["data"]["result"]) == 2

        await _until(rates_ready, "the first rates of the target", log)
        yield Running(url=url, target=target)


@pytest_asyncio.fixture(loop_scope="module")
async def call_tool(prometheus: Running, redis_url: str, names: Names) -> AsyncIterator[Any]:
    """``Toolbox.call_tool`` as the deploy role, with the cache and breaker on in Redis."""
    import redis.asyncio as aioredis

    # A client of this module's loop (the target must keep serving while tests run).
    client = aioredis.Redis.from_url(redis_url)
    config = ToolboxConfig.model_validate({"roles": {"deployer": ["prometheus-monitoring.*"]}})
    server = PrometheusServer(PrometheusConfig(base_url=prometheus.url, timeout=5))
    try:
        async with Toolbox([server], redis=client, config=config, names=names) as toolbox:
            yield functools.partial(toolbox.call_tool, role="deployer")
    finally:
        keys = [k async for k in client.scan_iter(match=f"{names.prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def error_rate(**fields: Any) -> AnalysisTemplate:
    metric = {
        "name": "error_rate",
        "query": ERROR_RATE,
        "interval": 1,
        "count": 3,
        "success_condition": "result[0] <= 0.05",
        "failure_condition": "result[0] > 0.05",
        **fields,
    }
    return AnalysisTemplate.model_validate({"metrics": [metric]})


async def run(
    template: AnalysisTemplate,
    call_tool: Any,
    args: dict[str, str],
    *,
    after_each: Any = None,
    seconds: float = 30,
) -> tuple[AnalysisResult, dict[str, list[Measurement]]]:
    """Measure each metric when it is due (real clock) until the run is decided."""
    started = time.time()
    taken: dict[str, list[Measurement]] = {m.name: [] for m in template.metrics}
    while time.time() - started < seconds:
        due = [(next_due(m, taken[m.name], started), m) for m in template.metrics]
        pending = [(at, m) for at, m in due if at is not None]
        if not pending:
            break
        at, spec = min(pending, key=lambda pair: pair[0])
        await asyncio.sleep(max(0.0, at - time.time()))
        taken[spec.name].append(await measure(call_tool, spec, args, time.time()))
        if after_each is not None:
            after_each(taken[spec.name][-1])
        result = analysis_result(template, taken, finished=False)
        if result.phase != "running":
            return result, taken
    raise AssertionError(f"analysis still running after {seconds}s: {taken}")


@MODULE_LOOP
async def test_a_healthy_release_is_successful(call_tool: Any) -> None:
    result, taken = await run(error_rate(), call_tool, {"app": "good"})
    assert result.phase == "successful"
    values = [m.value for m in taken["error_rate"]]
    assert [m.phase for m in taken["error_rate"]] == ["successful"] * 3
    assert all(isinstance(v, float) and v == pytest.approx(0.01, abs=0.005) for v in values)
    assert result.metrics[0].count == 3
    shown = [round(v, 4) for v in values if isinstance(v, float)]
    report("analysis-prometheus-successful", f"error_rate values {shown}")


@MODULE_LOOP
async def test_a_breach_fails_with_evidence(prometheus: Running, call_tool: Any) -> None:
    """Healthy first; then the test raises the error rate and the metric fails."""
    phases: list[str] = []

    def breach_after_first(measurement: Measurement) -> None:
        phases.append(measurement.phase)
        prometheus.target.ratios["web"] = 0.3  # later scrapes carry 30 % errors

    template = error_rate(count=30, failure_limit=1)
    result, taken = await run(template, call_tool, {"app": "web"}, after_each=breach_after_first)
    assert phases[0] == "successful"  # before the breach
    assert result.phase == "failed" and result.decided_by == "error_rate"
    last = taken["error_rate"][-1]
    assert isinstance(last.value, float) and last.value > 0.05
    assert result.message == (
        f"error_rate: query `{' '.join(last.query.split())}` = {last.value:.4g}: "
        "failure_condition `result[0] > 0.05` is true -> failed; failed 2 > failure_limit 1"
    )
    assert 'app="web"' in last.query and "\n" not in result.message
    report(
        "analysis-prometheus-breach",
        f"phases {[m.phase for m in taken['error_rate']]} "
        f"values {[round(m.value, 4) for m in taken['error_rate'] if isinstance(m.value, float)]}",
    )


@MODULE_LOOP
async def test_no_data_is_inconclusive(call_tool: Any) -> None:
    result, taken = await run(error_rate(count=None, interval=None), call_tool, {"app": "ghost"})
    assert result.phase == "inconclusive"
    (only,) = taken["error_rate"]
    assert only.value is None and "no series (no data); no_data policy is inconclusive" in (
        only.message
    )
    assert "inconclusive 1 > inconclusive_limit 0" in result.message


@MODULE_LOOP
async def test_bad_promql_is_an_error_not_an_exception(call_tool: Any) -> None:
    template = error_rate(query="sum(rate(http_requests_total[1m]", consecutive_error_limit=0)
    result, taken = await run(template, call_tool, {})
    assert result.phase == "error"
    assert "parse error" in taken["error_rate"][0].message
    assert "consecutive errors 1 > consecutive_error_limit 0" in result.message
