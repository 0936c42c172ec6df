"""Analysis semantics as tables, after Argo's AnalysisRun documentation (see FLOWS.md).

Each table row is one documented rule or its boundary: how one measurement is judged,
how measurements become a metric's verdict, how metrics become the run's verdict, and
when the next measurement is due.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.analysis import (
    ERROR_RETRY_INTERVAL,
    analysis_result,
    evaluate,
    metric_result,
    next_due,
)
from flows.expressions import MAX_VALUES
from schemas.analysis import PHASE_ORDER, AnalysisTemplate, Measurement, MetricSpec

NAN = math.nan


def spec(**fields: Any) -> MetricSpec:
    """A metric with the given fields over a fixed query."""
    return MetricSpec.model_validate({"name": "error_rate", "query": "q", **fields})


def measured(phase: str, at: float = 0.0, metric: str = "error_rate") -> Measurement:
    """A measurement in ``phase``."""
    return Measurement.model_validate(
        {"metric": metric, "phase": phase, "value": None, "message": f"{metric} {phase}", "at": at}
    )


def series(phases: str, metric: str = "error_rate") -> list[Measurement]:
    """``"sfie"`` -> successful, failed, inconclusive, error measurements 10 s apart."""
    names = {"s": "successful", "f": "failed", "i": "inconclusive", "e": "error"}
    return [measured(names[c], at=10.0 * n, metric=metric) for n, c in enumerate(phases)]


# ---- one measurement -----------------------------------------------------------------------

BOTH = {"success_condition": "result < 0.05", "failure_condition": "result > 0.1"}


@pytest.mark.parametrize(
    ("conditions", "value", "phase"),
    [
        (BOTH, 0.01, "successful"),
        (BOTH, 0.5, "failed"),
        (BOTH, 0.07, "inconclusive"),  # both given, neither true
        ({"success_condition": "result > 0", "failure_condition": "result > 0"}, 1, "failed"),
        ({"success_condition": "result < 0.05"}, 0.01, "successful"),
        ({"success_condition": "result < 0.05"}, 0.07, "failed"),  # only success, false
        ({"failure_condition": "result > 0.05"}, 0.07, "failed"),
        ({"failure_condition": "result > 0.05"}, 0.01, "successful"),  # only failure, false
        ({}, 0.01, "inconclusive"),  # no condition: nothing to vouch with
        ({"success_condition": "result[0] < 0.05"}, 0.01, "successful"),  # Argo's indexing
        ({"success_condition": "result[1] < 0.05"}, 0.01, "error"),  # index out of range
        ({"success_condition": "result < 0.05"}, [0.01, 0.02], "error"),  # list, no all()
        ({"success_condition": "all(result < 0.05)"}, [0.01, 0.02], "successful"),
        ({"failure_condition": "any(result > 0.05)"}, [0.01, 0.2], "failed"),
        # NaN among several values is data: comparisons with NaN are false.
        ({"success_condition": "all(result < 0.05)"}, [0.01, NAN], "failed"),
        ({"failure_condition": "any(isNaN(result))"}, [0.01, NAN], "failed"),
    ],
)
def test_one_measurement(conditions: dict[str, str], value: Any, phase: str) -> None:
    values = value if isinstance(value, list) else [float(value)]
    result = evaluate(spec(**conditions), values, error=None, at=5.0, query="q")
    assert result.phase == phase
    assert result.at == 5.0 and result.metric == "error_rate"
    # The measured value is kept, also when the condition could not be evaluated.
    assert repr(result.value) == repr(values[0] if len(values) == 1 else values)


@pytest.mark.parametrize(
    ("policy", "phase"),
    [
        (None, "inconclusive"),  # the default
        ("inconclusive", "inconclusive"),
        ("success", "successful"),
        ("failure", "failed"),
        ("error", "error"),
    ],
)
@pytest.mark.parametrize("values", [None, [], [NAN], [NAN, NAN]])
def test_no_data_follows_the_policy(
    policy: str | None, phase: str, values: list[float] | None
) -> None:
    fields = {"failure_condition": "result > 0.05"}  # NaN would pass this: not consulted
    if policy is not None:
        fields["no_data"] = policy
    result = evaluate(spec(**fields), values, error=None, at=0.0, query="q")
    assert result.phase == phase
    assert "no data" in result.message and f"no_data policy is {policy or 'inconclusive'}" in (
        result.message
    )


def test_a_query_error_is_an_error_measurement() -> None:
    result = evaluate(spec(), None, error="ToolFailed: parse error", at=0.0, query="sum(")
    assert (result.phase, result.value) == ("error", None)
    assert "query failed: ToolFailed: parse error" in result.message


def test_too_many_values_are_an_error_measurement() -> None:
    many = [0.0] * (MAX_VALUES + 1)
    result = evaluate(spec(success_condition="true"), many, error=None, at=0.0, query="q")
    assert result.phase == "error" and f"at most {MAX_VALUES}" in result.message


def test_evidence_is_one_line_naming_metric_query_value_and_condition() -> None:
    query = 'sum(rate(http_errors{app="web"}[1m]))\n  /\n  sum(rate(http_requests{app="web"}[1m]))'
    result = evaluate(
        spec(failure_condition="result > 0.05"), [0.0712], error=None, at=0.0, query=query
    )
    assert "\n" not in result.message
    assert result.message == (
        'error_rate: query `sum(rate(http_errors{app="web"}[1m])) / '
        'sum(rate(http_requests{app="web"}[1m]))` = 0.0712: '
        "failure_condition `result > 0.05` is true -> failed"
    )
    assert result.query == query  # the full query is kept beside the one-line message


# ---- one metric --------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_failure_limit_fails_on_the_measurement_after_the_limit(limit: int) -> None:
    metric = spec(interval=10, count=10, failure_limit=limit)
    at_limit = metric_result(metric, series("f" * limit), finished=False)
    assert at_limit.phase == "running" and at_limit.failed == limit
    over = metric_result(metric, series("f" * (limit + 1)), finished=False)
    assert over.phase == "failed"
    assert over.message.endswith(f"; failed {limit + 1} > failure_limit {limit}")


@pytest.mark.parametrize("limit", [0, 2])
def test_inconclusive_limit(limit: int) -> None:
    metric = spec(interval=10, count=10, inconclusive_limit=limit)
    assert metric_result(metric, series("i" * limit), finished=False).phase == "running"
    over = metric_result(metric, series("i" * (limit + 1)), finished=False)
    assert over.phase == "inconclusive"
    assert f"inconclusive {limit + 1} > inconclusive_limit {limit}" in over.message


@pytest.mark.parametrize(
    ("phases", "limit", "phase", "consecutive"),
    [
        ("eeee", 4, "running", 4),  # default limit 4: four in a row are tolerated
        ("eeeee", 4, "error", 5),  # the fifth is not
        ("eeeeseeee", 4, "running", 4),  # a completed measurement resets the counter
        ("eeeefeeee", 4, "running", 4),  # ... whatever its phase (failure_limit is 1)
        ("e", 0, "error", 1),
        ("", 0, "running", 0),
    ],
)
def test_consecutive_errors(phases: str, limit: int, phase: str, consecutive: int) -> None:
    metric = spec(interval=10, count=10, consecutive_error_limit=limit, failure_limit=1)
    result = metric_result(metric, series(phases), finished=False)
    assert (result.phase, result.consecutive_errors) == (phase, consecutive)
    assert result.errors == phases.count("e")
    if phase == "error":
        assert f"consecutive errors {consecutive} > consecutive_error_limit {limit}" in (
            result.message
        )


def test_errors_do_not_count_toward_count() -> None:
    metric = spec(interval=10, count=3)
    running = metric_result(metric, series("sese"), finished=False)
    assert (running.phase, running.count, running.errors) == ("running", 2, 2)
    done = metric_result(metric, series("seses"), finished=False)
    assert (done.phase, done.count, done.successful) == ("successful", 3, 3)
    assert "count 3 reached" in done.message


@pytest.mark.parametrize(
    ("fields", "phases", "finished", "phase"),
    [
        ({}, "", False, "running"),  # no interval, no count: one measurement
        ({}, "s", False, "successful"),
        ({}, "f", False, "failed"),
        ({}, "i", False, "inconclusive"),
        ({}, "e", False, "running"),  # an error is retried, not a measurement
        ({"interval": 10}, "sss", False, "running"),  # interval, no count: until the end
        ({"interval": 10}, "sss", True, "successful"),
        ({"interval": 10, "failure_limit": 1}, "sfs", True, "successful"),
        ({"interval": 10}, "", True, "inconclusive"),  # ended before any measurement
        ({"interval": 10}, "ee", True, "inconclusive"),
        ({"interval": 10, "count": 3}, "ss", True, "successful"),  # step ended early
        ({"interval": 10, "count": 3}, "fi", False, "failed"),  # failed before inconclusive
        ({"interval": 10, "count": 3, "failure_limit": 5}, "fff", False, "successful"),
    ],
)
def test_metric_verdict(fields: dict[str, Any], phases: str, finished: bool, phase: str) -> None:
    assert metric_result(spec(**fields), series(phases), finished=finished).phase == phase


def test_metric_result_counts_and_dry_run_flag() -> None:
    result = metric_result(
        spec(interval=10, dry_run=True, failure_limit=9), series("sfie"), finished=False
    )
    assert (result.count, result.successful, result.failed, result.inconclusive) == (3, 1, 1, 1)
    assert (result.errors, result.consecutive_errors, result.dry_run) == (1, 1, True)
    assert result.message.startswith("[dry-run] ")


def test_failed_metric_message_is_the_last_failure_with_the_counts() -> None:
    metric = spec(interval=10, count=10, failure_limit=2, failure_condition="result > 0.05")
    values = [0.2, 0.01, 0.09, 0.071]
    taken = [
        evaluate(metric, [v], error=None, at=10.0 * i, query="errors") for i, v in enumerate(values)
    ]
    result = metric_result(metric, taken, finished=False)
    assert result.phase == "failed"
    assert result.message == (
        "error_rate: query `errors` = 0.071: failure_condition `result > 0.05` is true -> "
        "failed; failed 3 > failure_limit 2"
    )


# ---- the run -----------------------------------------------------------------------------

# Measurements that put a metric (interval 10, count 2) in each phase.
PHASE_SERIES = {
    "successful": "ss",
    "running": "s",
    "inconclusive": "i",
    "error": "eeeee",
    "failed": "f",
}


def template(*metrics: dict[str, Any]) -> AnalysisTemplate:
    """A template of metrics with interval 10 and count 2 unless given."""
    return AnalysisTemplate.model_validate(
        {"metrics": [{"query": "q", "interval": 10, "count": 2, **m} for m in metrics]}
    )


@pytest.mark.parametrize("first", list(PHASE_SERIES))
@pytest.mark.parametrize("second", list(PHASE_SERIES))
def test_the_worst_metric_decides(first: str, second: str) -> None:
    run = template({"name": "a"}, {"name": "b"})
    taken = {"a": series(PHASE_SERIES[first], "a"), "b": series(PHASE_SERIES[second], "b")}
    result = analysis_result(run, taken, finished=False)
    worst = max(first, second, key=PHASE_ORDER.__getitem__)
    assert result.phase == worst
    assert [m.phase for m in result.metrics] == [first, second]
    if worst != "successful":
        decided = "a" if first == worst else "b"
        assert result.decided_by == decided
        assert result.message == result.metrics[0 if decided == "a" else 1].message


def test_order_is_successful_running_inconclusive_error_failed() -> None:
    assert sorted(PHASE_ORDER, key=PHASE_ORDER.__getitem__) == [
        "successful",
        "running",
        "inconclusive",
        "error",
        "failed",
    ]


@pytest.mark.parametrize("dry_phase", ["failed", "error", "inconclusive", "successful"])
def test_dry_run_metrics_are_reported_but_never_decide(dry_phase: str) -> None:
    run = template({"name": "live"}, {"name": "trial", "dry_run": True})
    taken = {"live": series("ss", "live"), "trial": series(PHASE_SERIES[dry_phase], "trial")}
    result = analysis_result(run, taken, finished=False)
    assert result.phase == "successful" and result.decided_by is None
    assert result.metrics[1].phase == dry_phase and result.metrics[1].dry_run


def test_a_running_dry_run_metric_keeps_the_run_running() -> None:
    run = template({"name": "live"}, {"name": "trial", "dry_run": True})
    result = analysis_result(run, {"live": series("ss", "live")}, finished=False)
    assert result.phase == "running"
    only_dry = template({"name": "trial", "dry_run": True})
    assert analysis_result(only_dry, {"trial": series("ff", "trial")}, finished=False).phase == (
        "successful"
    )


def test_a_metric_without_measurements_is_running() -> None:
    result = analysis_result(template({"name": "a"}), {}, finished=False)
    assert result.phase == "running" and result.metrics[0].count == 0


def test_successful_run_message_summarises_every_deciding_metric() -> None:
    run = template({"name": "a"}, {"name": "b"})
    result = analysis_result(run, {"a": series("ss", "a"), "b": series("ss", "b")}, finished=False)
    assert result.phase == "successful"
    assert result.message.startswith("a: 2 measured: 2 successful") and "; b: 2 measured" in (
        result.message
    )


# ---- scheduling --------------------------------------------------------------------------


def test_next_due() -> None:
    metric = spec(interval=30, count=3, initial_delay=60)
    assert next_due(metric, [], started_at=1000.0) == 1060.0
    assert next_due(metric, [measured("successful", at=1061.0)], 1000.0) == 1091.0
    assert next_due(metric, [measured("error", at=1061.0)], 1000.0) == 1091.0
    taken = [measured("successful", at=1060.0 + 30 * i) for i in range(3)]
    assert next_due(metric, taken, 1000.0) is None  # count reached
    assert next_due(metric, [measured("failed", at=1061.0)], 1000.0) is None  # decided


def test_next_due_single_measurement_retries_errors() -> None:
    metric = spec()
    assert next_due(metric, [], 50.0) == 50.0
    assert next_due(metric, [measured("error", at=51.0)], 50.0) == 51.0 + ERROR_RETRY_INTERVAL
    assert next_due(metric, [measured("successful", at=51.0)], 50.0) is None


def test_next_due_never_before_the_initial_delay() -> None:
    metric = spec(interval=5, initial_delay=100)
    assert next_due(metric, [measured("successful", at=10.0)], 0.0) == 100.0


# ---- properties --------------------------------------------------------------------------

_phases = st.sampled_from(["successful", "failed", "inconclusive", "error"])


def _spec_of(interval: float | None, count: int | None, fl: int, il: int, cel: int) -> MetricSpec:
    # Several measurements need an interval (a validation rule); keep the draw valid.
    if count is not None and count > 1:
        interval = 10.0
    return spec(
        interval=interval,
        count=count,
        failure_limit=fl,
        inconclusive_limit=il,
        consecutive_error_limit=cel,
    )


_specs = st.builds(
    _spec_of,
    st.sampled_from([None, 10.0]),
    st.sampled_from([None, 1, 3, 6]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 4),
)


@settings(max_examples=200, deadline=None)
@given(_specs, st.lists(_phases, max_size=12), st.data(), st.booleans())
def test_more_failures_never_improve_the_verdict(
    metric: MetricSpec, phases: list[str], data: st.DataObject, finished: bool
) -> None:
    """Turning a successful measurement into a failed one leaves the verdict as it was or
    makes it failed: never better."""
    successes = [i for i, p in enumerate(phases) if p == "successful"]
    if not successes:
        return
    i = data.draw(st.sampled_from(successes))
    before = [measured(p, at=float(n)) for n, p in enumerate(phases)]
    after = [*before[:i], measured("failed", at=float(i)), *before[i + 1 :]]
    was = metric_result(metric, before, finished=finished).phase
    now = metric_result(metric, after, finished=finished).phase
    assert now in (was, "failed")
    assert PHASE_ORDER[now] >= PHASE_ORDER[was]


@settings(max_examples=200, deadline=None)
@given(_specs, st.lists(_phases, max_size=12))
def test_failed_iff_failures_exceed_the_limit(metric: MetricSpec, phases: list[str]) -> None:
    """A metric fails exactly when its failed count passes failure_limit, and stays failed."""
    taken = [measured(p, at=float(i)) for i, p in enumerate(phases)]
    result = metric_result(metric, taken, finished=False)
    assert (result.phase == "failed") == (phases.count("failed") > metric.failure_limit)
    assert result.count == len(phases) - phases.count("error")
    if result.phase == "failed":
        more = [*taken, measured("successful", at=99.0), measured("error", at=100.0)]
        assert metric_result(metric, more, finished=True).phase == "failed"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(list(PHASE_SERIES)), st.booleans()), min_size=1, max_size=5)
)
def test_run_phase_is_the_worst_deciding_metric(metrics: list[tuple[str, bool]]) -> None:
    run = template(*({"name": f"m{i}", "dry_run": dry} for i, (_, dry) in enumerate(metrics)))
    taken = {f"m{i}": series(PHASE_SERIES[p], f"m{i}") for i, (p, _) in enumerate(metrics)}
    result = analysis_result(run, taken, finished=False)
    deciding = [p for p, dry in metrics if not dry] + [
        "running" for p, dry in metrics if dry and p == "running"
    ]
    expected = max(deciding, key=PHASE_ORDER.__getitem__) if deciding else "successful"
    assert result.phase == expected


def test_an_evaluation_error_names_the_condition() -> None:
    metric = spec(failure_condition="result > 0.05", success_condition="result[3] < 1")
    taken = evaluate(metric, [0.01, 0.02], error=None, at=0.0, query="q")
    assert taken.phase == "error" and taken.value == [0.01, 0.02]
    assert "cannot evaluate failure_condition `result > 0.05`: condition gives 2 values" in (
        taken.message
    )
