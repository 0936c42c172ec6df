"""Analysis with Argo AnalysisRun semantics: measure, judge a metric, judge the run.

Pure functions over :mod:`schemas.analysis` models, plus :func:`measure`, the one that
does I/O (a Prometheus query through the toolbox). The flow engine stores measurements
in its state, asks :func:`next_due` when to measure again and :func:`analysis_result`
what the run says; it never evaluates conditions itself.

One measurement (:func:`evaluate`):

- a query or evaluation error is an ``error`` measurement;
- no series, or only NaN values, is *no data*: the metric's ``no_data`` policy decides
  (default ``inconclusive``; ``success``, ``failure`` or ``error``);
- otherwise the conditions decide: both given -> ``failed`` if the failure condition
  holds, else ``successful`` if the success condition holds, else ``inconclusive``; only
  a success condition -> ``successful`` or ``failed``; only a failure condition ->
  ``failed`` or ``successful``; none -> ``inconclusive`` (a metric without a condition
  cannot vouch for a release).

One metric (:func:`metric_result`), checked in this order:

- ``failed`` when failed measurements > ``failure_limit`` ("limit 2" fails on the third);
- ``inconclusive`` when inconclusive measurements > ``inconclusive_limit``;
- ``error`` when consecutive errors > ``consecutive_error_limit``; errors do not count
  toward ``count`` and any completed measurement resets the consecutive counter;
- ``successful`` when ``count`` completed measurements were taken (no ``count`` and no
  ``interval`` means one), or when the surrounding step is ``finished`` and at least one
  measurement completed; ``inconclusive`` when the step finished with none completed;
- ``running`` otherwise.

The run (:func:`analysis_result`): the worst non-dry-run metric decides, in the order
successful < running < inconclusive < error < failed. Dry-run metrics are measured and
reported; while they run they keep the run ``running``, and they never make it fail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.expressions import MAX_VALUES, EvaluationError, evaluate_condition
from schemas.analysis import (
    PHASE_ORDER,
    PLACEHOLDER,
    AnalysisResult,
    AnalysisTemplate,
    Measurement,
    MeasurementPhase,
    MetricResult,
    MetricSpec,
)
from schemas.tools.prometheus import PrometheusQueryRangeResult, PrometheusQueryResult

__all__ = [
    "ERROR_RETRY_INTERVAL",
    "QUERY_RANGE_TOOL",
    "QUERY_TOOL",
    "CallTool",
    "analysis_result",
    "evaluate",
    "measure",
    "metric_result",
    "next_due",
    "render_query",
]

QUERY_TOOL = "prometheus-monitoring.prometheus_query"
QUERY_RANGE_TOOL = "prometheus-monitoring.prometheus_query_range"

# After an error with no interval to follow, measure again this much later (Argo: 10 s).
ERROR_RETRY_INTERVAL = 10.0

_NO_DATA_PHASE: dict[str, MeasurementPhase] = {
    "inconclusive": "inconclusive",
    "success": "successful",
    "failure": "failed",
    "error": "error",
}

# Characters that could close a PromQL string literal or start a new one.
_UNSAFE_ARG = re.compile(r"[\"'`\\\x00-\x1f\x7f]")
_MAX_QUERY_IN_MESSAGE = 160

CallTool = Callable[[str, dict[str, Any]], Awaitable[Any]]


# ---- one measurement ---------------------------------------------------------------------


def _one_line(text: str, limit: int = _MAX_QUERY_IN_MESSAGE) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _show(value: float | Sequence[float] | None) -> str:
    if value is None:
        return "no data"
    if isinstance(value, int | float):
        return f"{value:.4g}"
    shown = ", ".join(f"{v:.4g}" for v in value[:5])
    return f"[{shown}, ... {len(value)} values]" if len(value) > 5 else f"[{shown}]"


def _holds(field: str, condition: str | None, result: float | list[float]) -> bool | None:
    """The condition's truth, None when it is not given; the error names the field."""
    if condition is None:
        return None
    try:
        return evaluate_condition(condition, result)
    except EvaluationError as exc:
        raise EvaluationError(f"{field} `{condition}`: {exc}") from None


def _verdict(spec: MetricSpec, result: float | list[float]) -> tuple[MeasurementPhase, str]:
    """Phase and the condition evidence for a value (EvaluationError propagates)."""
    success = spec.success_condition
    failure = spec.failure_condition
    failed = _holds("failure_condition", failure, result)
    succeeded = _holds("success_condition", success, result)
    if failed:
        return "failed", f"failure_condition `{failure}` is true"
    if succeeded:
        return "successful", f"success_condition `{success}` is true"
    if succeeded is False and failed is None:
        return "failed", f"success_condition `{success}` is false"
    if failed is False and succeeded is None:
        return "successful", f"failure_condition `{failure}` is false"
    if failed is False:
        return "inconclusive", (
            f"neither success_condition `{success}` nor failure_condition `{failure}` is true"
        )
    return "inconclusive", "no success_condition or failure_condition to judge by"


