"""Done-when of issue 12 (tracing): the gateway and two real worker processes (deploy,
notify), each exporting its spans over OTLP/HTTP to a sink this test runs; a signed
webhook sent with a caller's ``traceparent``; one connected trace joined by trace id
covering the gateway request, both handlers and a tool call, with correct parent links."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import aiohttp

from schemas.webhooks import sign_headers
from tests.ops.otlp_sink import OtlpSink, SpanRecord, otlp_sink
from tests.ops.test_worker_metrics import MANIFEST, free_port
from tests.reports import report
from tests.workers.test_cli import _inspect_and_clean, run

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SERVER, PRODUCER, CONSUMER, INTERNAL = 2, 4, 5, 1  # OTLP Span.SpanKind values


def _connected(sink: OtlpSink) -> list[SpanRecord] | None:
    """The caller's trace once it holds every span asked for, else None."""
    spans = sink.trace(CALLER_TRACE)
    names = {(s.service, s.name) for s in spans}
    wanted = {
        ("codebus-gateway", "POST /webhooks/{source}"),
        ("codebus-deploy", "process deployment.requested"),
        ("codebus-notify", "process deployment.started"),
    }
    has_tool = any(s.name == "tool slack-notifications.send_notification" for s in spans)
    return spans if wanted <= names and has_tool else None


async def _spawn(args: list[str], env: dict[str, str], cwd: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from workers.cli import main; main()",
        *args,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_one_trace_across_gateway_and_two_workers(
    amqp_url, redis_url, redis_client, names, tmp_path
) -> None:
    (tmp_path / "k8s" / "web").mkdir(parents=True)
    (tmp_path / "k8s" / "web" / "deployment.yaml").write_text(MANIFEST)
    config = tmp_path / "gateway.json"
    config.write_text(
        json.dumps(
            {
                "sources": [
                    {
                        "name": "ci",
                        "kind": "standard",
                        "secret": SECRET,
                        "allowed_types": ["deployment.requested"],
                    }
                ]
            }
        )
    )
    port = free_port()
    async with otlp_sink() as sink:
        env = {
            **os.environ,
            "CODEBUS_AMQP_URL": amqp_url,
            "CODEBUS_REDIS_URL": redis_url,
            "CODEBUS_PREFIX": names.prefix,
            "CODEBUS_FAKE_TOOLS": "true",
            "CODEBUS_HTTP_PORT": "0",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        env.pop("OTEL_SERVICE_NAME", None)
        bus_env = {"CODEBUS_AMQP_URL": amqp_url, "CODEBUS_PREFIX": names.prefix}
        declared = await asyncio.to_thread(run, "topology", "--declare", env=bus_env)
        assert declared.returncode == 0, declared.stderr
        procs = [
            await _spawn(["worker", "deploy"], env, str(tmp_path)),
            await _spawn(["worker", "notify"], env, str(tmp_path)),
            await _spawn(
                ["gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                env,
                str(tmp_path),
            ),
        ]
        try:
            body = json.dumps(
                {
                    "type": "deployment.requested",
                    "subject": "web",
                    "data": {"app": "web", "version": "1", "image": "web:1", "context_path": "."},
                }
            ).encode()
            headers = {
                **sign_headers(SECRET, f"msg_{uuid.uuid4().hex}", int(time.time()), body),
                "content-type": "application/json",
                "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
            }
            status = None
            async with aiohttp.ClientSession() as http:
                for _ in range(150):  # until the gateway listens
                    try:
                        async with http.post(
                            f"http://127.0.0.1:{port}/webhooks/ci", data=body, headers=headers
                        ) as resp:
                            status = resp.status
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
            assert status == 202
            started = time.monotonic()
            spans = None
            while time.monotonic() - started < 60 and spans is None:
                await asyncio.sleep(0.2)
                spans = _connected(sink)
            assert spans is not None, sorted({(s.service, s.name) for s in sink.spans})
            report(
                "tracing_e2e",
                f"processes=3 spans_in_trace={len(spans)} "
                f"services={len({s.service for s in spans})} "
                f"seconds_to_connected_trace={time.monotonic() - started:.1f}",
            )
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            await _inspect_and_clean(amqp_url, names)
        # The processes flushed their last spans on exit: the whole trace is in.
        spans = sink.trace(CALLER_TRACE)

    by_id = {s.span_id: s for s in spans}

    def one(service: str, name: str) -> SpanRecord:
        found = [s for s in spans if s.service == service and s.name == name]
        assert found, f"no {name!r} span from {service}"
        return found[0]

    server = one("codebus-gateway", "POST /webhooks/{source}")
    assert (server.kind, server.parent_id) == (SERVER, CALLER_SPAN)
    assert server.attributes["http.response.status_code"] == 202
    request_pub = one("codebus-gateway", "publish deployment.requested")
    assert (request_pub.kind, request_pub.parent_id) == (PRODUCER, server.span_id)
    deploy = one("codebus-deploy", "process deployment.requested")
    assert (deploy.kind, deploy.parent_id) == (CONSUMER, request_pub.span_id)
    assert deploy.attributes["codebus.subscription"] == "deploy.requested"
    # The deploy facade is a pipeline: the request's delivery validates, announces the
    # deployment and schedules the next step (workflow.step_due); each later step runs
    # in a delivery of its own on deploy.steps, in the same trace, under the request.

    def ancestors(span: SpanRecord) -> list[SpanRecord]:
        chain = []
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            chain.append(span)
        return chain

    started_pub = one("codebus-deploy", "publish deployment.started")
    assert (started_pub.kind, started_pub.parent_id) == (PRODUCER, deploy.span_id)
    notify = one("codebus-notify", "process deployment.started")
    assert (notify.kind, notify.parent_id) == (CONSUMER, started_pub.span_id)
    build = one("codebus-deploy", "tool docker.docker_build")
    assert build.kind == INTERNAL
    build_step = by_id[build.parent_id]
    assert (build_step.kind, build_step.service) == (CONSUMER, "codebus-deploy")
    assert build_step.attributes["codebus.subscription"] == "deploy.steps"
    assert deploy in ancestors(build)
    assert build.attributes["codebus.tool.outcome"] == "ok"
    assert build.attributes["codebus.tool.breaker_state"] == "closed"
    # notify.compose turns the event into notification.requested; notify.send calls Slack.
    compose_pub = one("codebus-notify", "publish notification.requested")
    assert (compose_pub.kind, compose_pub.parent_id) == (PRODUCER, notify.span_id)
    send = one("codebus-notify", "process notification.requested")
    assert (send.kind, send.parent_id) == (CONSUMER, compose_pub.span_id)
    slack = [s for s in spans if s.name == "tool slack-notifications.send_notification"]
    assert slack, "the notify handler's tool call has no span"
    assert (slack[0].kind, slack[0].parent_id) == (INTERNAL, send.span_id)
    assert slack[0].attributes["codebus.tool.outcome"] == "ok"
    # Never arguments: only the codebus.tool.* attributes the guard sets.
    assert {k.split(".")[-1] for k in slack[0].attributes} <= {
        "server",
        "name",
        "read_only",
        "role",
        "outcome",
        "cache_hit",
        "attempts",
        "breaker_state",
        "probe",
    }
    # Connected: every span's parent is in the trace, except the gateway's (the caller's).
    orphans = [s.name for s in spans if s is not server and s.parent_id not in by_id]
    assert not orphans, orphans
