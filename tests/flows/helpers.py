"""Manifests and flow states for the flow tests."""

from __future__ import annotations

import copy
from typing import Any

from flows.plan import compile_plan
from schemas.flows import FlowOverrides, FlowState, StrategySpec


def deployment(name: str = "web", image: str = "web:2.0", replicas: int = 10) -> dict[str, Any]:
    """A Deployment manifest."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


def service(name: str = "web") -> dict[str, Any]:
    """A Service manifest selecting the app's pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def new_state(
    strategy: str = "canary",
    *,
    spec: StrategySpec | None = None,
    overrides: FlowOverrides | None = None,
    objects: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> FlowState:
    """A flow in ``pending`` with its compiled plan."""
    objects = copy.deepcopy(objects or [deployment(), service()])
    steps, meta = compile_plan(strategy, spec or StrategySpec(), objects, overrides)
    base: dict[str, Any] = {
        "id": "d-test",
        "app": "web",
        "version": "2.0",
        "environment": "staging",
        "namespace": "web-staging",
        "strategy": strategy,
        "images": {"web:2.0": None},
        "objects": objects,
        "meta": meta,
        "steps": steps,
    }
    base.update(fields)
    return FlowState(**base)
