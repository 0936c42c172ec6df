"""The public handler API (``codebus``), user worker units (entry points, ``--app``, tool
roles, typed dependencies) and typed tool calls."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import codebus
from bus.context import HandlerContext
from bus.memory import MemoryBroker
from codebus.testing import declared_event_types, run_units
from schemas.envelope import new_event
from schemas.errors import ConfigError
from workers.cli import cli
from workers.cli_support import EXIT_CONFIG, EXIT_SERVICE, EXIT_USAGE
from workers.units import UnitCatalog

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("redis", "aio_pika", "aiormq", "fakeredis", "aiodocker", "kubernetes_asyncio")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_codebus_is_light() -> None:
    loaded = _modules_after("import codebus")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
    assert not {m for m in loaded if m.startswith(("tools.", "bus.", "workers."))}
    # Even the handler API itself pulls in no client library nor tool adapter.
    api = "from codebus import Event, HandlerContext, Payload, Reject, Retry, Router, Unit"
    api += "\nfrom codebus import call_tool"
    loaded = _modules_after(api)
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
    assert not {m for m in loaded if m.startswith("tools.adapters")}


def test_handler_api_does_not_build_the_builtin_catalogue() -> None:
    # schemas.events builds codebus's own payload models (about 200 ms of CPU): a
    # handler author's import needs only the base types.
    for api in (
        "from codebus import Router, Payload, Event, HandlerContext",
        "from codebus import Event, HandlerContext, Payload, Reject, Retry, Router, Unit",
    ):
        loaded = _modules_after(api)
        built = {"schemas.events", "schemas.flows", "schemas.workflows"} & loaded
        assert not built, api
    # Reading the catalogue still builds them, and Payload is the same class there.
    loaded = _modules_after("from codebus import Unit\nfrom schemas import EVENT_TYPES")
    assert "schemas.events" in loaded
    from schemas.events import DeploymentRequested

    assert issubclass(DeploymentRequested, codebus.Payload)


def test_public_names_resolve_lazily() -> None:
    from bus.errors import Reject
    from bus.router import Router

    assert codebus.Router is Router and codebus.Reject is Reject
    assert set(codebus.__all__) <= set(dir(codebus))
    for name in codebus.__all__:
        assert getattr(codebus, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Toolbox'"):
        _ = codebus.Toolbox


class Ping(BaseModel):
    n: int


@pytest.fixture
def ping_type():
    with declared_event_types({"ping.sent": Ping, "pong.sent": Ping}):
        yield


def _ctx(deps: dict[str, object]) -> HandlerContext:
    import logging

    return HandlerContext(
        event=new_event("ping.sent", {"n": 1}),
        subscription="s",
        attempt=1,
        broker=MemoryBroker(),
        deps=deps,
        logger=logging.getLogger("t"),
        source="t",
    )


def test_typed_context_properties() -> None:
    from schemas.names import Names

    names = Names(prefix="x")
    ctx = _ctx({"names": names, "toolbox": "tb", "redis": "r", "unit_deps": Ping(n=2)})
    assert (ctx.names, ctx.toolbox, ctx.redis) == (names, "tb", "r")
    assert ctx.unit_deps(Ping) == Ping(n=2)
    assert ctx.deps["names"] is names  # the mapping still works
    with pytest.raises(TypeError, match="not a HandlerContext"):
        ctx.unit_deps(HandlerContext)
    with pytest.raises(LookupError, match="subscription s: no 'redis' dependency"):
        _ctx({}).redis  # noqa: B018


def _unit_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tools: str) -> str:
    """A module ``usermod_<n>`` with a unit that calls docker.docker_images."""
    name = f"usermod_{abs(hash((str(tmp_path), tools))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            from codebus import HandlerContext, Router, Unit, call_tool
            from tests.extension.test_public_api import Ping

            router = Router("pinger")

            @router.subscribe("ping.sent", name="pinger.ping")
            async def on_ping(ping: Ping, ctx: HandlerContext) -> None:
                result = await call_tool(ctx, "docker.docker_images", {{}})
                await ctx.publish("pong.sent", Ping(n=len(result.images)))

            unit = Unit("pinger", "pings", (router,), tools={tools})
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


async def test_a_user_unit_role_is_enforced_by_the_permission_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ping_type: None
) -> None:
    import importlib

    for tools in ("()", "None"):  # none allowed; none declared: no role, never a crash
        denied = importlib.import_module(_unit_module(tmp_path, monkeypatch, tools)).unit
        run = await run_units([denied], [new_event("ping.sent", {"n": 1})], timeout=10)
        (dead,) = run.dead_letters
        assert dead.kind == "rejected" and "docker.docker_images" in dead.reason
        assert run.published == []
    allowed = importlib.import_module(
        _unit_module(tmp_path, monkeypatch, "('docker.docker_images',)")
    ).unit
    run = await run_units([allowed], [new_event("ping.sent", {"n": 1})])
    assert run.dead_letters == [] and run.types() == ["pong.sent"]


def test_worker_app_passes_the_role_check_with_the_unit_s_own_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _unit_module(tmp_path, monkeypatch, "('docker.docker_images',)")
    monkeypatch.setattr("workers.logs.configure", lambda *a, **k: None)
    env = {"CODEBUS_REDIS_URL": "redis://127.0.0.1:1/0", "CODEBUS_FAKE_TOOLS": "true"}
    result = CliRunner().invoke(cli, ["worker", "--app", f"{module}:unit"], env=env)
    # No tools file, no ToolPermissionDenied: past the role check it connects (Redis down).
    assert result.exit_code == EXIT_SERVICE, result.output
    assert "cannot reach Redis" in result.output
    bad = CliRunner().invoke(cli, ["worker", "--app", f"{module}:nothing"], env=env)
    assert bad.exit_code == EXIT_CONFIG and "Traceback" not in bad.output
    assert f"cannot load '{module}:nothing'" in bad.output
    both = CliRunner().invoke(cli, ["worker", "audit", "--app", f"{module}:unit"], env=env)
    assert both.exit_code == EXIT_USAGE


def test_a_unit_declared_twice_names_both_sources() -> None:
    from workers.units import AUDIT, Unit

    catalog = UnitCatalog(group="codebus.none")
    catalog._loaded = True  # nothing to discover: declare by hand
    catalog.add(AUDIT, "codebus: audit = workers.units:AUDIT")
    other = Unit("audit", "another audit", ("handlers.audit:router",), tools=())
    with pytest.raises(ConfigError, match="'audit' is declared twice: by codebus: audit") as err:
        catalog.add(other, "theirs: audit = theirs:unit")
    assert "theirs: audit = theirs:unit" in str(err.value)


def test_tool_call_types_are_current_and_checked_by_mypy(tmp_path: Path) -> None:
    check = subprocess.run(
        [sys.executable, "scripts/gen_tool_calls.py", "--check"],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, "schemas/tool_calls.py is stale: run scripts/gen_tool_calls.py"
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            from codebus import HandlerContext, call_tool
            from schemas.tools.docker import DockerBuildResult, DockerPsResult

            async def good(ctx: HandlerContext) -> None:
                a: DockerBuildResult = await ctx.toolbox.call_tool("docker.docker_build", {})
                b: DockerBuildResult = await call_tool(ctx, "docker.docker_build", {})

            async def bad(ctx: HandlerContext) -> None:
                c: DockerPsResult = await ctx.toolbox.call_tool("docker.docker_build", {})
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), str(probe)],
        cwd=ROOT,
        env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, out.stdout
    wrong = next(i for i, line in enumerate(probe.read_text().splitlines(), 1) if "c: " in line)
    assert f"probe.py:{wrong}:" in errors[0]
    assert '"DockerBuildResult", variable has type "DockerPsResult"' in errors[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "My Unit"}, "unit name 'My Unit'"),
        ({"routers": "handlers.audit:router"}, "routers must be a non-empty tuple"),
        ({"tools": "docker.*"}, "tools must be a tuple"),
    ],
)
def test_a_bad_unit_declaration_names_what_is_wrong(kwargs: dict[str, object], message: str):
    from workers.units import Unit

    fields: dict[str, object] = {
        "name": "ok",
        "description": "d",
        "routers": ("handlers.audit:router",),
        **kwargs,
    }
    with pytest.raises(ConfigError, match=message):
        Unit(**fields)  # type: ignore[arg-type]
