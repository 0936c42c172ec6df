"""Prometheus metrics of one gateway application, in its own registry.

A registry per app (not the process-global default) lets tests build many apps in one
process and lets ``GET /metrics`` expose exactly this gateway's series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    """Counters for requests, published events and rejections."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "codebus_gateway_requests_total",
            "HTTP requests answered, by route template and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "codebus_gateway_request_seconds",
            "Time to answer a request, by route template.",
            ["route"],
            registry=self.registry,
        )
        self.published = Counter(
            "codebus_gateway_published_events_total",
            "Events published with a broker confirm, by event type.",
            ["type"],
            registry=self.registry,
        )
        self.outcome_unknown = Counter(
            "codebus_gateway_publish_outcome_unknown_total",
            "Publishes sent without a broker confirm (answered 503 outcome_unknown).",
            registry=self.registry,
        )
        self.connections = Gauge(
            "codebus_gateway_open_connections",
            "HTTP connections open right now (at most server.max_connections).",
            registry=self.registry,
        )
        self.accept_errors = Counter(
            "codebus_gateway_accept_errors_total",
            "Failed accept() calls (e.g. out of file descriptors).",
            registry=self.registry,
        )
        self.rejections = Counter(
            "codebus_gateway_rejections_total",
            "Requests refused, by reason (signature, replay, scope, unavailable, ...).",
            ["reason"],
            registry=self.registry,
        )
