"""``codebus demo``: the whole system in one process on embedded defaults.

In-memory broker, fakeredis as the Redis stand-in, in-memory fakes of every tool
server - the same handlers, middleware, inbox and guard chain as production. Two
deployments run end to end: one clean image that is built, scanned, applied and rolled
out, and one with a critical vulnerability that is stopped at the scan.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import TextIO

from schemas.envelope import Event, new_event
from schemas.flows import FlowsConfig, RollingSpec, StrategySpec
from schemas.tools.security_scanner import Vulnerability
from tools.adapters.security_scanner_fake import FakeSecurityScannerServer
from tools.adapters.slack_fake import FakeSlackServer
from workers.embedded import EmbeddedSystem

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
    t0 = time.monotonic()

    def show(ev: Event) -> None:
        cause = f"<- {ev.causationid[:8]}" if ev.causationid else "   (origin)"
        out.write(
            f"{time.monotonic() - t0:6.3f}s  {ev.type:<26} {ev.id[:8]} {cause:<11} {_summary(ev)}\n"
        )

    ctx_dir = tempfile.mkdtemp(prefix="codebus-demo-")
    flows = FlowsConfig(
        manifest_roots=(ctx_dir,),
        allow_unlisted_apps=True,
        default=StrategySpec(rolling=RollingSpec(progress_deadline=5.0, poll_interval=0.05)),
    )
    async with EmbeddedSystem(on_event=show, flows_config=flows, sweep_interval=0.5) as system:
        system.server(FakeSecurityScannerServer).image_vulnerabilities[VULNERABLE_IMAGE] = [
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
        slack = system.server(FakeSlackServer)
        out.write("codebus demo: in-memory broker, fakeredis, fake tool servers\n")
        out.write(f"units: {', '.join(system.units)}\n\n")
        try:
            (Path(ctx_dir) / "Dockerfile").write_text("FROM scratch\n")
            (Path(ctx_dir) / "k8s.yaml").write_text(MANIFEST)
            (Path(ctx_dir) / "shop").mkdir()
            shop = MANIFEST.replace("web", "shop").replace("shop:1.4.2", VULNERABLE_IMAGE)
            (Path(ctx_dir) / "shop" / "k8s.yaml").write_text(shop)
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
            await system.broker.publish(good)
            await system.broker.publish(bad)
            try:
                await system.settle(timeout)
            except TimeoutError:
                out.write("demo did not settle in time\n")
        finally:
            shutil.rmtree(ctx_dir, ignore_errors=True)
        seen = system.events
        ends = {
            e.correlationid: e.type
            for e in seen
            if e.type in ("deployment.completed", "deployment.failed")
        }
        audit_len = await system.redis.xlen(system.names.event_log_stream)
        tool_calls = await system.redis.xlen(system.names.audit_stream)
        dead = len(system.broker.dead_letters)
    out.write("\nsummary\n")
    out.write(f"  web 1.4.2  -> {ends.get(good.correlationid, 'no outcome')}\n")
    out.write(f"  shop 2.0.0 -> {ends.get(bad.correlationid, 'no outcome')}\n")
    out.write(
        f"  events: {len(seen)}, audited events: {audit_len}, audited tool calls: "
        f"{tool_calls}, slack messages: {len(slack.messages)}, dead letters: {dead}\n"
    )
    ok = (
        ends.get(good.correlationid) == "deployment.completed"
        and ends.get(bad.correlationid) == "deployment.failed"
        and dead == 0
        and audit_len == len(seen)
    )
    out.write("demo OK\n" if ok else "demo FAILED\n")
    return 0 if ok else 1
