"""The event catalogue users extend: duplicates, broken entry points, the unknown-type
policy at publish and delivery, the gateway and its OpenAPI document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from bus.router import Router
from codebus.testing import declared_event_types, run_units
from schemas.catalog import EventCatalog, unknown_policy
from schemas.envelope import Event
from schemas.errors import ConfigError
from tests.extension.conftest import CLI, env_with
from tests.gateway.conftest import OPS_KEY, published
from workers.cli_support import EXIT_CONFIG
from workers.units import Unit


def dist_info(site: Path, name: str, entry_points: str, module: str = "", code: str = "") -> None:
    """A minimal installed distribution (what pip writes) declaring ``entry_points``."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    if module:
        (site / f"{module}.py").write_text(code)


def test_a_type_declared_twice_is_a_start_up_error_naming_both(tmp_path: Path) -> None:
    code = (
        "from pydantic import BaseModel\n"
        "class M(BaseModel):\n    x: int\n"
        "TYPES = {'deployment.requested': M}\n"
    )
    dist_info(
        tmp_path,
        "shadow-events",
        "[codebus.events]\nshadow = shadow_events:TYPES\n",
        "shadow_events",
        code,
    )
    down = {"CODEBUS_REDIS_URL": "redis://127.0.0.1:1/0", "CODEBUS_FAKE_TOOLS": "true"}
    for args in (
        ("events", "list"),
        ("units",),
        ("publish", "deployment.requested", "--data", "{}"),
        ("worker", "audit"),  # at start-up, before connecting to anything
    ):
        out = subprocess.run(
            [sys.executable, "-c", CLI, *args],
            capture_output=True,
            text=True,
            env=env_with(tmp_path, **down),
            timeout=60,
        )
        assert out.returncode == EXIT_CONFIG, out.stderr
        assert "Traceback" not in out.stderr
        (line,) = [x for x in out.stderr.splitlines() if x.startswith("Error:")]
        assert "'deployment.requested' is declared twice" in line
        assert "codebus: core = schemas.events:CORE_EVENT_TYPES" in line
        assert "shadow-events: shadow = shadow_events:TYPES" in line


def test_the_gateway_refuses_to_start_on_a_type_declared_twice(tmp_path: Path) -> None:
    code = (
        "from pydantic import BaseModel\nclass M(BaseModel):\n    x: int\nT = {'image.built': M}\n"
    )
    dist_info(tmp_path, "twice", "[codebus.events]\nt = twice_events:T\n", "twice_events", code)
    start = (
        "from bus.memory import MemoryBroker\nfrom gateway.app import create_app\n"
        "from schemas.gateway_config import GatewayConfig\n"
        "create_app(GatewayConfig.model_validate({'sources': []}), MemoryBroker(), None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", start],
        capture_output=True,
        text=True,
        env=env_with(tmp_path),
        timeout=60,
    )
    assert out.returncode != 0
    assert "DuplicateEventType: event type 'image.built' is declared twice" in out.stderr
    assert "twice: t = twice_events:T" in out.stderr


def test_a_broken_entry_point_is_one_line_naming_it(tmp_path: Path) -> None:
    dist_info(tmp_path, "broken-events", "[codebus.events]\nb = no_such_module:TYPES\n")
    out = subprocess.run(
        [sys.executable, "-c", CLI, "events", "list"],
        capture_output=True,
        text=True,
        env=env_with(tmp_path),
        timeout=60,
    )
    assert out.returncode == EXIT_CONFIG
    assert "broken-events: b = no_such_module:TYPES: cannot load" in out.stderr
    assert "Traceback" not in out.stderr


class Thing(BaseModel):
    name: str