def evaluate(
    spec: MetricSpec,
    values: list[float] | None,
    *,
    error: str | None,
    at: float,
    query: str,
) -> Measurement:
    """Judge one measurement of ``spec``: ``values`` as the query answered, or ``error``."""
    head = f"{spec.name}: query `{_one_line(query)}`"

    def done(phase: MeasurementPhase, value: float | list[float] | None, why: str) -> Measurement:
        message = f"{head} = {_show(value)}: {_one_line(why, 400)} -> {phase}"
        return Measurement(
            metric=spec.name, phase=phase, value=value, message=message, query=query, at=at
        )

    if error is not None:
        return done("error", None, f"query failed: {error}")
    if not values or all(math.isnan(v) for v in values):
        phase = _NO_DATA_PHASE[spec.no_data]
        what = "no series" if not values else "only NaN"
        value = None if not values else (values[0] if len(values) == 1 else list(values))
        return done(phase, value, f"{what} (no data); no_data policy is {spec.no_data}")
    if len(values) > MAX_VALUES:
        return done("error", None, f"{len(values)} values; at most {MAX_VALUES} are judged")
    result: float | list[float] = values[0] if len(values) == 1 else list(values)
    try:
        phase, why = _verdict(spec, result)
    except EvaluationError as exc:
        return done("error", result, f"cannot evaluate {exc}")
    return done(phase, result, why)


# ---- one metric --------------------------------------------------------------------------


def _effective_count(spec: MetricSpec) -> int | None:
    if spec.count is not None:
        return spec.count
    return 1 if spec.interval is None else None


def _last(measurements: Sequence[Measurement], phase: str) -> Measurement | None:
    for measurement in reversed(measurements):
        if measurement.phase == phase:
            return measurement
    return None


def metric_result(
    spec: MetricSpec, measurements: Sequence[Measurement], *, finished: bool
) -> MetricResult:
    """The metric's verdict over ``measurements`` (oldest first) with its counts.

    ``finished`` is true when the surrounding step has ended, so a metric measured
    "until the step ends" (interval without count) stops there.
    """
    counts = {"successful": 0, "failed": 0, "inconclusive": 0, "error": 0}
    consecutive = 0
    for measurement in measurements:
        counts[measurement.phase] += 1
        consecutive = consecutive + 1 if measurement.phase == "error" else 0
    count = counts["successful"] + counts["failed"] + counts["inconclusive"]
    tally = (
        f"{count} measured: {counts['successful']} successful, {counts['failed']} failed, "
        f"{counts['inconclusive']} inconclusive, {counts['error']} errors"
    )

    def result(phase: str, message: str) -> MetricResult:
        return MetricResult(
            metric=spec.name,
            phase=phase,  # type: ignore[arg-type]
            count=count,
            successful=counts["successful"],
            failed=counts["failed"],
            inconclusive=counts["inconclusive"],
            errors=counts["error"],
            consecutive_errors=consecutive,
            dry_run=spec.dry_run,
            message=("[dry-run] " if spec.dry_run else "") + message,
        )

    def evidence(phase: str) -> str:
        last = _last(measurements, phase)
        return last.message if last is not None else spec.name

    if counts["failed"] > spec.failure_limit:
        return result(
            "failed",
            f"{evidence('failed')}; failed {counts['failed']} > failure_limit {spec.failure_limit}",
        )
    if counts["inconclusive"] > spec.inconclusive_limit:
        return result(
            "inconclusive",
            f"{evidence('inconclusive')}; inconclusive {counts['inconclusive']} > "
            f"inconclusive_limit {spec.inconclusive_limit}",
        )
    if consecutive > spec.consecutive_error_limit:
        return result(
            "error",
            f"{evidence('error')}; consecutive errors {consecutive} > consecutive_error_limit "
            f"{spec.consecutive_error_limit}",
        )
    wanted = _effective_count(spec)
    if wanted is not None and count >= wanted:
        return result("successful", f"{spec.name}: {tally}; count {wanted} reached")
    if finished:
        if count == 0:
            return result(
                "inconclusive", f"{spec.name}: the step ended before any measurement completed"
            )
        return result("successful", f"{spec.name}: {tally}; the step ended within the limits")
    of = f"/{wanted}" if wanted is not None else ""
    latest = f"; last: {measurements[-1].message}" if measurements else ""
    return result("running", f"{spec.name}: running, {count}{of} measured{latest}")


# ---- the run -----------------------------------------------------------------------------


