"""A local OTLP/HTTP trace receiver for tests: decodes each export request (protobuf)
into :class:`SpanRecord` rows, so a test can join the spans of several processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class SpanRecord:
    """One exported span."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    events: tuple[str, ...]


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    return getattr(v, which) if which else None


@dataclass
class OtlpSink:
    """Spans received so far, and the endpoint to give ``OTEL_EXPORTER_OTLP_ENDPOINT``."""

    endpoint: str = ""
    spans: list[SpanRecord] = field(default_factory=list)
    requests: int = 0

    def add(self, body: bytes) -> None:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        self.requests += 1
        for rs in req.resource_spans:
            res = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        SpanRecord(
                            service=str(res.get("service.name", "")),
                            name=s.name,
                            kind=s.kind,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            events=tuple(e.name for e in s.events),
                        )
                    )

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """The spans of one trace."""
        return [s for s in self.spans if s.trace_id == trace_id]


@asynccontextmanager
async def otlp_sink() -> AsyncIterator[OtlpSink]:
    """Serve ``POST /v1/traces`` on a free loopback port."""
    sink = OtlpSink()

    async def receive(request: web.Request) -> web.Response:
        sink.add(await request.read())
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sink.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield sink
    finally:
        await runner.cleanup()
        await asyncio.sleep(0)
