"""A throw-away OTLP/HTTP receiver in its own process for the benchmarks: answers every
``POST /v1/traces`` with an empty success and counts the spans it was sent."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

_SERVER = r"""
import sys
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

count = 0

async def traces(request):
    global count
    req = ExportTraceServiceRequest()
    req.ParseFromString(await request.read())
    count += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    return web.Response(content_type="application/x-protobuf")

async def total(request):
    return web.Response(text=str(count))

app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_post("/v1/traces", traces)
app.router.add_get("/count", total)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


@dataclass
class Sink:
    proc: subprocess.Popen[bytes]
    endpoint: str

    def stop(self) -> int:
        """Stop the receiver; returns how many spans it received."""
        with urllib.request.urlopen(f"{self.endpoint}/count", timeout=5) as r:
            n = int(r.read())
        self.proc.terminate()
        self.proc.wait(10)
        return n


def sink_process() -> Sink:
    """Start the receiver on a free loopback port and wait until it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)])
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{endpoint}/count", timeout=1).close()
            return Sink(proc, endpoint)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the OTLP sink did not start")
