"""The whole system in one process: in-memory broker, fakeredis, fake tool servers and
the real handlers, middleware, inbox and guard chain. Used by ``codebus demo`` and by
the handler-flow tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import fakeredis
from prometheus_client import CollectorRegistry

from bus.abc import Delivery
from bus.memory import MemoryBroker
from bus.runtime import Worker
from flows.repository import FlowRepository, InMemoryRepository
from schemas.envelope import Event
from schemas.flows import FlowsConfig
from schemas.names import Names
from tools.spec import ToolServer
from tools.toolbox import Toolbox
from workers.app import make_middleware
from workers.settings import Settings
from workers.toolbox import build_toolbox, fake_servers, guard_config, load_tools_file
from workers.units import Unit, get_unit, with_unit_roles

S = TypeVar("S", bound=ToolServer)

DEFAULT_UNITS = ("deploy", "security", "notify", "audit")


class EmbeddedSystem:
    """Start with ``async with EmbeddedSystem() as system``; ``system.events`` lists every
    event published, in order."""

    def __init__(
        self,
        units: Sequence[str | Unit] = DEFAULT_UNITS,
        *,
        settings: Settings | None = None,
        on_event: Callable[[Event], Awaitable[None] | None] | None = None,
        rollout_timeout: float = 5.0,
        flows_config: FlowsConfig | None = None,
        sweep_interval: float = 1.0,
        flow_repository: FlowRepository | None = None,
        redis: Any = None,
        toolbox: Any = None,
    ) -> None:
        """``redis`` (a fakeredis client) and ``toolbox`` (e.g. a ``FakeToolbox``) replace
        the system's own; the caller keeps them open."""
        self.settings = settings or Settings(retry_base_delay=0.05, max_attempts=3, http_port=0)
        self.names = Names(prefix=self.settings.prefix)
        self.broker = MemoryBroker(self.names)
        self._own_redis = redis is None
        self.redis = fakeredis.FakeAsyncRedis() if redis is None else redis
        self._tools_override = toolbox
        self.servers: list[ToolServer] = fake_servers()
        #: The units it runs: installed ones by name, or Unit objects (a user's own).
        self.unit_objects = [get_unit(u) if isinstance(u, str) else u for u in units]
        # A unit that declares no tools may call none (least privilege), here as in tests.
        config = with_unit_roles(
            guard_config(load_tools_file(None)), self.unit_objects, undeclared=()
        )
        self.toolbox: Toolbox = build_toolbox(
            self.servers, self.redis, self.names, config, "embedded"
        )
        self.units = tuple(u.name for u in self.unit_objects)
        self.events: list[Event] = []
        self.workers: list[Worker] = []
        self._on_event = on_event
        self._rollout_timeout = rollout_timeout
        self.flows_config = flows_config
        self._sweep_interval = sweep_interval
        self._tap: Any = None
        self.flow_repository = flow_repository or InMemoryRepository()
        #: Each unit's metrics registry (what its ``/metrics`` would serve).
        self.registries: dict[str, CollectorRegistry] = {}

    def server(self, kind: type[S]) -> S:
        """The fake tool server of this type (to configure or inspect it)."""
        return next(s for s in self.servers if isinstance(s, kind))

    async def _record(self, d: Delivery) -> None:
        event = Event.from_json(d.message.body)
        self.events.append(event)
        if self._on_event is not None:
            maybe = self._on_event(event)
            if maybe is not None:
                await maybe
        await d.ack()

    async def __aenter__(self) -> EmbeddedSystem:
        await self.broker.connect()
        await self.toolbox.start()
        self._tap = await self.broker.tap(["#"], self._record)
        for unit in self.unit_objects:
            name = unit.name
            registry = self.registries[name] = CollectorRegistry()
            worker = Worker(
                self.broker,
                unit.subscriptions(),
                middleware=make_middleware(self.settings, self.redis, registry),
                deps={
                    "metrics_registry": registry,
                    # Flow records (deployments, pipelines, sagas) kept in memory.
                    "flow_repository": self.flow_repository,
                    "redis": self.redis,
                    "names": self.names,
                    "toolbox": (self._tools_override or self.toolbox).as_role(name),
                    "rollout_timeout": self._rollout_timeout,
                    "flows_config": self.flows_config,
                    "flows_sweep_interval": self._sweep_interval,
                    "flows_sweep_grace": self._sweep_interval,
                    "workflows_sweep_interval": self._sweep_interval,
                    **self._unit_deps(unit),
                },
                source=f"codebus/{name}",
            )
            await worker.start()
            self.workers.append(worker)
        return self

    def _unit_deps(self, unit: Unit) -> dict[str, Any]:
        """A unit's own dependencies: its ``embedded_deps`` factory if it declares one,
        else its ``deps`` (the same rule for codebus's units and a user's)."""
        return unit.extra_deps(self.settings, self.redis, embedded=True)

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until no message is ready, in flight or delayed."""
        await self.broker.join(timeout)

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            await worker.stop()
        if self._tap is not None:
            await self._tap.cancel()
        await self.toolbox.close()
        if self._own_redis:
            await self.redis.aclose()

    def of_type(self, type_: str) -> list[Event]:
        """Published events of one type."""
        return [e for e in self.events if e.type == type_]
