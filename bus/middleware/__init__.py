"""Middleware: hooks the consumer runtime calls around each delivery, one concern each
(idempotency, retries, metrics, logging), in the style of dramatiq's middleware."""

from bus.middleware.base import Middleware, Processing
from bus.middleware.idempotency import IdempotencyMiddleware
from bus.middleware.logs import LoggingMiddleware
from bus.middleware.metrics import MetricsMiddleware
from bus.middleware.retries import RetriesMiddleware

__all__ = [
    "IdempotencyMiddleware",
    "LoggingMiddleware",
    "MetricsMiddleware",
    "Middleware",
    "Processing",
    "RetriesMiddleware",
]
