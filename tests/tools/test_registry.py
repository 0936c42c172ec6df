"""Registry, argument validation, lifecycle and configuration of the Toolbox."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.tools.toolbox_helpers import (
    DeployArgs,
    HttpishServer,
    OtherServer,
    StatusArgs,
    StatusResult,
    make_toolbox,
)
from tools.config import ToolboxConfig
from tools.errors import ToolArgumentError, ToolFailed, ToolNotFound
from tools.registry import Registry
from tools.spec import ToolServer, tool
from tools.toolbox import Toolbox


def test_list_tools_describes_each_tool_with_schemas() -> None:
    registry = Registry([HttpishServer(), OtherServer()])
    infos = {i.name: i for i in registry.list_tools()}
    assert sorted(infos) == [
        "httpish.deploy",
        "httpish.get_status",
        "httpish.get_version",
        "other.deploy",
        "other.get_status",
        "other.get_version",
    ]
    deploy = infos["httpish.deploy"]
    assert deploy.read_only is False
    assert infos["httpish.get_status"].read_only is True
    assert deploy.description == "Deploy an image (writes; never cached)."
    assert deploy.args_schema["required"] == ["image_tag"]
    assert "deployed" in deploy.result_schema["properties"]


def test_unknown_tool_lists_close_matches() -> None:
    registry = Registry([HttpishServer()])
    with pytest.raises(ToolNotFound) as err:
        registry.get("httpish.get_stauts")
    assert "httpish.get_status" in str(err.value)
    assert err.value.tool == "httpish.get_stauts"
    with pytest.raises(ToolNotFound) as err:
        registry.get("zzz")
    assert "did you mean" not in str(err.value)


def test_duplicate_server_or_tool_name_is_rejected() -> None:
    registry = Registry([HttpishServer()])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(HttpishServer())

    class Clash(ToolServer):
        name = "clash"

        @tool()
        async def a(self, args: StatusArgs) -> StatusResult:
            """A."""
            raise NotImplementedError

        @tool(name="a")
        async def b(self, args: StatusArgs) -> StatusResult:
            """B, declared under the same name."""
            raise NotImplementedError

    with pytest.raises(ValueError, match="declared twice"):
        Registry([Clash()])


async def test_argument_error_names_tool_and_field_before_any_io(redis_client, names) -> None:
    server = HttpishServer()
    toolbox = make_toolbox(redis_client, names, server)
    with pytest.raises(ToolArgumentError) as err:
        await toolbox.call_tool("httpish.deploy", {"replicas": 0})
    message = str(err.value)
    assert message.startswith("httpish.deploy: ")
    assert "image_tag: Field required" in message
    assert "replicas: Input should be greater than or equal to 1" in message
    assert err.value.fields == ("image_tag", "replicas")
    assert err.value.tool == "httpish.deploy"
    # Validation happens before the servers are even started.
    assert server.started == 0 and server.total == 0
    with pytest.raises(ToolArgumentError, match="must be a mapping"):
        await toolbox.call_tool("httpish.deploy", ["image_tag", "x"])  # type: ignore[arg-type]


async def test_toolbox_names_close_matches_for_unknown_tools(redis_client, names) -> None:
    toolbox = make_toolbox(redis_client, names)
    with pytest.raises(ToolNotFound, match=r"did you mean httpish\.deploy\?"):
        await toolbox.call_tool("httpish.deply", {"image_tag": "x"})
    with pytest.raises(ToolNotFound):
        await toolbox.invalidate("httpish.nope")


async def test_call_accepts_model_or_dict_and_returns_typed_result(redis_client, names) -> None:
    server = HttpishServer()
    async with make_toolbox(redis_client, names, server) as toolbox:
        by_dict = await toolbox.call_tool("httpish.deploy", {"image_tag": "app:1"})
        by_model = await toolbox.call_tool("httpish.deploy", DeployArgs(image_tag="app:2"))
    assert by_dict.deployed == "app:1" and by_model.deployed == "app:2"
    assert type(by_dict).__name__ == "DeployResult"
    assert server.started == 1 and server.closed == 1


async def test_start_and_close_run_once(redis_client, names) -> None:
    server = HttpishServer()
    toolbox = make_toolbox(redis_client, names, server)
    await toolbox.call_tool("httpish.deploy", {"image_tag": "a"})  # starts lazily
    await toolbox.start()
    await toolbox.call_tool("httpish.deploy", {"image_tag": "b"})
    assert server.started == 1
    await toolbox.close()
    await toolbox.close()
    assert server.closed == 1


async def test_invalid_adapter_result_is_a_tool_failure(redis_client, names) -> None:
    class Broken(ToolServer):
        name = "broken"

        @tool()
        async def get(self, args: StatusArgs) -> StatusResult:
            """Returns the wrong shape."""
            return {"service": args.service}  # type: ignore[return-value]

    toolbox = make_toolbox(redis_client, names, Broken())
    with pytest.raises(ToolFailed, match=r"broken.get: adapter returned an invalid StatusResult"):
        await toolbox.call_tool("broken.get", {"service": "x"})


def test_config_overrides_by_pattern_then_exact_name() -> None:
    config = ToolboxConfig.model_validate(
        {
            "tools": {
                "kubernetes.kubectl_rollout_status": {"timeout": 600},
                "kubernetes.*": {"timeout": 60, "retry_attempts": 5},
                "docker.*": {"cache": False},
            }
        }
    )
    rollout = config.policy_for("kubernetes.kubectl_rollout_status")
    assert rollout.timeout == 600 and rollout.retry_attempts == 5
    assert config.policy_for("kubernetes.kubectl_apply").timeout == 60
    assert config.policy_for("docker.docker_ps").cache is False
    assert config.policy_for("prometheus-monitoring.prometheus_query").cache is True
    assert config.policy_for("prometheus-monitoring.prometheus_query").timeout == 30


def test_config_rejects_typos_and_bad_values_naming_the_pattern() -> None:
    with pytest.raises(ValidationError, match="cahce"):
        ToolboxConfig.model_validate({"tools": {"docker.*": {"cahce": False}}})
    with pytest.raises(ValidationError, match=r"docker\.\*.*retry_attempts"):
        ToolboxConfig.model_validate({"tools": {"docker.*": {"retry_attempts": 0}}})
    with pytest.raises(ValidationError, match="default_role"):
        ToolboxConfig.model_validate({"default_role": "ghost"})


def test_toolbox_without_redis_needs_cache_and_breaker_off() -> None:
    with pytest.raises(ValueError, match="Redis"):
        Toolbox([HttpishServer()])
    config = ToolboxConfig.model_validate({"defaults": {"cache": False, "breaker": False}})
    assert Toolbox([HttpishServer()], config=config).cache is None
