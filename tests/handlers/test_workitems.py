"""The guide's follow-up handlers (units ``workitems`` and ``notify``) against the Azure
DevOps and Slack stand-ins and a real Prometheus scraping the worker's ``/metrics``:
work item fields, the Bug with findings, the Slack alert, and ``codebus_deployment_info``
found by a real PromQL query. Every tool call goes through the guard chain as the
unit's role."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bus.context import HandlerContext
from bus.memory import MemoryBroker
from bus.runtime import Worker
from handlers.deployment_info import DeploymentInfo
from handlers.workitems import REPRO_STEPS, create_once, ref_tag
from schemas.envelope import new_event
from schemas.names import Names
from tests.tools.adapters.ado_server import AdoStub, start_ado_stub
from tests.tools.adapters.prom_process import free_port, prometheus_binary, prometheus_process
from tests.tools.adapters.slack_server import SlackStub, start_slack_stub
from tools.adapters.azure_devops import AzureDevOpsConfig, AzureDevOpsServer
from tools.adapters.prometheus import PrometheusConfig, PrometheusServer
from tools.adapters.slack import SlackConfig, SlackNotificationsServer
from tools.errors import ToolPermissionDenied
from workers import http
from workers.app import make_middleware
from workers.settings import Settings
from workers.toolbox import UNIT_ROLES, ToolsFile, build_toolbox, guard_config
from workers.units import UNITS, unit_roles

pytestmark = [pytest.mark.timeout(120), pytest.mark.redis]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PAT = "pat-secret-0123456789"
SLACK_TOKEN = "xoxb-test-token"


@dataclass
class System:
    """The running units and the stand-ins they talk to."""

    broker: MemoryBroker
    ado: AdoStub
    slack: SlackStub
    registry: CollectorRegistry
    metrics_port: int
    toolbox: Any

    async def publish(self, type: str, data: dict[str, Any], **kw: Any) -> str:
        event = new_event(type, data, **kw)
        await self.broker.publish(event)
        await self.broker.join(30)
        assert not self.broker.dead_letters, [d.headers for d in self.broker.dead_letters]
        return event.id

    def items(self, wtype: str | None = None) -> list[dict[str, Any]]:
        return [
            i["fields"]
            for i in self.ado.work_items.values()
            if wtype is None or i["fields"]["System.WorkItemType"] == wtype
        ]


@contextlib.asynccontextmanager
async def running_units(
    redis: Any, names: Names, prometheus_url: str | None = None, metrics_port: int = 0
) -> AsyncIterator[System]:
    """``workitems`` and ``notify`` on the in-memory broker with real Redis, real adapters
    pointed at the stand-ins, and the workitems worker's /metrics served on a port."""
    ado, slack = AdoStub(pat=PAT), SlackStub(token=SLACK_TOKEN)
    ado_http, slack_http = await start_ado_stub(ado), await start_slack_stub(slack)
    servers: list[Any] = [
        AzureDevOpsServer(
            AzureDevOpsConfig(
                organization_url=f"{ado.base}/org",
                personal_access_token=SecretStr(PAT),
                timeout=5,
            )
        ),
        SlackNotificationsServer(
            SlackConfig(
                bot_token=SecretStr(SLACK_TOKEN),
                base_url=str(slack_http.make_url("/api")),
                timeout=5,
            )
        ),
        PrometheusServer(
            PrometheusConfig(
                base_url=prometheus_url or f"http://127.0.0.1:{free_port()}", timeout=2
            )
        ),
    ]
    cfg = guard_config(ToolsFile(guards={"defaults": {"retry_base_delay": 0.01}}))
    toolbox = build_toolbox(servers, redis, names, cfg, "test")
    await toolbox.start()
    settings = Settings(retry_base_delay=0.05, max_attempts=3, http_port=0, prefix=names.prefix)
    broker = MemoryBroker(names)
    await broker.connect()
    registry = CollectorRegistry()
    runner = await http.serve(http.health_app(registry, {}), "127.0.0.1", metrics_port)
    port = runner.addresses[0][1]
    workers = []
    for unit in ("workitems", "notify"):
        unit_registry = registry if unit == "workitems" else CollectorRegistry()
        worker = Worker(
            broker,
            UNITS[unit].subscriptions(),
            middleware=make_middleware(settings, redis, unit_registry),
            deps={
                "redis": redis,
                "names": names,
                "toolbox": toolbox.as_role(unit),
                "metrics_registry": unit_registry,
                "workitems_project": "Operations",
            },
            source=f"codebus/{unit}",
        )
        await worker.start()
        workers.append(worker)
    try:
        yield System(broker, ado, slack, registry, port, toolbox)
    finally:
        for worker in workers:
            await worker.stop()
        await runner.cleanup()
        await toolbox.close()
        await broker.close()
        await ado_http.close()
        await slack_http.close()


