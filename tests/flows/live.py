"""A deploy + security + audit worker on the live RabbitMQ and Redis, with the strict
Kubernetes API-server stand-in behind the real kubernetes adapter and (optionally) the
real Prometheus behind the real prometheus adapter. Used by the live strategy tests and
the crash test's worker process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from bus.rabbitmq import RabbitBroker
from bus.runtime import Worker
from flows.store import FlowStore
from schemas.envelope import Event, new_event
from schemas.flows import FlowsConfig, FlowState
from schemas.names import Names
from tests.flows.helpers import deployment, service
from tests.tools.adapters.k8s_apiserver import FakeApiServer
from tests.tools.adapters.k8s_state import by_kind
from tools.adapters.kubernetes import KubernetesServer
from tools.adapters.kubernetes_client import KubernetesConfig
from tools.adapters.prometheus import PrometheusConfig, PrometheusServer
from tools.fakes.security_scanner import FakeSecurityScannerServer
from tools.spec import ToolServer
from workers.app import make_middleware
from workers.settings import Settings
from workers.toolbox import ToolsFile, build_toolbox, guard_config
from workers.units import UNITS

UNITS_RUN = ("deploy", "security", "audit")


def write_manifests(root: Path, app: str, version: str, replicas: int = 4, tag: str = "") -> str:
    """A Deployment + Service for ``app`` at ``version`` under ``root``; returns the path."""
    path = root / f"{app}-{version}.yaml"
    image = f"{app}:{tag or version}"  # tag "deadline": the stand-in exceeds the deadline
    path.write_text(yaml.safe_dump_all([deployment(app, image, replicas), service(app)]))
    return str(path)


def deployment_of(api: FakeApiServer, namespace: str, name: str) -> dict[str, Any] | None:
    """The stored Deployment."""
    return api.state.get(by_kind("Deployment"), namespace, name)


def image_of(api: FakeApiServer, namespace: str, name: str) -> str:
    dep = deployment_of(api, namespace, name)
    assert dep is not None, name
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def replicas_of(api: FakeApiServer, namespace: str, name: str) -> int:
    dep = deployment_of(api, namespace, name)
    assert dep is not None, name
    return int(dep["spec"]["replicas"])


@dataclass
class Stack:
    """The running worker(s) and what tests use to drive and inspect them."""

    broker: RabbitBroker
    redis: Any
    names: Names
    root: Path
    workers: list[Worker] = field(default_factory=list)

    async def deploy(self, app: str, version: str, strategy: str, **extra: Any) -> str:
        """Publish deployment.requested; returns the flow id (from deployment.started)."""
        data = {
            "app": app,
            "version": version,
            "environment": "staging",
            "strategy": strategy,
            "manifest_path": write_manifests(self.root, app, version, tag=extra.pop("tag", "")),
            **extra,
        }
        ev = new_event("deployment.requested", data)
        await self.broker.publish(ev)
        flow_id = _flow_id_of(self.names, ev)
        await self.until(flow_id, lambda s: True, what="the flow to exist")
        return flow_id

    async def command(self, type_: str, flow_id: str, **extra: Any) -> None:
        """Publish a command event."""
        await self.broker.publish(new_event(type_, {"flow_id": flow_id, "by": "ann", **extra}))

    async def until(
        self, flow_id: str, check: Any, *, what: str = "", timeout: float = 60
    ) -> FlowState:
        """Poll the flow document until ``check(state)`` (and its outbox is empty)."""
        store = FlowStore(self.redis, self.names)
        state = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = await store.load(flow_id)
            if state is not None and not state.outbox and check(state):
                return state
            await asyncio.sleep(0.05)
        brief = state.model_dump(exclude={"objects", "steps"}) if state else None
        raise AssertionError(f"flow {flow_id}: timed out waiting for {what}: {brief}")

    async def phase(self, flow_id: str, *phases: str, step: int | None = None) -> FlowState:
        """Wait until the flow is in one of ``phases`` (at ``step``)."""
        return await self.until(
            flow_id,
            lambda s: s.phase in phases and step in (None, s.step),
            what=f"{phases} step {step}",
        )


def _flow_id_of(names: Names, ev: Event) -> str:
    from handlers.deployment import mint_flow_id

    return mint_flow_id("deploy.requested", ev.id)


def tool_servers(k8s_url: str, token: str, prometheus_url: str | None) -> list[ToolServer]:
    """The real kubernetes adapter on the stand-in, the fake scanner, maybe Prometheus."""
    servers: list[ToolServer] = [
        KubernetesServer(KubernetesConfig(host=k8s_url, token=token, verify_ssl=False)),  # type: ignore[arg-type]
        FakeSecurityScannerServer(),
    ]
    if prometheus_url:
        servers.append(PrometheusServer(PrometheusConfig(base_url=prometheus_url, timeout=5)))
    return servers


@contextlib.asynccontextmanager
async def running_stack(
    amqp_url: str,
    redis: Any,
    names: Names,
    root: Path,
    config: FlowsConfig,
    servers: list[ToolServer],
    *,
    sweep_interval: float = 0.5,
    units: tuple[str, ...] = UNITS_RUN,
    concurrency: int = 16,
) -> AsyncIterator[Stack]:
    """Run ``units`` against the live services until the block ends."""
    settings = Settings(prefix=names.prefix, retry_base_delay=0.05, max_attempts=8, http_port=0)
    broker = RabbitBroker(amqp_url, names=names, connection_name="codebus-flows-test")
    await broker.connect()
    toolbox = build_toolbox(servers, redis, names, guard_config(ToolsFile()), "flows-test")
    await toolbox.start()
    stack = Stack(broker, redis, names, root)
    queues: list[str] = []
    try:
        for unit in units:
            subs = UNITS[unit].subscriptions()
            queues += [names.subscription_queue(s.name) for s in subs]
            worker = Worker(
                broker,
                subs,
                middleware=make_middleware(settings, redis, CollectorRegistry()),
                concurrency=concurrency,
                deps={
                    "redis": redis,
                    "names": names,
                    "toolbox": toolbox.as_role(unit),
                    "flows_config": config,
                    "flows_sweep_interval": sweep_interval,
                    "flows_sweep_grace": sweep_interval,
                },
                grace_period=5,
                source=f"codebus/{unit}",
            )
            await worker.start()
            stack.workers.append(worker)
        yield stack
    finally:
        for worker in stack.workers:
            await worker.stop()
        await toolbox.close()
        with contextlib.suppress(Exception):
            await broker.delete_topology(queues)
        await broker.close()