def analysis_result(
    template: AnalysisTemplate,
    measurements: Mapping[str, Sequence[Measurement]],
    *,
    finished: bool,
) -> AnalysisResult:
    """The run's verdict: the worst non-dry-run metric decides (see the module docs)."""
    results = [
        metric_result(spec, measurements.get(spec.name, ()), finished=finished)
        for spec in template.metrics
    ]
    deciding: MetricResult | None = None
    for metric in results:
        # A dry-run metric still running keeps the run running; its verdict never counts.
        if metric.dry_run and metric.phase != "running":
            continue
        if deciding is None or PHASE_ORDER[metric.phase] > PHASE_ORDER[deciding.phase]:
            deciding = metric
    if deciding is None:
        return AnalysisResult(
            phase="successful", metrics=results, message="only dry-run metrics; nothing decides"
        )
    if deciding.phase == "successful":
        message = "; ".join(m.message for m in results if not m.dry_run)
        return AnalysisResult(phase="successful", metrics=results, message=_one_line(message, 600))
    return AnalysisResult(
        phase=deciding.phase,
        metrics=results,
        message=deciding.message,
        decided_by=deciding.metric,
    )


def next_due(
    spec: MetricSpec, measurements: Sequence[Measurement], started_at: float
) -> float | None:
    """Epoch seconds when ``spec`` should next be measured; None when it needs no more.

    The first measurement is due ``initial_delay`` after ``started_at``; the next one an
    ``interval`` after the last (an error with no interval retries after
    :data:`ERROR_RETRY_INTERVAL`).
    """
    if metric_result(spec, measurements, finished=False).phase != "running":
        return None
    first = started_at + spec.initial_delay
    if not measurements:
        return first
    last = measurements[-1]
    gap = spec.interval if spec.interval is not None else ERROR_RETRY_INTERVAL
    return max(first, last.at + gap)


# ---- measuring ---------------------------------------------------------------------------


def render_query(spec: MetricSpec, args: Mapping[str, str]) -> str:
    """``spec.query`` with its ``{{args.NAME}}`` placeholders filled.

    ValueError names a missing argument, or one whose value could break out of a PromQL
    string (quotes, backslash, backtick, control characters).
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in args:
            raise ValueError(f"query needs args.{name}, which is not given")
        value = str(args[name])
        if _UNSAFE_ARG.search(value):
            raise ValueError(
                f"args.{name} contains a quote, backslash or control character; refused"
            )
        return value

    return PLACEHOLDER.sub(fill, spec.query)


def _values(answer: Any, ranged: bool) -> tuple[list[float], list[str]]:
    """Numbers of a query answer (one per series, or every point of a range) and the
    warnings Prometheus attached (partial results, for example)."""
    model = PrometheusQueryRangeResult if ranged else PrometheusQueryResult
    if isinstance(answer, model):
        parsed = answer
    else:
        parsed = model.model_validate(answer, from_attributes=True)
    if parsed.result_type == "string":
        raise ValueError("Prometheus answered a string, not numbers")
    if ranged:
        values = [point.value for series in parsed.series for point in series.values]
    else:
        values = [s.value.value for s in parsed.series if s.value is not None]
    return values, list(parsed.warnings)


async def measure(
    call_tool: CallTool, spec: MetricSpec, args: Mapping[str, str], now: float
) -> Measurement:
    """Query Prometheus for ``spec`` at ``now`` and judge the answer.

    Never raises for a failed query: a tool error, a malformed answer or a bad argument
    becomes an ``error`` measurement carrying the reason.
    """
    try:
        query = render_query(spec, args)
    except ValueError as exc:
        return evaluate(spec, None, error=str(exc), at=now, query=spec.query)
    moment = datetime.fromtimestamp(now, UTC)
    if spec.range is not None:
        tool = QUERY_RANGE_TOOL
        call_args: dict[str, Any] = {
            "query": query,
            "start": moment - timedelta(seconds=spec.range.lookback),
            "end": moment,
            "step": spec.range.step,
        }
    else:
        tool, call_args = QUERY_TOOL, {"query": query, "time": moment}
    try:
        answer = await call_tool(tool, call_args)
        values, warnings = _values(answer, spec.range is not None)
    except Exception as exc:  # every failure is evidence, never a crash of the flow
        return evaluate(spec, None, error=f"{type(exc).__name__}: {exc}", at=now, query=query)
    measurement = evaluate(spec, values, error=None, at=now, query=query)
    if warnings:
        # A partial answer judged as a whole one should say so in its evidence.
        note = _one_line("; ".join(warnings), 300)
        measurement = measurement.model_copy(
            update={"message": f"{measurement.message} (Prometheus warned: {note})"}
        )
    return measurement