@contextlib.asynccontextmanager
async def prometheus_scraping(port_of_target: int, workdir: Path) -> AsyncIterator[str]:
    """The real prometheus binary scraping ``127.0.0.1:port_of_target`` every second."""
    binary = prometheus_binary()
    if binary is None:
        msg = "prometheus binary not found (apt-get install prometheus)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    async with prometheus_process(
        binary, workdir, {"codebus-workitems": f"127.0.0.1:{port_of_target}"}
    ) as (url, _):
        yield url


async def promql(url: str, query: str, want: Any, seconds: float = 45) -> list[dict[str, Any]]:
    """Poll an instant query until ``want(result)`` holds (scrapes are every second)."""
    deadline = time.monotonic() + seconds
    result: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, KeyError, ValueError):
                async with session.get(f"{url}/api/v1/query", params={"query": query}) as resp:
                    result = (await resp.json())["data"]["result"]
                if want(result):
                    return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{query}: still {result}")
            await asyncio.sleep(0.3)


def completed(version: str, **extra: Any) -> dict[str, Any]:
    return {
        "app": "web",
        "version": version,
        "environment": "staging",
        "image": f"registry.local/web:{version}",
        "flow_id": "dep-123",
        **extra,
    }


async def test_deployment_completed_opens_the_validation_task_and_prometheus_finds_it(
    redis_client: Any, names: Names, tmp_path: Path
) -> None:
    # Prometheus starts after the worker's /metrics exists, and the worker's toolbox
    # queries that same Prometheus: one real loop, scrape and PromQL included.
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(prometheus_scraping(port, tmp_path))
        system = await stack.enter_async_context(running_units(redis_client, names, url, port))

        await system.publish("deployment.completed", completed("2.0"))
        (task,) = system.items("Task")
        assert task["System.TeamProject"] == "Operations"
        assert task["System.Title"] == "Post-deployment validation for web 2.0 (staging)"
        assert "Validate deployment of web v2.0" in task["System.Description"]
        assert "registry.local/web:2.0" in task["System.Description"]
        assert {"codebus", "post-deployment", "web", "staging"} <= set(
            task["System.Tags"].split("; ")
        )

        found = await promql(url, 'codebus_deployment_info{app="web",version="2.0"}', bool)
        assert found[0]["metric"]["environment"] == "staging"
        assert found[0]["value"][1] == "1"

        # The next version replaces the series; its Task says what Prometheus showed.
        await system.publish("deployment.completed", completed("2.1"))
        await promql(url, 'codebus_deployment_info{app="web",version="2.1"}', bool)
        await promql(url, 'codebus_deployment_info{app="web",version="2.0"}', lambda r: not r)
        second = system.items("Task")[1]
        assert "versions Prometheus shows</th><td>2.0" in second["System.Description"]
        latest = await promql(
            url,
            'topk(1, codebus_deployment_completed_timestamp_seconds{app="web"})',
            bool,
        )
        assert latest[0]["metric"]["version"] == "2.1"


async def test_an_unreachable_prometheus_is_said_in_the_task_not_fatal(
    redis_client: Any, names: Names
) -> None:
    async with running_units(redis_client, names) as system:
        await system.publish("deployment.completed", completed("3.0"))
    (task,) = system.items("Task")
    assert "unknown (Prometheus query failed" in task["System.Description"]


