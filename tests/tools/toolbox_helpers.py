"""Small tool servers for the tool-layer tests: an HTTP-ish server whose next outcomes
are scripted (raise this, sleep that), counting every call that reaches the adapter."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from typing import Any

from pydantic import BaseModel, Field

from schemas.names import Names
from tools.config import ToolboxConfig
from tools.spec import ToolServer, tool
from tools.toolbox import Toolbox


class StatusArgs(BaseModel):
    """Arguments of the read-only tools."""

    service: str
    verbose: bool = False


class StatusResult(BaseModel):
    """Result of the read-only tools; ``n`` is the adapter's call counter."""

    service: str
    n: int


class DeployArgs(BaseModel):
    """Arguments of the write tool (with a secret to be redacted in audit)."""

    image_tag: str
    replicas: int = Field(1, ge=1)
    registry_password: str | None = None


class DeployResult(BaseModel):
    """Result of the write tool."""

    deployed: str
    note: str = ""


class HttpishServer(ToolServer):
    """A flaky HTTP-ish server: ``plan`` holds the next outcomes (an exception to raise
    or a number of seconds to sleep before answering); empty means answer at once."""

    name = "httpish"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.plan: deque[BaseException | float] = deque()
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.started = 0
        self.closed = 0

    async def start(self) -> None:
        self.started += 1

    async def close(self) -> None:
        self.closed += 1

    async def _step(self, tool_name: str) -> int:
        self.calls[tool_name] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            step = self.plan.popleft() if self.plan else self.delay
            if isinstance(step, BaseException):
                raise step
            if step:
                await asyncio.sleep(step)
        finally:
            self.in_flight -= 1
        return self.calls[tool_name]

    @tool(read_only=True)
    async def get_status(self, args: StatusArgs) -> StatusResult:
        """Read a service's status (cacheable)."""
        return StatusResult(service=args.service, n=await self._step("get_status"))

    @tool(read_only=True)
    async def get_version(self, args: StatusArgs) -> StatusResult:
        """Read a service's version (cacheable)."""
        return StatusResult(service=args.service, n=await self._step("get_version"))

    @tool()
    async def deploy(self, args: DeployArgs) -> DeployResult:
        """Deploy an image (writes; never cached)."""
        await self._step("deploy")
        return DeployResult(deployed=args.image_tag, note="xoxb-123456-abcdef")

    @property
    def total(self) -> int:
        """Calls that reached the adapter, all tools together."""
        return sum(self.calls.values())


class OtherServer(HttpishServer):
    """A second server, to show that breakers are per server."""

    name = "other"


def fast_config(**tools: dict[str, Any]) -> ToolboxConfig:
    """Guard settings scaled down for tests: short timeouts and backoff."""
    return ToolboxConfig.model_validate(
        {
            "defaults": {
                "timeout": 2.0,
                "retry_attempts": 3,
                "retry_base_delay": 0.001,
                "retry_max_delay": 0.005,
                "breaker_failures": 3,
                "breaker_reset_timeout": 0.3,
                "cache_ttl": 30,
            },
            "tools": tools,
            "roles": {
                "developer": ["httpish.get_*", "other.*"],
                "deployer": ["httpish.*"],
            },
        }
    )


def make_toolbox(
    redis: Any,
    names: Names,
    *servers: ToolServer,
    config: ToolboxConfig | None = None,
    **kwargs: Any,
) -> Toolbox:
    """A Toolbox over ``servers`` (a fresh HttpishServer if none) with the test config."""
    return Toolbox(
        list(servers) or [HttpishServer()],
        redis=redis,
        config=config or fast_config(),
        names=names,
        **kwargs,
    )
