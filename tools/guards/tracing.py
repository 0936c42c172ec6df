"""A ``tool <name>`` span around each tool call (OpenTelemetry API only).

Attributes: the server and tool, the outcome (the ``outcome`` label of the metrics), the
role, whether the cache answered, the attempts the retry guard made, whether the call
was a half-open probe and the breaker state this process saw. Never the arguments nor
the result: they may hold secrets. Off (no SDK tracer provider installed), the guard is
not in the chain at all.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel

from tools.guards import Next, ToolCall
from tools.guards.metrics import ToolMetrics, outcome_of

SCOPE = "codebus"


def tracing_on() -> bool:
    """Whether an SDK tracer provider is installed (the API's default records nothing)."""
    return hasattr(trace.get_tracer_provider(), "add_span_processor")


class TracingGuard:
    """Second-outermost guard (inside metrics): one span per call, denials included."""

    def __init__(self, metrics: ToolMetrics) -> None:
        self.metrics = metrics
        self._cached: tuple[object, trace.Tracer] | None = None

    def _tracer(self) -> trace.Tracer:
        provider = trace.get_tracer_provider()
        if self._cached is None or self._cached[0] is not provider:
            self._cached = (provider, provider.get_tracer(SCOPE))
        return self._cached[1]

    def enabled(self, call: ToolCall) -> bool:
        """Only when tracing is on."""
        return tracing_on()

    async def __call__(self, call: ToolCall, call_next: Next) -> BaseModel:
        """Run the call in its span; record what the inner guards learned."""
        server = call.spec.server
        attrs: dict[str, str | bool] = {
            "codebus.tool.server": server,
            "codebus.tool.name": call.name,
            "codebus.tool.read_only": call.spec.read_only,
        }
        if call.role:
            attrs["codebus.tool.role"] = call.role
        tracer = self._tracer()
        with tracer.start_as_current_span(
            f"tool {call.name}",
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            record_exception=False,  # exception texts may quote arguments
            set_status_on_exception=False,
        ) as span:
            error: BaseException | None = None
            try:
                return await call_next(call)
            except BaseException as exc:
                error = exc
                raise
            finally:
                outcome = outcome_of(error)
                span.set_attribute("codebus.tool.outcome", outcome)
                span.set_attribute("codebus.tool.cache_hit", call.cache_hit)
                span.set_attribute("codebus.tool.attempts", call.attempts)
                if call.probe:
                    span.set_attribute("codebus.tool.probe", True)
                if call.policy.breaker:
                    state = self.metrics.last_breaker_state(server)
                    if state is not None:
                        span.set_attribute("codebus.tool.breaker_state", state)
                if error is not None:
                    span.set_status(Status(StatusCode.ERROR, outcome))
                    span.set_attribute("error.type", type(error).__name__)
