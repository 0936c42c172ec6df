"""Retry (transient errors only, with backoff) and per-attempt timeouts."""

from __future__ import annotations

import random
import time

import pytest

from tests.tools.toolbox_helpers import HttpishServer, fast_config, make_toolbox
from tools.errors import (
    CircuitOpen,
    ToolArgumentError,
    ToolFailed,
    ToolPermissionDenied,
    ToolTimeout,
    ToolTransientError,
)
from tools.guards.retry import backoff_delay

NO_BREAKER = {"httpish.*": {"breaker": False}}


async def test_transient_errors_are_retried_until_success(redis_client, names) -> None:
    server = HttpishServer()
    server.plan.extend([ToolTransientError("503", status=503), ToolTransientError("conn reset")])
    toolbox = make_toolbox(redis_client, names, server, config=fast_config(**NO_BREAKER))
    result = await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    assert result.deployed == "a"
    assert server.calls["deploy"] == 3


async def test_gives_up_after_max_attempts(redis_client, names) -> None:
    server = HttpishServer()
    server.plan.extend([ToolTransientError(f"503 #{i}", status=503) for i in range(10)])
    config = fast_config(**{"httpish.*": {"breaker": False, "retry_attempts": 4}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    with pytest.raises(ToolTransientError, match="503 #3"):
        await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    assert server.calls["deploy"] == 4


@pytest.mark.parametrize(
    "error",
    [
        ToolFailed("400 bad request", status=400),
        ToolPermissionDenied("403"),
        ToolArgumentError("bad manifest"),
        CircuitOpen("downstream breaker open", retry_after=1.0),
        ValueError("bug"),
    ],
)
async def test_permanent_errors_are_not_retried(redis_client, names, error) -> None:
    server = HttpishServer()
    server.plan.append(error)
    toolbox = make_toolbox(redis_client, names, server, config=fast_config(**NO_BREAKER))
    with pytest.raises(type(error)):
        await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    assert server.calls["deploy"] == 1


async def test_retry_can_be_switched_off(redis_client, names) -> None:
    server = HttpishServer()
    server.plan.append(ToolTransientError("503"))
    config = fast_config(**{"httpish.*": {"breaker": False, "retry": False}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    with pytest.raises(ToolTransientError):
        await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    assert server.calls["deploy"] == 1


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (8, 1.0)]:
        delays = [backoff_delay(attempt, 0.1, 1.0, rng) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not just its upper half.
        assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9


async def test_timeout_raises_tool_timeout_and_is_retried(redis_client, names) -> None:
    server = HttpishServer()
    server.plan.extend([5.0, 5.0])  # the first two attempts hang
    config = fast_config(**{"httpish.*": {"breaker": False, "timeout": 0.1}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    started = time.monotonic()
    result = await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    assert result.deployed == "a"
    assert server.calls["deploy"] == 3
    assert time.monotonic() - started < 1.5


async def test_timeout_after_last_attempt_surfaces_as_tool_timeout(redis_client, names) -> None:
    server = HttpishServer()
    server.delay = 5.0
    config = fast_config(**{"httpish.*": {"breaker": False, "timeout": 0.05, "retry": False}})
    toolbox = make_toolbox(redis_client, names, server, config=config)
    with pytest.raises(ToolTimeout, match=r"httpish.deploy timed out after 0.05s") as err:
        await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    assert err.value.tool == "httpish.deploy"
    assert server.in_flight == 0  # the adapter was cancelled, not left running


async def test_timeout_can_be_switched_off(redis_client, names) -> None:
    server = HttpishServer()
    server.delay = 0.15
    config = fast_config(**{"httpish.*": {"breaker": False, "timeout": None}})
    config = config.model_copy(
        update={"defaults": config.defaults.model_copy(update={"timeout": 0.01})}
    )
    toolbox = make_toolbox(redis_client, names, server, config=config)
    assert (await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})).deployed == "a"


async def test_stray_connection_and_timeout_errors_count_as_transient(redis_client, names) -> None:
    server = HttpishServer()
    server.plan.extend([ConnectionRefusedError("refused"), TimeoutError("read timed out")])
    toolbox = make_toolbox(redis_client, names, server, config=fast_config(**NO_BREAKER))
    assert (await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})).deployed == "a"
    assert server.calls["deploy"] == 3
    server.plan.extend([ConnectionResetError("reset")] * 3)
    with pytest.raises(ToolTransientError, match="ConnectionResetError") as err:
        await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})
    assert isinstance(err.value.__cause__, ConnectionResetError)