def test_catalogue_rejects_bad_declarations() -> None:
    catalog = EventCatalog(group="codebus.none")
    with pytest.raises(ConfigError, match="'Bad Type'"):
        catalog.register("Bad Type", Thing, "pkg")
    with pytest.raises(ConfigError, match="not a pydantic model"):
        catalog.register("thing.made", dict, "pkg")
    catalog.register("thing.made", Thing, "pkg-a")
    catalog.register("thing.made", Thing, "pkg-a again")  # the same model: no conflict
    assert catalog.source("thing.made") == "pkg-a"


def test_unknown_policy_values(monkeypatch: pytest.MonkeyPatch) -> None:
    assert unknown_policy({}) == "reject"
    assert unknown_policy({"CODEBUS_UNKNOWN_EVENTS": "PASS"}) == "pass"
    with pytest.raises(ConfigError, match="CODEBUS_UNKNOWN_EVENTS: expected reject or pass"):
        unknown_policy({"CODEBUS_UNKNOWN_EVENTS": "drop"})


def _publisher_unit() -> tuple[Unit, list[Event]]:
    """A unit that publishes a type nobody declared, and one taking raw envelopes."""
    seen: list[Event] = []
    pub = Router("pub")

    @pub.subscribe("thing.asked", name="pub.ask")
    async def ask(thing: Thing, ctx: object) -> None:
        await ctx.publish("undeclared.happened", {"n": 1})  # type: ignore[attr-defined]

    raw = Router("raw")

    @raw.subscribe("undeclared.*", name="raw.any")
    async def any_event(event: Event, ctx: object) -> None:
        seen.append(event)

    typed = Router("typed")

    @typed.subscribe("undeclared.*", name="typed.any")
    async def typed_event(thing: Thing, ctx: object) -> None:
        raise AssertionError("a payload handler never gets an undeclared type")

    unit = Unit("pub", "publishes an undeclared type", (pub, raw, typed), tools=())
    return unit, seen


async def test_publishing_an_undeclared_type_is_dead_lettered_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CODEBUS_UNKNOWN_EVENTS", raising=False)
    unit, seen = _publisher_unit()
    with declared_event_types({"thing.asked": Thing}):
        run = await run_units([unit], [("thing.asked", {"name": "x"})])
    assert run.published == [] and seen == []
    (dead,) = run.dead_letters
    assert dead.event.type == "thing.asked"
    assert dead.kind == "rejected"  # not retried until exhausted
    assert "'undeclared.happened'" in dead.reason


async def test_pass_routes_undeclared_types_to_envelope_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEBUS_UNKNOWN_EVENTS", "pass")
    unit, seen = _publisher_unit()
    with declared_event_types({"thing.asked": Thing}):
        run = await run_units([unit], [("thing.asked", {"name": "x"})])
    assert run.types() == ["undeclared.happened"]
    assert [(e.type, e.data) for e in seen] == [("undeclared.happened", {"n": 1})]
    # The payload-typed subscription dead-letters it at once, never after retries.
    (dead,) = run.dead_letters
    assert (dead.event.type, dead.kind) == ("undeclared.happened", "unexpected_type")


async def test_gateway_accepts_declared_user_types_and_documents_them(client, broker) -> None:
    headers = {"Authorization": f"Bearer {OPS_KEY}"}
    body = {"type": "thing.made", "data": {"name": "w"}}
    refused = await client.post("/events", json=body, headers=headers)
    assert refused.status == 400
    assert "'thing.made'" in (await refused.json())["detail"]
    with declared_event_types({"thing.made": Thing}, source="things-pkg"):
        resp = await client.post("/events", json=body, headers=headers)
        assert resp.status == 202, await resp.text()
        bad = await client.post("/events", json={**body, "data": {}}, headers=headers)
        assert bad.status == 400 and "data.name" in (await bad.json())["fields"]
        spec = await (await client.get("/openapi.json")).json()
    assert [(e.type, e.data) for e in await published(broker)] == [("thing.made", {"name": "w"})]
    bodies = json.dumps(spec["components"]["schemas"]["PublishRequest"])
    assert "thing.made" in bodies
