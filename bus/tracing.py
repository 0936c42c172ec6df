"""OpenTelemetry tracing of the bus: set-up from the standard ``OTEL_*`` variables, W3C
``traceparent`` helpers and the producer span of every publish.

Tracing is off unless configured: :func:`setup` installs an SDK tracer provider only when
``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``) or an OTLP endpoint is
set (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and
``OTEL_SDK_DISABLED`` is not true. The exporter, its endpoint, headers, timeouts, the
batch processor and the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) read
their own standard variables. Off, composition roots install nothing: no span, no wrapper.

Spans (instrumentation scope ``codebus``)::

    publish <type>   PRODUCER  every event put on the exchange; the event carries its
                               traceparent (so each consumer's span is its child)
    process <type>   CONSUMER  one handler run (bus.middleware.tracing)
    tool <name>      INTERNAL  one tool call (tools.guards.tracing)
    <METHOD> <route> SERVER    one gateway request (gateway.tracing)
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bus.abc import Broker, Consumer, Delivery, Message, OnDelivery
from schemas.envelope import Event

log = logging.getLogger("codebus.tracing")

SCOPE = "codebus"
_PROPAGATOR = TraceContextTextMapPropagator()
_EXPORTERS = ("otlp", "console")


def configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def enabled() -> bool:
    """Whether an SDK tracer provider is installed (by :func:`setup` or by the host)."""
    return hasattr(trace.get_tracer_provider(), "add_span_processor")


def setup(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the tracer provider and exporters the ``OTEL_*`` variables ask for.

    Returns whether tracing is on. ``service_name`` is the default of
    ``OTEL_SERVICE_NAME``. An unknown exporter name is a ``ValueError`` naming the
    variable. Spans are flushed at interpreter exit (the provider's own hook)."""
    env = os.environ if env is None else env
    if enabled():  # the host application installed its own provider: use it
        return True
    if not configured(env):
        return False
    names = [
        n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()
    ]
    unknown = [n for n in names if n not in _EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER: unsupported exporter {unknown[0]!r}"
            f" (codebus ships {', '.join(_EXPORTERS)}, or none)"
        )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    attributes = {"service.name": env.get("OTEL_SERVICE_NAME") or service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing on: %s exporter(s), service %s", ",".join(names), attributes["service.name"])
    return True


def shutdown() -> None:
    """Flush and stop the installed provider (no-op when tracing is off)."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if stop is not None:
        stop()


_tracer: tuple[object, trace.Tracer] | None = None


def tracer() -> trace.Tracer:
    """The codebus tracer of the current global provider (cached: getting one from the
    SDK costs as much as a span)."""
    global _tracer
    provider = trace.get_tracer_provider()
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer(SCOPE))
    return _tracer[1]


# --- W3C traceparent ------------------------------------------------------------------
def extract(traceparent: str | None) -> otel_context.Context | None:
    """A context whose remote parent is ``traceparent`` (None if absent or invalid)."""
    if not traceparent:
        return None
    ctx = _PROPAGATOR.extract({"traceparent": traceparent})
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


def current_traceparent(span: Span | None = None) -> str | None:
    """The W3C traceparent of ``span`` (default: the current span), None if invalid."""
    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(span) if span is not None else None
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier.get("traceparent")


def new_traceparent() -> str:
    """A fresh sampled root traceparent (random trace and span ids), for a process that
    starts a trace while its own tracing is off: downstream processes still join it."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def valid_traceparent(value: str | None) -> str | None:
    """``value`` if it is a valid W3C traceparent, else None (a bad header is ignored)."""
    return value if extract(value) is not None else None


def trace_ids(span: Span | None = None) -> tuple[str, str] | None:
    """(trace id, span id) of ``span`` (default: current) in hex, None if none."""
    sc = (span or trace.get_current_span()).get_span_context()
    if not sc.is_valid:
        return None
    return format(sc.trace_id, "032x"), format(sc.span_id, "016x")


# --- publishing -----------------------------------------------------------------------
@contextmanager
def producer_span(event: Event) -> Iterator[Event]:
    """A ``publish <type>`` PRODUCER span; yields ``event`` carrying its traceparent.

    The parent is the current span, else the event's own traceparent (a CLI
    ``--traceparent``, a replay). With tracing off (non-recording spans) the parent's
    traceparent is kept, and an event with none gets a new root one."""
    parent = None if trace.get_current_span().get_span_context().is_valid else event.traceparent
    attrs = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.destination.name": event.type,
        "messaging.message.id": event.id,
        "cloudevents.event_type": event.type,
        "cloudevents.event_source": event.source,
    }
    if event.correlationid:
        attrs["codebus.correlationid"] = event.correlationid
    with tracer().start_as_current_span(
        f"publish {event.type}", context=extract(parent), kind=SpanKind.PRODUCER, attributes=attrs
    ) as span:
        tp = current_traceparent(span) or event.traceparent or new_traceparent()
        yield event if tp == event.traceparent else event.model_copy(update={"traceparent": tp})


class TracingBroker:
    """A :class:`~bus.abc.Broker` whose ``publish`` runs in a producer span and stamps
    the span's traceparent on the event; everything else is the wrapped broker's."""

    #: ``HandlerContext.send`` (timers, pipeline steps) opens one of these around
    #: ``send``: a message into one queue is a publish in the trace as well.
    producer_span = staticmethod(producer_span)

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.names = inner.names

    def __getattr__(self, name: str) -> Any:  # blocked(), url, ... of the concrete broker
        return getattr(self.inner, name)

    async def publish(self, event: Event, *, headers: Mapping[str, Any] | None = None) -> None:
        """Publish ``event`` inside a ``publish <type>`` span."""
        with producer_span(event) as stamped:
            await self.inner.publish(stamped, headers=headers)

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def declare_queue(self, queue: str, patterns: Sequence[str]) -> None:
        await self.inner.declare_queue(queue, patterns)

    async def send(self, queue: str, message: Message, *, delay: float = 0.0) -> None:
        await self.inner.send(queue, message, delay=delay)

    async def dead_letter(self, message: Message) -> None:
        await self.inner.dead_letter(message)

    async def consume(self, queue: str, on_delivery: OnDelivery, *, prefetch: int) -> Consumer:
        return await self.inner.consume(queue, on_delivery, prefetch=prefetch)

    async def tap(self, patterns: Sequence[str], on_delivery: OnDelivery) -> Consumer:
        return await self.inner.tap(patterns, on_delivery)

    async def get(self, queue: str) -> Delivery | None:
        return await self.inner.get(queue)

    async def purge(self, queue: str) -> int:
        return await self.inner.purge(queue)

    async def depth(self, queue: str) -> int:
        return await self.inner.depth(queue)


def traced(broker: Broker) -> Broker:
    """``broker`` wrapped in :class:`TracingBroker` when tracing is on, else itself."""
    return TracingBroker(broker) if enabled() else broker
