"""Running the ``workflows`` unit for the pipeline and saga tests: a stand-in tool server
that counts every side effect and fails on cue, and the unit on either broker with real
Redis, the guard chain and an in-memory repository."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict

from bus.memory import MemoryBroker
from bus.rabbitmq import RabbitBroker
from bus.runtime import Worker
from flows.pipeline_store import WorkflowStore
from flows.repository import InMemoryRepository
from schemas.envelope import Event, new_event
from schemas.names import Names
from schemas.workflows import WorkflowState
from tests.bus.conftest import delete_rabbit_topology
from tests.conftest import AMQP_URL
from tools.errors import ToolFailed, ToolTransientError
from tools.spec import ToolServer, tool
from workers.app import make_middleware
from workers.settings import Settings
from workers.toolbox import ToolsFile, build_toolbox, guard_config
from workers.units import UNITS


class OpsArgs(BaseModel):
    """What a stand-in operation acts on."""

    model_config = ConfigDict(extra="forbid")

    key: str
    value: Any = None


class OpsResult(BaseModel):
    """What it did: the key, the value, and how often this key was done so far."""

    key: str
    value: Any = None
    n: int
    found: int = 0


class OpsServer(ToolServer):
    """``ops.do`` / ``ops.undo``: side effects counted per key; ``transient[key]`` fails
    that many calls with a retryable error, ``broken`` keys fail for good."""

    name = "ops"

    def __init__(self) -> None:
        self.done: Counter[str] = Counter()
        self.undone: Counter[str] = Counter()
        self.calls: list[tuple[str, str, Any]] = []
        self.transient: Counter[str] = Counter()
        self.broken: set[str] = set()
        self.slow: dict[str, float] = {}

    async def _check(self, op: str, key: str) -> None:
        label = f"{op}:{key}"
        if label in self.slow:
            await asyncio.sleep(self.slow[label])
        if self.transient[label] > 0:
            self.transient[label] -= 1
            raise ToolTransientError(f"{label}: try again", tool=f"ops.{op}")
        if label in self.broken:
            raise ToolFailed(f"{label}: broken", tool=f"ops.{op}")

    @tool()
    async def do(self, args: OpsArgs) -> OpsResult:
        """Apply the operation ``key``."""
        self.calls.append(("do", args.key, args.value))
        await self._check("do", args.key)
        self.done[args.key] += 1
        return OpsResult(key=args.key, value=args.value, n=self.done[args.key])

    @tool()
    async def undo(self, args: OpsArgs) -> OpsResult:
        """Undo the operation ``key``."""
        self.calls.append(("undo", args.key, args.value))
        await self._check("undo", args.key)
        self.undone[args.key] += 1
        return OpsResult(key=args.key, value=args.value, n=self.undone[args.key])

    @tool(read_only=True)
    async def scan(self, args: OpsArgs) -> OpsResult:
        """Report ``value`` findings for ``key``."""
        self.calls.append(("scan", args.key, args.value))
        return OpsResult(key=args.key, value=args.value, n=0, found=int(args.value or 0))


@dataclass
class Running:
    """The unit, what it published, and where runs live."""

    broker: Any
    redis: Any
    names: Names
    ops: OpsServer
    repo: Any
    events: list[Event] = field(default_factory=list)

    async def publish(self, type: str, data: dict[str, Any]) -> Event:
        event = new_event(type, data)
        await self.broker.publish(event)
        return event

    def of_type(self, type: str) -> list[Event]:
        return [e for e in self.events if e.type == type]

    async def run(self, spec: dict[str, Any], data: dict[str, Any]) -> str:
        """Request a run; its id once ``workflow.started`` is seen."""
        request = await self.publish("workflow.run_requested", {"spec": spec, "data": data})
        started = await self.wait_for(
            lambda: [e for e in self.of_type("workflow.started") if e.causationid == request.id]
        )
        return str(started[0].data["flow_id"])

    async def wait_for(self, check: Any, seconds: float = 30) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; events: {[e.type for e in self.events]}")
            await asyncio.sleep(0.02)

    async def state(self, flow_id: str) -> WorkflowState:
        found = await WorkflowStore(self.redis, self.names).load(flow_id)
        assert found is not None
        return found

    async def until_phase(self, flow_id: str, *phases: str, seconds: float = 30) -> WorkflowState:
        deadline = time.monotonic() + seconds
        while True:
            state = await WorkflowStore(self.redis, self.names).load(flow_id)
            record = await self.repo.get(flow_id)
            # The record is written after the state: wait for both.
            if (
                state is not None
                and state.phase in phases
                and record is not None
                and record.rev == state.rev
            ):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"{flow_id}: {state}")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_workflows(
    kind: str,
    redis: Any,
    names: Names,
    servers: tuple[ToolServer, ...] = (),
    repo: Any = None,
    deps: dict[str, Any] | None = None,
) -> AsyncIterator[Running]:
    """The ``workflows`` unit on ``kind`` (memory or rabbitmq), Redis and the guard chain,
    calling the stand-in ``ops`` server and ``servers``."""
    ops = OpsServer()
    cfg = guard_config(
        ToolsFile(
            guards={
                "defaults": {"retry": False, "cache": False},
                "roles": {"workflows": ["ops.*", "kubernetes.*", "s3-storage.*"]},
            }
        )
    )
    toolbox = build_toolbox([ops, *servers], redis, names, cfg, "test")
    await toolbox.start()
    broker: Any = MemoryBroker(names) if kind == "memory" else RabbitBroker(AMQP_URL, names=names)
    await broker.connect()
    if repo is None:
        repo = InMemoryRepository()
    elif callable(repo):
        repo = repo(toolbox.as_role("workflows"))  # a repository over this toolbox
    running = Running(broker, redis, names, ops, repo)

    async def collect(delivery: Any) -> None:
        running.events.append(Event.from_json(delivery.message.body))
        await delivery.ack()

    tap = await broker.tap(["#"], collect)
    settings = Settings(retry_base_delay=0.05, max_attempts=3, http_port=0, prefix=names.prefix)
    subscriptions = UNITS["workflows"].subscriptions()
    worker = Worker(
        broker,
        subscriptions,
        middleware=make_middleware(settings, redis, CollectorRegistry()),
        deps={
            "redis": redis,
            "names": names,
            "toolbox": toolbox.as_role("workflows"),
            "flow_repository": running.repo,
            **(deps or {}),
        },
        source="codebus/workflows",
    )
    await worker.start()
    try:
        yield running
    finally:
        await worker.stop()
        await tap.cancel()
        await toolbox.close()
        await broker.close()
        if kind == "rabbitmq":
            queues = [names.subscription_queue(s.name) for s in subscriptions]
            await delete_rabbit_topology(AMQP_URL, names, queues)
