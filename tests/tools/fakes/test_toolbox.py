"""FakeToolbox: validated against real specs, canned responses, history, faults."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel

from tests.tools.toolbox_helpers import DeployResult, HttpishServer, StatusResult
from tools.batch import BatchProcessor
from tools.errors import (
    ToolArgumentError,
    ToolFailed,
    ToolNotFound,
    ToolPermissionDenied,
    ToolTransientError,
)
from tools.fakes import FakeToolbox, NoFakeResponse
from tools.spec import ToolServer, tool


class Defaults(BaseModel):
    """A result model that validates from {}."""

    items: list[str] = []


class WithDefaults(ToolServer):
    name = "dflt"

    @tool(read_only=True)
    async def ls(self, args: Defaults) -> Defaults:
        """List."""
        raise NotImplementedError


async def test_validates_arguments_and_responses_with_the_real_models() -> None:
    fake = FakeToolbox([HttpishServer()])
    with pytest.raises(ToolArgumentError, match=r"httpish\.deploy: image_tag: Field required"):
        await fake.call_tool("httpish.deploy", {})
    with pytest.raises(ToolNotFound, match=r"httpish\.deploy"):
        await fake.call_tool("httpish.deplyo", {"image_tag": "x"})
    with pytest.raises(TypeError, match="not a valid DeployResult"):
        fake.set_response("httpish.deploy", {"wrong": 1})
    fake.set_response("httpish.deploy", {"deployed": "canned"})
    result = await fake.call_tool("httpish.deploy", {"image_tag": "x"})
    assert isinstance(result, DeployResult) and result.deployed == "canned"


async def test_responses_can_be_models_or_callables_sync_or_async() -> None:
    fake = FakeToolbox(HttpishServer().tools())
    fake.set_response("httpish.get_status", lambda a: StatusResult(service=a.service, n=7))

    async def deploy(args):
        return {"deployed": args.image_tag.upper()}

    fake.set_response("httpish.deploy", deploy)
    fake.set_response("httpish.get_version", StatusResult(service="v", n=1))
    assert (await fake.call_tool("httpish.get_status", {"service": "api"})).n == 7
    assert (await fake.call_tool("httpish.deploy", {"image_tag": "a"})).deployed == "A"
    assert (await fake.call_tool("httpish.get_version", {"service": "x"})).service == "v"


async def test_default_response_or_a_clear_error() -> None:
    fake = FakeToolbox([HttpishServer(), WithDefaults()])
    assert (await fake.call_tool("dflt.ls", {})).items == []
    with pytest.raises(NoFakeResponse, match=r"set_response\('httpish.deploy'"):
        await fake.call_tool("httpish.deploy", {"image_tag": "x"})


async def test_history_and_assertions() -> None:
    fake = FakeToolbox([HttpishServer()], responses={"httpish.deploy": {"deployed": "ok"}})
    await fake.call_tool("httpish.deploy", {"image_tag": "app:1", "replicas": 2})
    await fake.as_role("deployer").call_tool("httpish.deploy", {"image_tag": "app:2"})
    assert fake.call_count("httpish.deploy") == 2
    call = fake.assert_called_with("httpish.deploy", image_tag="app:1", replicas=2)
    assert call.role is None and call.result.deployed == "ok"
    assert fake.calls[1].role == "deployer"
    with pytest.raises(AssertionError, match="app:3"):
        fake.assert_called_with("httpish.deploy", image_tag="app:3")
    fake.assert_not_called("httpish.get_status")
    with pytest.raises(AssertionError, match="2 time"):
        fake.assert_not_called("httpish.deploy")


async def test_fault_injection_and_delay_work_with_retrying_callers() -> None:
    fake = FakeToolbox([HttpishServer()], responses={"httpish.deploy": {"deployed": "ok"}})
    fake.fail("httpish.deploy", times=2)
    fake.fail("httpish.get_status", error=ToolFailed("404"))
    for _ in range(2):
        with pytest.raises(ToolTransientError):
            await fake.call_tool("httpish.deploy", {"image_tag": "a"})
    assert (await fake.call_tool("httpish.deploy", {"image_tag": "a"})).deployed == "ok"
    with pytest.raises(ToolFailed):
        await fake.call_tool("httpish.get_status", {"service": "a"})
    assert [c.error is not None for c in fake.calls] == [True, True, False, True]

    fake.delay("httpish.deploy", 0.05)
    started = time.monotonic()
    results = await BatchProcessor(fake, concurrency=4).run(
        [("httpish.deploy", {"image_tag": str(i)}) for i in range(4)]
    )
    assert all(r.ok for r in results)
    assert 0.05 <= time.monotonic() - started < 0.19  # concurrent (serial: 0.2 s)


async def test_roles_are_enforced_when_given() -> None:
    fake = FakeToolbox(
        [HttpishServer()],
        responses={"httpish.deploy": {"deployed": "ok"}},
        roles={"developer": ["httpish.get_*"], "deployer": ["httpish.*"]},
    )
    with pytest.raises(ToolPermissionDenied):
        await fake.as_role("developer").call_tool("httpish.deploy", {"image_tag": "a"})
    with pytest.raises(ToolPermissionDenied):
        fake.as_role("developer").as_role("deployer")
    assert (await fake.as_role("deployer").call_tool("httpish.deploy", {"image_tag": "a"})).deployed


async def test_without_specs_any_tool_needs_a_response() -> None:
    fake = FakeToolbox()
    fake.set_response("docker.docker_build", {"image_id": "sha256:1"})
    assert await fake.call_tool("docker.docker_build", {"dockerfile_path": "."}) == {
        "image_id": "sha256:1"
    }
    fake.assert_called_with("docker.docker_build", dockerfile_path=".")
    with pytest.raises(NoFakeResponse):
        await fake.call_tool("docker.docker_ps", {})
