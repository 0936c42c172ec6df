"""``codebus demo``: the whole system in one process on embedded defaults.

In-memory broker, fakeredis as the Redis stand-in, in-memory fakes of every tool
server - the same handlers, middleware, inbox, guard chain and flow engine as
production, with time compressed (bakes and analysis intervals of a fraction of a
second). Four deployments run end to end:

- web 1.4.2, rolling: built, scanned, applied, rolled out;
- shop 2.0.0: a critical vulnerability stops it at the scan;
- api 1.1, canary: 25 % and an analysis, 50 % and an analysis; the fake Prometheus's
  error rate rises, the second analysis fails and the canary is rolled back, with the
  reason in one line;
- portal 2.0, blue-green: waits for approval; the demo approves it as an operator
  would (``codebus deployments approve``) and traffic switches to the new colour.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from flows.report import why
from flows.store import FlowStore
from schemas.analysis import AnalysisTemplate
from schemas.envelope import Event, new_event
from schemas.flows import (
    BlueGreenSpec,
    CanarySpec,
    FlowsConfig,
    FlowState,
    RollingSpec,
    StrategySpec,
)
from schemas.tools.security_scanner import Vulnerability
from tools.fakes.kubernetes import sample_app_manifests
from tools.fakes.prometheus import FakePrometheusServer
from tools.fakes.security_scanner import FakeSecurityScannerServer
from tools.fakes.slack import FakeSlackServer
from workers.embedded import DEFAULT_UNITS, EmbeddedSystem
from workers.units import Unit

VULNERABLE_IMAGE = "shop:2.0.0"
ERROR_RATE = (
    'sum(rate(http_errors_total{app="api"}[1m])) / sum(rate(http_requests_total{app="api"}[1m]))'
)


def _manifests(app: str, image: str, replicas: int) -> str:
    return yaml.safe_dump_all(sample_app_manifests(app, image, replicas))


def _config(root: str) -> FlowsConfig:
    template = AnalysisTemplate.model_validate(
        {
            "metrics": [
                {
                    "name": "error-rate",
                    "query": ERROR_RATE.replace('"api"', '"{{args.app}}"'),
                    "interval": 0.2,
                    "count": 2,
                    "success_condition": "result[0] <= 0.01",
                    "failure_condition": "result[0] > 0.05",
                    "failure_limit": 1,
                }
            ]
        }
    )
    analysis = {"analysis": {"template": "error-rate"}}
    canary = CanarySpec(
        replicas=4,
        steps=({"set_weight": 25}, analysis, {"set_weight": 50}, analysis),  # type: ignore[arg-type]
        poll_interval=0.05,
    )
    blue_green = BlueGreenSpec(
        replicas=2, scale_down_delay=0.3, poll_interval=0.05, approval_timeout=None
    )
    rolling = RollingSpec(progress_deadline=5.0, poll_interval=0.05)
    return FlowsConfig(
        manifest_roots=(root,),
        allow_unlisted_apps=True,
        default=StrategySpec(rolling=rolling, canary=canary, blue_green=blue_green),
        analysis_templates={"error-rate": template},
    )


def _summary(event: Event) -> str:
    d = event.data
    keys = (
        "app",
        "version",
        "image",
        "total_vulnerabilities",
        "description",
        "desired_weight",
        "actual_weight",
        "metric",
        "value",
        "phase",
        "stage",
        "by",
        "reason",
        "channel",
        "title",
    )
    return " ".join(f"{k}={d[k]}" for k in keys if k in d and d[k] not in (None, ""))[:120]


class _Demo:
    def __init__(self, system: EmbeddedSystem, root: Path) -> None:
        self.system = system
        self.root = root
        self.store = FlowStore(system.redis, system.names)

    async def request(self, app: str, version: str, strategy: str, **extra: Any) -> Event:
        path = self.root / app / f"{version}.yaml"
        path.parent.mkdir(exist_ok=True)
        replicas = 4 if strategy == "canary" else 2
        path.write_text(_manifests(app, extra.pop("image", f"{app}:{version}"), replicas))
        data = {
            "app": app,
            "version": version,
            "environment": "staging",
            "strategy": strategy,
            "manifest_path": str(path),
            **extra,
        }
        event = new_event("deployment.requested", data, source="codebus/demo")
        await self.system.broker.publish(event)
        return event

    async def flow(self, event: Event, *phases: str, timeout: float = 10.0) -> FlowState:
        """The flow of ``event`` once it is in one of ``phases`` with nothing left to do."""
        async with asyncio.timeout(timeout):
            while True:
                started = [
                    e
                    for e in self.system.of_type("deployment.started")
                    if e.causationid == event.id
                ]
                if started:
                    state = await self.store.load(str(started[0].data["flow_id"]))
                    if state is not None and state.phase in phases and not state.outbox:
                        return state
                await asyncio.sleep(0.02)

    async def approve(self, state: FlowState, by: str, reason: str) -> None:
        data = {"flow_id": state.id, "by": by, "reason": reason}
        await self.system.broker.publish(
            new_event("deployment.approval_granted", data, source="codebus/demo")
        )


async def run_demo(
    out: TextIO, timeout: float = 30.0, extra_units: Sequence[str | Unit] = ()
) -> int:
    """Run the demo, printing the event flow to ``out``; 0 when every flow ended as
    expected. ``extra_units`` (installed unit names or Unit objects, a user's own) run
    beside codebus's units and see the same events."""
    t0 = time.monotonic()

    def show(ev: Event) -> None:
        cause = f"<- {ev.causationid[:8]}" if ev.causationid else "   (origin)"
        out.write(
            f"{time.monotonic() - t0:6.3f}s  {ev.type:<30} {ev.id[:8]} {cause:<11} {_summary(ev)}\n"
        )

    root = tempfile.mkdtemp(prefix="codebus-demo-")
    outcomes: dict[str, str] = {}
    ok = False
    try:
        async with EmbeddedSystem(
            (*DEFAULT_UNITS, *extra_units),
            on_event=show,
            flows_config=_config(root),
            sweep_interval=0.5,
        ) as system:
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
            # The canary's error rate: fine at 25 %, then it climbs past 5 %.
            system.server(FakePrometheusServer).script(ERROR_RATE, [0.002, 0.004, 0.071, 0.09])
            out.write("codebus demo: in-memory broker, fakeredis, fake tool servers\n")
            out.write(f"units: {', '.join(system.units)}\n\n")
            demo = _Demo(system, Path(root))
            try:
                async with asyncio.timeout(timeout):
                    outcomes = await _scenario(demo, out)
                await system.settle(timeout)
            except TimeoutError:
                out.write("demo did not finish in time\n")
            audit_len = await system.redis.xlen(system.names.event_log_stream)
            tool_calls = await system.redis.xlen(system.names.audit_stream)
            dead = len(system.broker.dead_letters)
            seen = system.events
            slack = system.server(FakeSlackServer)
            out.write("\nsummary\n")
            for name, line in outcomes.items():
                out.write(f"  {name:<22} -> {line}\n")
            out.write(
                f"  events: {len(seen)}, audited events: {audit_len}, audited tool calls: "
                f"{tool_calls}, slack messages: {len(slack.messages)}, dead letters: {dead}\n"
            )
            ok = (
                outcomes.get("web 1.4.2", "").startswith("deployment.completed")
                and outcomes.get("shop 2.0.0", "").startswith("deployment.failed")
                and outcomes.get("api 1.1 canary", "").startswith("rolled_back: analysis")
                and outcomes.get("portal 2.0 blue-green", "").startswith("succeeded")
                and dead == 0
                and audit_len == len(seen)
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out.write("demo OK\n" if ok else "demo FAILED\n")
    return 0 if ok else 1


async def _scenario(demo: _Demo, out: TextIO) -> dict[str, str]:
    web = await demo.request("web", "1.4.2", "rolling")
    shop = await demo.request("shop", "2.0.0", "rolling", image=VULNERABLE_IMAGE)
    api_v1 = await demo.request("api", "1.0", "canary")
    portal_v1 = await demo.request("portal", "1.0", "blue_green")
    await demo.flow(api_v1, "succeeded")  # nothing to compare with: deployed directly
    api = await demo.request("api", "1.1", "canary")
    first = await demo.flow(portal_v1, "awaiting_approval")
    await demo.approve(first, "demo-operator", "first release")
    await demo.flow(portal_v1, "succeeded")
    portal = await demo.request("portal", "2.0", "blue_green")
    waiting = await demo.flow(portal, "awaiting_approval")
    out.write(f"         ... {why(waiting)}; approving as demo-operator\n")
    await demo.approve(waiting, "demo-operator", "preview checked")
    results = {
        "web 1.4.2": await demo.flow(web, "succeeded", "failed", "rolled_back"),
        "shop 2.0.0": await demo.flow(shop, "failed", "succeeded"),
        "api 1.1 canary": await demo.flow(api, "rolled_back", "succeeded", "failed"),
        "portal 2.0 blue-green": await demo.flow(portal, "succeeded", "rolled_back", "aborted"),
    }
    lines = {}
    for name, state in results.items():
        if name in ("web 1.4.2", "shop 2.0.0"):
            kind = "deployment.completed" if state.phase == "succeeded" else "deployment.failed"
            lines[name] = f"{kind} ({why(state)})"[:160]
        else:
            lines[name] = why(state)
    return lines
