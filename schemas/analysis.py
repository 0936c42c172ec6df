"""Analysis templates, measurements and results (Argo AnalysisRun semantics).

An :class:`AnalysisTemplate` lists metrics; each :class:`MetricSpec` is a PromQL query
with conditions over its result (grammar: :mod:`schemas.expressions`), how often and how
many times to measure it, and the limits that turn measurements into a verdict. The
semantics (what counts, what fails, what a missing series means) are implemented in
:mod:`flows.analysis` and tabled in ``docs/analysis.md``.

Durations (``interval``, ``initial_delay``, ``range.lookback``/``step``) are seconds or
Prometheus durations such as ``30s`` or ``5m``. Conditions are checked when the model is
loaded: an error names the field, e.g. ``metrics.0.success_condition: unknown name
'reslt'``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from schemas.expressions import parse_condition
from schemas.tools.prometheus import duration_seconds

__all__ = [
    "PHASE_ORDER",
    "PLACEHOLDER",
    "AnalysisPhase",
    "AnalysisResult",
    "AnalysisTemplate",
    "Measurement",
    "MeasurementPhase",
    "MetricResult",
    "MetricSpec",
    "NoDataPolicy",
    "QueryRange",
]

MeasurementPhase = Literal["successful", "failed", "inconclusive", "error"]
AnalysisPhase = Literal["running", "successful", "failed", "inconclusive", "error"]
NoDataPolicy = Literal["inconclusive", "success", "failure", "error"]

# Worst decides (Argo): Successful < Running < Inconclusive < Error < Failed.
PHASE_ORDER: dict[str, int] = {
    "successful": 0,
    "running": 1,
    "inconclusive": 2,
    "error": 3,
    "failed": 4,
}

# ``{{args.NAME}}`` (spaces allowed inside the braces), as in Argo's templates.
PLACEHOLDER = re.compile(r"\{\{\s*args\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}")
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_METRIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _seconds(value: object) -> object:
    """``"5m"`` -> 300.0; numbers and None pass through to the field's own checks."""
    if isinstance(value, str):
        return duration_seconds(value)
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueryRange(_Model):
    """Measure with ``prometheus_query_range`` over the last ``lookback`` every ``step``."""

    lookback: Seconds = Field(gt=0, description="how far back from the measurement time")
    step: Seconds = Field(gt=0, description="resolution of the range query")

    @model_validator(mode="after")
    def _step_fits(self) -> QueryRange:
        if self.step > self.lookback:
            raise ValueError(f"step {self.step:g}s is longer than lookback {self.lookback:g}s")
        return self


class MetricSpec(_Model):
    """One metric of an analysis: query, conditions, schedule and limits."""

    name: str = Field(min_length=1, max_length=100)
    query: str = Field(min_length=1, max_length=20_000, description="PromQL; {{args.X}} allowed")
    provider: Literal["prometheus"] = "prometheus"
    range: QueryRange | None = None
    interval: Seconds | None = Field(default=None, gt=0)
    initial_delay: Seconds = Field(default=0.0, ge=0)
    count: int | None = Field(default=None, ge=1, le=10_000)
    success_condition: str | None = None
    failure_condition: str | None = None
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=0, ge=0)
    consecutive_error_limit: int = Field(default=4, ge=0)
    no_data: NoDataPolicy = "inconclusive"
    dry_run: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _METRIC_NAME.match(value):
            raise ValueError("use letters, digits, '_', '.' and '-', starting with a letter/digit")
        return value

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank")
        leftover = PLACEHOLDER.sub("", value)
        if "{{" in leftover:
            raise ValueError("placeholders are written {{args.NAME}} (letters, digits, _ and -)")
        return value

    @field_validator("success_condition", "failure_condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            parse_condition(value)  # ConditionSyntaxError is a ValueError: names the field
        return value

    @model_validator(mode="after")
    def _schedule(self) -> MetricSpec:
        if self.count is not None and self.count > 1 and self.interval is None:
            raise ValueError("interval is required when count is greater than 1")
        return self

    def placeholders(self) -> set[str]:
        """Names of the ``{{args.NAME}}`` placeholders in the query."""
        return set(PLACEHOLDER.findall(self.query))


class AnalysisTemplate(_Model):
    """Metrics measured together; the worst non-dry-run metric decides the run."""

    metrics: list[MetricSpec] = Field(min_length=1)
    args: dict[str, str] = Field(default_factory=dict, description="defaults for {{args.X}}")

    @field_validator("metrics")
    @classmethod
    def _unique(cls, value: list[MetricSpec]) -> list[MetricSpec]:
        seen: set[str] = set()
        for metric in value:
            if metric.name in seen:
                raise ValueError(f"metric name {metric.name!r} is used twice")
            seen.add(metric.name)
        return value

    @field_validator("args")
    @classmethod
    def _arg_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ARG_NAME.match(name):
                raise ValueError(f"arg name {name!r}: use letters, digits, '_' and '-'")
        return value

    def metric(self, name: str) -> MetricSpec:
        """The metric called ``name`` (KeyError if none)."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)

    def missing_args(self, args: dict[str, str] | None = None) -> set[str]:
        """Placeholders that neither ``args`` nor the template's defaults fill."""
        given = {**self.args, **(args or {})}
        return {name for m in self.metrics for name in m.placeholders() if name not in given}


class Measurement(_Model):
    """One measurement of one metric; ``message`` is one line of evidence."""

    # NaN and Inf are real answers from Prometheus; keep them through a JSON round trip.
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")

    metric: str
    phase: MeasurementPhase
    value: float | list[float] | None = None
    message: str = ""
    query: str = Field(default="", description="the query as sent, placeholders filled")
    at: float = Field(description="epoch seconds of the measurement")


class MetricResult(_Model):
    """A metric's verdict over its measurements so far, with the counts behind it."""

    metric: str
    phase: AnalysisPhase
    count: int = Field(default=0, description="completed measurements (errors excluded)")
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    dry_run: bool = False
    message: str = ""


class AnalysisResult(_Model):
    """The run's verdict: the worst non-dry-run metric decides; ``message`` is its evidence."""

    phase: AnalysisPhase
    metrics: list[MetricResult]
    message: str = ""
    decided_by: str | None = Field(default=None, description="the deciding metric, if any")