async def test_security_issue_found_opens_a_bug_with_findings_and_alerts_slack(
    redis_client: Any, names: Names
) -> None:
    findings = ["CVE-2024-0001", "GHSA-xxxx-yyyy-zzzz", "CVE-2023-4863"]
    async with running_units(redis_client, names) as system:
        await system.publish(
            "security.issue_found",
            {
                "issue": "3 vulnerabilities at or above high in registry.local/web:2.0",
                "severity": "high",
                "app": "web",
                "version": "2.0",
                "image": "registry.local/web:2.0",
                "vulnerability_ids": findings,
            },
        )
    (bug,) = system.items("Bug")
    assert bug["System.Title"].startswith("Security: 3 vulnerabilities")
    assert bug["Microsoft.VSTS.Common.Priority"] == 2
    assert bug["Microsoft.VSTS.Common.Severity"] == "2 - High"
    for finding in findings:
        assert f"https://osv.dev/vulnerability/{finding}" in bug[REPRO_STEPS]
    assert "registry.local/web:2.0" in bug[REPRO_STEPS]
    assert {"security", "high", "web"} <= set(bug["System.Tags"].split("; "))
    # The guide's Slack alert: the notify unit on the same event.
    (alert,) = [m for m in system.slack.messages if m.channel == "C0SECURE"]  # #security-alerts
    assert "Security issue" in str(alert.body)
    assert "danger" in str(alert.body)


@pytest.mark.parametrize(
    ("type", "data", "expect"),
    [
        (
            "deployment.failed",
            {"stage": "rollout", "reason": "ProgressDeadlineExceeded after 600s"},
            ["failed", "rollout", "ProgressDeadlineExceeded after 600s"],
        ),
        (
            "deployment.rolled_back",
            {
                "reason": "analysis failed",
                "evidence": "error_rate 0.071 > 0.05; failed 3 > failure_limit 2",
                "to_version": "1.9",
            },
            ["rolled back", "error_rate 0.071 &gt; 0.05", "1.9"],
        ),
    ],
)
async def test_failures_open_a_task_with_the_evidence(
    redis_client: Any, names: Names, type: str, data: dict[str, Any], expect: list[str]
) -> None:
    base = {"app": "web", "version": "2.0", "environment": "staging", "flow_id": "dep-9"}
    async with running_units(redis_client, names) as system:
        await system.publish(type, {**base, **data})
    (task,) = system.items("Task")
    assert task["System.Title"].startswith("Investigate: web 2.0")
    for text in [*expect, "codebus deployments why dep-9"]:
        assert text in task["System.Title"] + task["System.Description"]


async def test_a_redelivered_event_finds_its_work_item_instead_of_opening_another(
    redis_client: Any, names: Names
) -> None:
    async with running_units(redis_client, names) as system:
        event = new_event("deployment.completed", completed("2.0"))
        ctx = HandlerContext(
            event=event,
            subscription="workitems.completed",
            attempt=2,
            broker=system.broker,
            deps={"toolbox": system.toolbox.as_role("workitems")},
            logger=__import__("logging").getLogger("test"),
            source="test",
        )
        args = {"project": "Operations", "work_item_type": "Task", "title": "Once"}
        first = await create_once(ctx, "post-deployment", dict(args))
        again = await create_once(ctx, "post-deployment", dict(args))
        other = await create_once(ctx, "another-purpose", dict(args))
    assert first[1] and not again[1] and first[0] == again[0]
    assert other[1] and other[0] != first[0]
    assert len(system.ado.work_items) == 2
    assert ref_tag(ctx, "post-deployment") in system.items()[0]["System.Tags"]


async def test_each_unit_calls_only_its_declared_tools(redis_client: Any, names: Names) -> None:
    assert unit_roles() == UNIT_ROLES
    assert set(UNITS) <= set(UNIT_ROLES)
    async with running_units(redis_client, names) as system:
        workitems = system.toolbox.as_role("workitems")
        with pytest.raises(ToolPermissionDenied):
            await workitems.call_tool(
                "slack-notifications.post_message", {"channel": "#x", "text": "no"}
            )
        notify = system.toolbox.as_role("notify")
        with pytest.raises(ToolPermissionDenied):
            await notify.call_tool(
                "azure-devops.create_work_item",
                {"project": "Operations", "work_item_type": "Task", "title": "no"},
            )
    assert not system.ado.work_items


def test_a_late_completion_never_brings_an_old_version_back() -> None:
    info = DeploymentInfo(CollectorRegistry())
    assert info.record("web", "prod", "2.1", completed_at=200.0)
    assert not info.record("web", "prod", "2.0", completed_at=100.0)
    assert info.record("web", "staging", "2.0", completed_at=100.0)
    samples = {
        (s.labels["environment"], s.labels["version"]): s.value
        for metric in info.info.collect()
        for s in metric.samples
    }
    assert samples == {("prod", "2.1"): 1.0, ("staging", "2.0"): 1.0}
