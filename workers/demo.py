"""``codebus demo``: the whole system in one process on embedded defaults.

In-memory broker, fakeredis as the Redis stand-in, in-memory fakes of every tool
server - the same handlers, middleware, inbox and guard chain as production. Two
deployments run end to end: one clean image that is built, scanned, applied and rolled
out, and one with a critical vulnerability that is stopped at the scan.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import TextIO

import fakeredis

from bus.abc import Delivery
from bus.memory import MemoryBroker
from bus.runtime import Worker
from schemas.envelope import Event, new_event
from schemas.names import Names
from schemas.tools.security_scanner import Vulnerability
from tools.adapters.security_scanner_fake import FakeSecurityScannerServer
from tools.adapters.slack_fake import FakeSlackServer
from workers.app import make_middleware
from workers.settings import Settings
from workers.toolbox import build_toolbox, fake_servers, guard_config, load_tools_file
from workers.units import UNITS

DEMO_UNITS = ("deploy", "security", "notify", "audit")
VULNERABLE_IMAGE = "shop:2.0.0"
MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "web:1.4.2"}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


def _summary(event: Event) -> str:
    d = event.data
    keys = (
        "app",
        "version",
        "image",
        "image_tag",
        "total_vulnerabilities",
        "stage",
        "reason",
        "channel",
        "title",
    )
    return " ".join(f"{k}={d[k]}" for k in keys if k in d and d[k] not in (None, ""))[:110]


async def run_demo(out: TextIO, timeout: float = 30.0) -> int:
    """Run the demo, printing the event flow to ``out``; 0 when both flows ended as
    expected."""
    settings = Settings(retry_base_delay=0.2, max_attempts=3, http_port=0)
    names = Names()
    broker = MemoryBroker(names)
    await broker.connect()
    redis = fakeredis.FakeAsyncRedis()
    servers = fake_servers()
    scanner = next(s for s in servers if isinstance(s, FakeSecurityScannerServer))
    scanner.image_vulnerabilities[VULNERABLE_IMAGE] = [
        Vulnerability(
            id="CVE-2022-0778",
            package="openssl",
            installed_version="3.0.2-0ubuntu1",
            fixed_version="3.0.2-0ubuntu1.1",
            severity="critical",
            ecosystem="Debian",
            summary="infinite loop in BN_mod_sqrt()",
        )
    ]
    slack = next(s for s in servers if isinstance(s, FakeSlackServer))
    toolbox = build_toolbox(servers, redis, names, guard_config(load_tools_file(None)), "demo")
    await toolbox.start()
    t0 = time.monotonic()
    seen: list[Event] = []

    async def show(d: Delivery) -> None:
        ev = Event.from_json(d.message.body)
        seen.append(ev)
        cause = f"<- {ev.causationid[:8]}" if ev.causationid else "   (origin)"
        out.write(
            f"{time.monotonic() - t0:6.3f}s  {ev.type:<26} {ev.id[:8]} {cause:<11} {_summary(ev)}\n"
        )
        await d.ack()

    tap = await broker.tap(["#"], show)
    workers = []
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    for unit_name in DEMO_UNITS:
        unit = UNITS[unit_name]
        w = Worker(
            broker,
            unit.subscriptions(),
            middleware=make_middleware(settings, redis, registry)
            if not workers
            else make_middleware(settings, redis, CollectorRegistry()),
            deps={
                "redis": redis,
                "names": names,
                "toolbox": toolbox.as_role(unit_name),
                "rollout_timeout": 5,
            },
            source=f"codebus/{unit_name}",
        )
        await w.start()
        workers.append(w)
    out.write("codebus demo: in-memory broker, fakeredis, fake tool servers\n")
    out.write(f"units: {', '.join(DEMO_UNITS)}\n\n")
    with tempfile.TemporaryDirectory() as ctx_dir:
        (Path(ctx_dir) / "Dockerfile").write_text("FROM scratch\n")
        (Path(ctx_dir) / "k8s.yaml").write_text(MANIFEST)
        good = new_event(
            "deployment.requested",
            {
                "app": "web",
                "version": "1.4.2",
                "environment": "staging",
                "context_path": ctx_dir,
                "manifest_path": str(Path(ctx_dir) / "k8s.yaml"),
            },
            source="codebus/demo",
        )
        bad = new_event(
            "deployment.requested",
            {
                "app": "shop",
                "version": "2.0.0",
                "environment": "production",
                "image": VULNERABLE_IMAGE,
            },
            source="codebus/demo",
        )
        await broker.publish(good)
        await broker.publish(bad)
        try:
            await broker.join(timeout)
        except TimeoutError:
            out.write("demo did not settle in time\n")
    for w in workers:
        await w.stop()
    await tap.cancel()
    await toolbox.close()
    ends = {
        e.correlationid: e.type
        for e in seen
        if e.type in ("deployment.completed", "deployment.failed")
    }
    audit_len = await redis.xlen(names.event_log_stream)
    tool_calls = await redis.xlen(names.audit_stream)
    out.write("\nsummary\n")
    out.write(f"  web 1.4.2  -> {ends.get(good.correlationid, 'no outcome')}\n")
    out.write(f"  shop 2.0.0 -> {ends.get(bad.correlationid, 'no outcome')}\n")
    out.write(
        f"  events: {len(seen)}, audited events: {audit_len}, audited tool calls: "
        f"{tool_calls}, slack messages: {len(slack.messages)}, "
        f"dead letters: {len(broker.dead_letters)}\n"
    )
    await redis.aclose()
    ok = (
        ends.get(good.correlationid) == "deployment.completed"
        and ends.get(bad.correlationid) == "deployment.failed"
        and not broker.dead_letters
        and audit_len == len(seen)
    )
    out.write("demo OK\n" if ok else "demo FAILED\n")
    return 0 if ok else 1


def main() -> int:
    """Entry point used by the CLI."""
    import sys

    return asyncio.run(run_demo(sys.stdout))
