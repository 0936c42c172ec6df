"""``measure`` through a Toolbox over the fake Prometheus, and the fake's scripted series."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.analysis import QUERY_RANGE_TOOL, QUERY_TOOL, analysis_result, measure, next_due
from schemas.analysis import AnalysisTemplate, Measurement, MetricSpec
from schemas.tools.prometheus import (
    PrometheusQueryArgs,
    PrometheusQueryRangeArgs,
    PrometheusQueryResult,
)
from tools.config import ToolboxConfig
from tools.errors import ToolTransientError
from tools.fakes.prometheus import FakePrometheusServer
from tools.toolbox import Toolbox

RATE = 'errors{app="{{args.app}}"}'
RENDERED = 'errors{app="web"}'
NOW = 1_700_000_000.0


@pytest.fixture
def fake() -> FakePrometheusServer:
    return FakePrometheusServer()


@pytest.fixture
async def call_tool(fake: FakePrometheusServer) -> AsyncIterator[Any]:
    """``Toolbox.call_tool`` bound to a role allowed to query Prometheus (no Redis guards)."""
    config = ToolboxConfig.model_validate(
        {
            "defaults": {"cache": False, "breaker": False, "retry": False},
            "roles": {"analyst": ["prometheus-monitoring.*"]},
        }
    )
    async with Toolbox([fake], config=config) as toolbox:
        yield functools.partial(toolbox.call_tool, role="analyst")


def metric(**fields: Any) -> MetricSpec:
    return MetricSpec.model_validate(
        {"name": "error_rate", "query": RATE, "failure_condition": "result > 0.05", **fields}
    )


async def test_instant_query_at_the_measurement_time(
    fake: FakePrometheusServer, call_tool: Any
) -> None:
    seen: list[float] = []
    fake.script(RENDERED, lambda at: seen.append(at) or 0.01)
    taken = await measure(call_tool, metric(), {"app": "web"}, NOW)
    assert (taken.phase, taken.value, taken.query, taken.at) == ("successful", 0.01, RENDERED, NOW)
    assert seen == [NOW]  # queried at `now`, so the cache can never answer a stale value
    name, args = fake.calls[-1]
    assert name == "prometheus_query" and isinstance(args, PrometheusQueryArgs)
    assert args.time == datetime.fromtimestamp(NOW, UTC)


async def test_range_query_judges_every_point(fake: FakePrometheusServer, call_tool: Any) -> None:
    fake.script(RENDERED, lambda at: 0.09 if at >= NOW - 30 else 0.01)
    spec = metric(range={"lookback": "2m", "step": "30s"}, failure_condition="any(result > 0.05)")
    taken = await measure(call_tool, spec, {"app": "web"}, NOW)
    assert taken.phase == "failed"
    assert taken.value == [0.01, 0.01, 0.01, 0.09, 0.09]
    _, args = fake.calls[-1]
    assert isinstance(args, PrometheusQueryRangeArgs)
    assert args.end - args.start == timedelta(minutes=2) and args.step == 30.0


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda f: f.set_error(RENDERED, "parse error: unexpected }"), "parse error: unexpected }"),
        (
            lambda f: f.fail_next("prometheus_query", ToolTransientError("503 from Prometheus")),
            "ToolTransientError: 503 from Prometheus",
        ),
    ],
)
async def test_tool_errors_become_error_measurements(
    fake: FakePrometheusServer, call_tool: Any, setup: Any, expected: str
) -> None:
    setup(fake)
    taken = await measure(call_tool, metric(), {"app": "web"}, NOW)
    assert taken.phase == "error" and taken.value is None
    assert expected in taken.message and RENDERED in taken.message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, "query needs args.app, which is not given"),
        ({"app": 'web"} or vector(1) or up{x="'}, "args.app contains a quote"),
        ({"app": "web\\"}, "args.app contains a quote, backslash"),
        ({"app": "web\n"}, "control character"),
    ],
)
async def test_bad_args_are_error_measurements_without_a_query(
    fake: FakePrometheusServer, call_tool: Any, args: dict[str, str], expected: str
) -> None:
    taken = await measure(call_tool, metric(), args, NOW)
    assert taken.phase == "error" and expected in taken.message
    assert fake.calls == []


async def test_no_series_is_no_data(fake: FakePrometheusServer, call_tool: Any) -> None:
    fake.script(RENDERED, [None])
    taken = await measure(call_tool, metric(), {"app": "web"}, NOW)
    assert taken.phase == "inconclusive" and "no series (no data)" in taken.message
    failing = await measure(call_tool, metric(no_data="failure"), {"app": "web"}, NOW)
    assert failing.phase == "failed"


async def test_unexpected_answers_and_exceptions_are_error_measurements() -> None:
    async def string_answer(name: str, args: dict[str, Any]) -> PrometheusQueryResult:
        return PrometheusQueryResult(result_type="string", series=[], text="hello")

    async def broken(name: str, args: dict[str, Any]) -> Any:
        raise RuntimeError("socket closed")

    spec = metric(query="up")
    taken = await measure(string_answer, spec, {}, NOW)
    assert taken.phase == "error" and "answered a string" in taken.message
    crashed = await measure(broken, spec, {}, NOW)
    assert crashed.phase == "error" and "RuntimeError: socket closed" in crashed.message


async def test_dict_answers_are_accepted_and_malformed_ones_are_errors() -> None:
    """A caller that hands back the result as a dict (model_dump) works the same."""
    answers: list[dict[str, Any]] = [
        {
            "result_type": "vector",
            "series": [{"metric": {}, "value": {"timestamp": 0, "value": 0.01}}],
            "warnings": ["results may be partial:\nstore down"],
        },
        {
            "result_type": "vector",
            "series": [{"metric": {}, "value": {"timestamp": 0, "value": 0.2}}],
        },
        {"result_type": "vector", "series": [{"metric": {}, "value": [0, "0.2"]}]},
    ]

    async def as_dict(name: str, args: dict[str, Any]) -> dict[str, Any]:
        assert name == QUERY_TOOL
        return answers.pop(0)

    spec = metric(query="up")
    warned = await measure(as_dict, spec, {}, NOW)
    assert warned.phase == "successful"
    assert warned.message.endswith("(Prometheus warned: results may be partial: store down)")
    assert (await measure(as_dict, spec, {}, NOW)).phase == "failed"
    malformed = await measure(as_dict, spec, {}, NOW)
    assert malformed.phase == "error" and "ValidationError" in malformed.message


async def test_range_answers_flatten_every_series_point() -> None:
    async def two_series(name: str, args: dict[str, Any]) -> dict[str, Any]:
        assert name == QUERY_RANGE_TOOL
        points = [
            [{"timestamp": t, "value": v} for t, v in ((1, a), (2, b))]
            for a, b in ((0.1, 0.2), (0.3, 0.4))
        ]
        return {"result_type": "matrix", "series": [{"metric": {}, "values": p} for p in points]}

    ranged = metric(query="up", range={"lookback": 60, "step": 30}, failure_condition=None)
    taken = await measure(two_series, ranged, {}, NOW)
    assert taken.value == [0.1, 0.2, 0.3, 0.4] and taken.phase == "inconclusive"


async def test_a_scripted_breach_fails_the_run_with_evidence(
    fake: FakePrometheusServer, call_tool: Any
) -> None:
    """The engine's loop in miniature: measure when due until the verdict is final."""
    fake.script(RENDERED, [0.01, 0.02, 0.09, 0.071, 0.2, 0.01])
    fake.script("up", [1.0])
    template = AnalysisTemplate.model_validate(
        {
            "args": {"app": "web"},
            "metrics": [
                {
                    "name": "error_rate",
                    "query": RATE,
                    "interval": 30,
                    "count": 6,
                    "failure_condition": "result > 0.05",
                    "failure_limit": 2,
                },
                {"name": "up", "query": "up", "success_condition": "result == 1", "dry_run": True},
            ],
        }
    )
    taken: dict[str, list[Measurement]] = {"error_rate": [], "up": []}
    now = NOW
    while True:
        due = {m.name: next_due(m, taken[m.name], NOW) for m in template.metrics}
        pending = {name: at for name, at in due.items() if at is not None}
        if not pending:
            break
        now = min(pending.values())
        for spec in template.metrics:
            if pending.get(spec.name) == now:
                taken[spec.name].append(await measure(call_tool, spec, template.args, now))
        result = analysis_result(template, taken, finished=False)
        if result.phase != "running":
            break
    assert result.phase == "failed" and result.decided_by == "error_rate"
    assert [m.phase for m in taken["error_rate"]] == [
        "successful",
        "successful",
        "failed",
        "failed",
        "failed",
    ]
    assert now == NOW + 4 * 30
    assert result.message == (
        f"error_rate: query `{RENDERED}` = 0.2: failure_condition `result > 0.05` is true -> "
        "failed; failed 3 > failure_limit 2"
    )
    assert result.metrics[1].phase == "successful" and result.metrics[1].dry_run


# ---- the fake's scripts ------------------------------------------------------------------


async def test_fake_script_list_function_and_several_series(fake: FakePrometheusServer) -> None:
    (query,) = [t for t in fake.tools() if t.spec.tool == "prometheus_query"]

    async def ask(q: str, at: float = NOW) -> list[tuple[dict[str, str], float]]:
        answer = await query.call(PrometheusQueryArgs(query=q, time=at))
        return [(s.metric, s.value.value) for s in answer.series]

    fake.script("a", [1.0, None, [2.0, 3.0]], label="pod")
    assert await ask("a") == [({}, 1.0)]
    assert await ask("a") == []
    assert await ask("a") == [({"pod": "0"}, 2.0), ({"pod": "1"}, 3.0)]
    assert await ask("a") == [({"pod": "0"}, 2.0), ({"pod": "1"}, 3.0)]  # the last repeats
    fake.script("b", lambda at: at - NOW)
    assert await ask("b", NOW + 5) == [({}, 5.0)]
    fake.add_series("c", {"job": "x"}, 7)
    assert await ask("c") == [({"job": "x"}, 7.0)]  # canned series still work
    with pytest.raises(ValueError, match="must not be empty"):
        fake.script("d", [])
