"""Handlers reach their dependencies through the typed context (handlers.deps and
``ctx.toolbox``/``redis``/``names``), never the string-keyed ``ctx.deps`` dict."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from bus.context import HandlerContext
from handlers.deps import FlowDeps, WorkitemsDeps, metrics_registry, seconds, unit_deps_of
from schemas.envelope import new_event

HANDLERS = Path(__file__).resolve().parents[2] / "handlers"
#: The typed view itself and another engineer's module.
EXEMPT = {"deps.py", "toolcalls.py"}


def _ctx(deps: dict[str, Any]) -> HandlerContext:
    import logging

    event = new_event("image.built", {"app": "web", "version": "1", "image_tag": "web:1"})
    return HandlerContext(
        event=event,
        subscription="t.sub",
        attempt=1,
        broker=None,  # type: ignore[arg-type]
        deps=deps,
        logger=logging.getLogger("t"),
        source="t",
    )


def test_no_handler_reads_the_string_keyed_deps() -> None:
    offenders = []
    for path in sorted(HANDLERS.glob("*.py")):
        if path.name in EXEMPT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "deps":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_view_is_built_from_the_worker_deps() -> None:
    ctx = _ctx({"flows_bucket": "records", "flows_sweep_interval": 0.5, "other": 1})
    deps = FlowDeps.of(ctx)
    assert (deps.flows_bucket, deps.flows_sweep_interval, deps.flows_config) == (
        "records",
        0.5,
        None,
    )
    assert seconds(deps.flows_sweep_interval, 10.0) == 0.5
    assert seconds(deps.flows_sweep_grace, 5.0) == 5.0
    assert seconds(0.0, 5.0) == 0.0  # a zero is a value, not "unset"


def test_factory_object_wins() -> None:
    made = WorkitemsDeps(workitems_project="Platform")
    ctx = _ctx({"unit_deps": made, "workitems_project": "ignored"})
    assert unit_deps_of(ctx, WorkitemsDeps) is made


def test_metrics_registry_missing_names_the_subscription() -> None:
    with pytest.raises(LookupError, match=r"t\.sub"):
        metrics_registry(_ctx({}))


def test_workitems_factory_makes_the_typed_object() -> None:
    from handlers.workitems import _project, unit_deps
    from workers.settings import Settings
    from workers.units import UNITS

    made = UNITS["workitems"].extra_deps(Settings(workitems_project="Platform"), None)
    assert made == {"unit_deps": WorkitemsDeps(workitems_project="Platform")}
    assert unit_deps(Settings(), None) == WorkitemsDeps(workitems_project="Operations")
    assert _project(_ctx(made)) == "Platform"
