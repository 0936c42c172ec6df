"""Loading analysis templates: durations, defaults, and errors that name the field."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from schemas.analysis import AnalysisTemplate, Measurement, MetricSpec

EXAMPLE = """
args:
  app: web
metrics:
  - name: error-rate
    query: |
      sum(rate(http_requests_total{app="{{args.app}}", code=~"5.."}[1m]))
        / sum(rate(http_requests_total{app="{{ args.app }}"}[1m]))
    interval: 30s
    count: 10
    initial_delay: 1m
    failure_condition: result[0] > 0.05
    failure_limit: 2
  - name: p99-latency
    query: histogram_quantile(0.99, sum by (le) (rate(latency_bucket[5m])))
    range: {lookback: 5m, step: 30s}
    interval: 60
    success_condition: all(result < 0.3)
    no_data: failure
    dry_run: true
"""


def test_example_template_loads_with_durations_and_defaults() -> None:
    template = AnalysisTemplate.model_validate(yaml.safe_load(EXAMPLE))
    rate, latency = template.metrics
    assert (rate.interval, rate.initial_delay, rate.count) == (30.0, 60.0, 10)
    assert (rate.failure_limit, rate.inconclusive_limit, rate.consecutive_error_limit) == (2, 0, 4)
    assert (rate.no_data, rate.dry_run, rate.provider, rate.range) == (
        "inconclusive",
        False,
        "prometheus",
        None,
    )
    assert latency.range is not None and (latency.range.lookback, latency.range.step) == (300, 30)
    assert (latency.no_data, latency.dry_run) == ("failure", True)
    assert rate.placeholders() == {"app"}
    assert template.missing_args() == set()
    assert template.metric("p99-latency") is latency


def test_missing_args_are_reported() -> None:
    template = AnalysisTemplate.model_validate(
        {"metrics": [{"name": "m", "query": 'up{job="{{args.job}}", ns="{{args.ns}}"}'}]}
    )
    assert template.missing_args() == {"job", "ns"}
    assert template.missing_args({"job": "web"}) == {"ns"}


def _loc_and_message(data: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as err:
        AnalysisTemplate.model_validate(data)
    first = err.value.errors()[0]
    return ".".join(str(part) for part in first["loc"]), first["msg"]


def _metric(**fields: Any) -> dict[str, Any]:
    return {"metrics": [{"name": "m", "query": "up", **fields}]}


@pytest.mark.parametrize(
    ("data", "loc", "message"),
    [
        (_metric(success_condition="reslt < 1"), "metrics.0.success_condition", "'reslt'"),
        (_metric(failure_condition="result.x"), "metrics.0.failure_condition", "attribute"),
        (_metric(failure_condition="result >"), "metrics.0.failure_condition", "syntax error"),
        (_metric(count=3), "metrics.0", "interval is required when count is greater than 1"),
        (_metric(interval="5x"), "metrics.0.interval", "not a duration"),
        (_metric(interval=0), "metrics.0.interval", "greater than 0"),
        (_metric(initial_delay=-1), "metrics.0.initial_delay", "greater than or equal to 0"),
        (_metric(failure_limit=-1), "metrics.0.failure_limit", "greater than or equal to 0"),
        (_metric(count=0), "metrics.0.count", "greater than or equal to 1"),
        (_metric(no_data="ignore"), "metrics.0.no_data", "'inconclusive'"),
        (_metric(provider="datadog"), "metrics.0.provider", "'prometheus'"),
        (_metric(failureLimit=2), "metrics.0.failureLimit", "Extra inputs are not permitted"),
        (_metric(query="  "), "metrics.0.query", "blank"),
        (_metric(query="up{job='{{job}}'}"), "metrics.0.query", "{{args.NAME}}"),
        (_metric(range={"lookback": "1m", "step": "5m"}), "metrics.0.range", "longer than"),
        (_metric(name="has space"), "metrics.0.name", "letters, digits"),
        ({"metrics": []}, "metrics", "at least 1"),
        (
            {"metrics": [{"name": "a", "query": "up"}, {"name": "a", "query": "up"}]},
            "metrics",
            "'a' is used twice",
        ),
        ({**_metric(), "args": {"bad name": "x"}}, "args", "arg name 'bad name'"),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], loc: str, message: str) -> None:
    where, why = _loc_and_message(data)
    assert where == loc
    assert message in why


def test_models_are_frozen() -> None:
    metric = MetricSpec(name="m", query="up")
    with pytest.raises(ValidationError):
        metric.count = 3  # type: ignore[misc]


def test_measurement_keeps_nan_and_inf_through_json() -> None:
    taken = Measurement(metric="m", phase="failed", value=[math.nan, math.inf], at=1.0)
    again = Measurement.model_validate_json(taken.model_dump_json())
    assert isinstance(again.value, list)
    assert math.isnan(again.value[0]) and again.value[1] == math.inf
    stored = Measurement.model_validate(taken.model_dump())  # the engine keeps dicts
    assert stored.model_dump_json() == taken.model_dump_json()
