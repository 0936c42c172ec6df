"""Argument and result models of the ``prometheus-monitoring`` tool server.

Times are datetimes; pydantic also accepts RFC 3339 strings and unix timestamps.
A naive datetime is taken as UTC. ``step`` is seconds or a Prometheus duration
(``15s``, ``1m``, ``1h30m``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# Prometheus refuses range queries with more points than this per series.
MAX_POINTS = 11_000

_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def duration_seconds(text: str) -> float:
    """``1h30m`` -> 5400.0; ValueError if it is not a Prometheus duration."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration like 15s, 1m or 1h30m")
    numbers = match.groups()[1::2]
    return float(sum(int(n) * unit for n, unit in zip(numbers, _UNIT_SECONDS, strict=True) if n))


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("query is blank")
    return value


class PrometheusQueryArgs(_Args):
    """Evaluate a PromQL expression at one instant (now by default)."""

    query: str = Field(min_length=1, max_length=20_000, description="PromQL expression")
    time: datetime | None = None

    _check_time = field_validator("time")(_utc)
    _check_query = field_validator("query")(_not_blank)


class PrometheusQueryRangeArgs(_Args):
    """Evaluate a PromQL expression over ``[start, end]`` every ``step``."""

    query: str = Field(min_length=1, max_length=20_000, description="PromQL expression")
    start: datetime
    end: datetime
    step: float | str = Field(description="seconds, or a duration such as 15s / 1m")

    _check_times = field_validator("start", "end")(_utc)
    _check_query = field_validator("query")(_not_blank)

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and value < start:
            raise ValueError("end must not be before start")
        return value

    @field_validator("step")
    @classmethod
    def _positive_bounded_step(cls, value: float | str, info: ValidationInfo) -> float:
        seconds = duration_seconds(value) if isinstance(value, str) else float(value)
        if seconds <= 0:
            raise ValueError("step must be positive")
        start, end = info.data.get("start"), info.data.get("end")
        if start is not None and end is not None:
            span = (end - start).total_seconds()
            if span / seconds > MAX_POINTS:
                raise ValueError(
                    f"{seconds:g}s gives more than {MAX_POINTS} points over {span:g}s; "
                    "use a larger step"
                )
        return seconds


class PrometheusTargetsArgs(_Args):
    """List scrape targets, optionally only those with a given health."""

    state: Literal["active", "dropped", "any"] = "active"
    health: Literal["up", "down", "unknown"] | None = None
    job: str | None = Field(default=None, min_length=1, description="only this job label")


class Sample(_Result):
    """One point: unix time in seconds and value (NaN/Inf kept as floats)."""

    timestamp: float
    value: float


class Series(_Result):
    """One labelled series: ``value`` for instant results, ``values`` for ranges."""

    metric: dict[str, str]
    value: Sample | None = None
    values: list[Sample] = Field(default_factory=list)


ResultType = Literal["vector", "matrix", "scalar", "string"]


class PrometheusQueryResult(_Result):
    """An instant query's result; a scalar is one series with no labels."""

    result_type: ResultType
    series: list[Series]
    text: str | None = Field(default=None, description="the value of a string result")
    warnings: list[str] = Field(default_factory=list)


class PrometheusQueryRangeResult(_Result):
    """A range query's series (``values`` in time order)."""

    result_type: ResultType
    series: list[Series]
    warnings: list[str] = Field(default_factory=list)


class Target(_Result):
    """One scrape target as ``/api/v1/targets`` reports it."""

    state: Literal["active", "dropped"]
    job: str | None = None
    instance: str | None = None
    scrape_pool: str | None = None
    scrape_url: str | None = None
    health: Literal["up", "down", "unknown"] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    discovered_labels: dict[str, str] = Field(default_factory=dict)
    last_error: str = ""
    last_scrape: str | None = None
    last_scrape_duration: float | None = None


class PrometheusTargetsResult(_Result):
    """The selected targets and how many are up/down."""

    targets: list[Target]
    up: int
    down: int
