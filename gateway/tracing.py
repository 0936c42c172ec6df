"""A SERVER span per gateway request, child of an incoming W3C ``traceparent`` header.

The events a request publishes are published inside it (through
:class:`bus.tracing.TracingBroker`), so their producer spans, and every handler run and
tool call downstream, join the caller's trace. With tracing off nothing is recorded, but
the trace still propagates: an incoming ``traceparent`` is copied onto the events, and a
request without one starts a new trace id that every event of the request shares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanKind, Status, StatusCode

from bus import tracing

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _parent(request: web.Request, recording: bool) -> Context | None:
    ctx = tracing.extract(request.headers.get("traceparent"))
    if ctx is None and not recording:
        # Off and no caller trace: a random remote parent, shared by this request's events.
        ctx = tracing.extract(tracing.new_traceparent())
    return ctx


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the request in a ``<METHOD> <route>`` SERVER span."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    recording = tracing.enabled()
    ctx = _parent(request, recording)
    if not recording:
        span = (
            trace.get_current_span(ctx)
            if ctx is not None
            else NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
        )
        with trace.use_span(span, end_on_exit=False):
            return await handler(request)
    attrs: dict[str, str] = {"http.request.method": request.method, "http.route": route}
    if request.remote:
        attrs["client.address"] = request.remote
    source = request.match_info.get("source")
    if source:
        attrs["codebus.webhook.source"] = source
    with tracing.tracer().start_as_current_span(
        f"{request.method} {route}",
        context=ctx,
        kind=SpanKind.SERVER,
        attributes=attrs,
    ) as span:
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        return response
