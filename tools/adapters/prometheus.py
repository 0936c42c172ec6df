"""The ``prometheus-monitoring`` tool server over the Prometheus HTTP API (aiohttp).

Queries are POSTed form-encoded (``/api/v1/query``, ``/api/v1/query_range``), as
Prometheus allows, so long PromQL does not hit URL length limits; the query ``timeout``
parameter is the client timeout, so Prometheus gives up when the client does.

Errors: HTTP 5xx, 429, timeouts and connection failures are :class:`ToolTransientError`;
400/422 (bad PromQL, execution errors) and other 4xx are :class:`ToolFailed` carrying
Prometheus' ``error`` text.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from schemas.tools.prometheus import (
    PrometheusQueryArgs,
    PrometheusQueryRangeArgs,
    PrometheusQueryRangeResult,
    PrometheusQueryResult,
    PrometheusTargetsArgs,
    PrometheusTargetsResult,
    Sample,
    Series,
    Target,
)
from tools.adapters.http_session import HttpSessionServer
from tools.errors import ToolFailed, ToolTimeout, ToolTransientError
from tools.spec import tool

__all__ = ["PrometheusConfig", "PrometheusServer", "parse_query_data", "parse_targets"]


class PrometheusConfig(BaseModel):
    """Where Prometheus is and how to authenticate (bearer token or basic auth)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1, description="e.g. http://prometheus:9090 (path allowed)")
    bearer_token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0, description="seconds per request")
    verify_ssl: bool = True

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusConfig:
        if self.bearer_token is not None and self.username is not None:
            raise ValueError("use either bearer_token or username/password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


def _float(text: Any) -> float:
    # Prometheus encodes sample values as strings: "1", "NaN", "+Inf", "-Inf".
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _sample(pair: list[Any]) -> Sample:
    return Sample(timestamp=float(pair[0]), value=_float(pair[1]))


def parse_query_data(data: dict[str, Any]) -> tuple[str, list[Series], str | None]:
    """``data`` of a query response -> (resultType, series, string value)."""
    kind = data.get("resultType", "")
    result: Any = data["result"]
    if kind == "vector":
        series = [Series(metric=s.get("metric", {}), value=_sample(s["value"])) for s in result]
        return kind, series, None
    if kind == "matrix":
        series = [
            Series(metric=s.get("metric", {}), values=[_sample(p) for p in s.get("values", [])])
            for s in result
        ]
        return kind, series, None
    if kind == "scalar":
        return kind, [Series(metric={}, value=_sample(result))], None
    if kind == "string":
        return kind, [], str(result[1])
    raise ValueError(f"unknown resultType {kind!r}")


def parse_targets(data: dict[str, Any]) -> list[Target]:
    """``data`` of ``/api/v1/targets`` -> targets, active first."""
    targets: list[Target] = []
    for raw in data.get("activeTargets") or []:
        labels = raw.get("labels") or {}
        targets.append(
            Target(
                state="active",
                job=labels.get("job"),
                instance=labels.get("instance"),
                scrape_pool=raw.get("scrapePool"),
                scrape_url=raw.get("scrapeUrl"),
                health=raw.get("health"),
                labels=labels,
                discovered_labels=raw.get("discoveredLabels") or {},
                last_error=raw.get("lastError") or "",
                last_scrape=raw.get("lastScrape"),
                last_scrape_duration=raw.get("lastScrapeDuration"),
            )
        )
    for raw in data.get("droppedTargets") or []:
        discovered = raw.get("discoveredLabels") or {}
        targets.append(
            Target(
                state="dropped",
                job=discovered.get("job"),
                instance=discovered.get("__address__"),
                discovered_labels=discovered,
            )
        )
    return targets


def _parsed(tool_name: str, data: Any) -> tuple[str, list[Series], str | None]:
    try:
        return parse_query_data(data)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ToolFailed(
            f"malformed Prometheus answer: {exc!r}", tool=f"prometheus-monitoring.{tool_name}"
        ) from exc


def _unix(moment: datetime) -> str:
    return f"{moment.timestamp():.3f}"


class PrometheusServer(HttpSessionServer):
    """Read-only PromQL and target tools. ``session`` is injectable for tests."""

    name = "prometheus-monitoring"

    def __init__(
        self, config: PrometheusConfig, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        super().__init__(session)
        self.config = config

    def new_session(self) -> aiohttp.ClientSession:
        """A session with the configured auth, timeout and TLS verification."""
        headers: dict[str, str] = {"Accept": "application/json"}
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        auth = None
        if self.config.username is not None and self.config.password is not None:
            auth = aiohttp.BasicAuth(self.config.username, self.config.password.get_secret_value())
        return aiohttp.ClientSession(
            headers=headers,
            auth=auth,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            connector=aiohttp.TCPConnector(ssl=self.config.verify_ssl),
        )

    async def _api(
        self, tool_name: str, method: str, path: str, params: dict[str, str]
    ) -> tuple[Any, list[str]]:
        """One API call: (``data``, ``warnings``), or the mapped tool error."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        url = self.config.base_url.rstrip("/") + path
        full = f"prometheus-monitoring.{tool_name}"
        kwargs: dict[str, Any] = {"data": params} if method == "POST" else {"params": params}
        text = ""
        try:
            async with self._session.request(method, url, **kwargs) as resp:
                status = resp.status
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                    text = (await resp.text())[:300]
        except TimeoutError as exc:  # also aiohttp's ServerTimeoutError
            raise ToolTimeout(
                f"Prometheus at {url} did not answer within {self.config.timeout:g}s", tool=full
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ToolTransientError(
                f"cannot reach Prometheus at {url}: {exc!r}", tool=full
            ) from exc
        if isinstance(body, dict) and body.get("status") == "success" and status < 300:
            return body.get("data"), list(body.get("warnings") or [])
        if isinstance(body, dict):
            message = f"{body.get('errorType', 'error')}: {body.get('error', 'unknown error')}"
        else:
            message = f"non-JSON answer: {text!r}"
        message = f"Prometheus {path} answered HTTP {status}: {message}"
        if status >= 500 or status == 429:
            raise ToolTransientError(message, tool=full, status=status)
        raise ToolFailed(message, tool=full, status=status)

    @tool(read_only=True)
    async def prometheus_query(self, args: PrometheusQueryArgs) -> PrometheusQueryResult:
        """Evaluate PromQL at one instant: result type and series with their values."""
        params = {"query": args.query, "timeout": f"{self.config.timeout:g}s"}
        if args.time is not None:
            params["time"] = _unix(args.time)
        data, warnings = await self._api("prometheus_query", "POST", "/api/v1/query", params)
        kind, series, text = _parsed("prometheus_query", data)
        return PrometheusQueryResult(
            result_type=kind,  # type: ignore[arg-type]
            series=series,
            text=text,
            warnings=warnings,
        )

    @tool(read_only=True)
    async def prometheus_query_range(
        self, args: PrometheusQueryRangeArgs
    ) -> PrometheusQueryRangeResult:
        """Evaluate PromQL over a time range: series with their points."""
        params = {
            "query": args.query,
            "start": _unix(args.start),
            "end": _unix(args.end),
            "step": f"{float(args.step):g}",
            "timeout": f"{self.config.timeout:g}s",
        }
        data, warnings = await self._api(
            "prometheus_query_range", "POST", "/api/v1/query_range", params
        )
        kind, series, _ = _parsed("prometheus_query_range", data)
        return PrometheusQueryRangeResult(
            result_type=kind,  # type: ignore[arg-type]
            series=series,
            warnings=warnings,
        )

    @tool(read_only=True)
    async def prometheus_targets(self, args: PrometheusTargetsArgs) -> PrometheusTargetsResult:
        """Scrape targets with health, labels and last error (filter by state/health/job)."""
        data, _ = await self._api(
            "prometheus_targets", "GET", "/api/v1/targets", {"state": args.state}
        )
        targets = [
            t
            for t in parse_targets(data)
            if (args.health is None or t.health == args.health)
            and (args.job is None or t.job == args.job)
        ]
        return PrometheusTargetsResult(
            targets=targets,
            up=sum(t.health == "up" for t in targets),
            down=sum(t.health == "down" for t in targets),
        )
