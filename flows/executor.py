"""Carrying out one ``run`` action of a flow through the Kubernetes tools.

Every operation sets absolute state (apply these objects, scale to N, this selector) or
only reads, so running it again after a crash is harmless. ``ToolFailed`` (the tool ran
and said no) becomes a failed :class:`StepResult`; transient errors propagate, so the
delivery is retried and the action, still in the outbox, runs again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from flows.analysis import measure, next_due
from flows.machine import StepResult
from flows.objects import (
    canary_deployment,
    colour_deployment,
    other_colour,
    service_for,
    stable_deployment,
    without_kinds,
)
from flows.plan import deployments_of
from schemas.analysis import AnalysisTemplate, Measurement
from schemas.flows import FlowState
from tools.errors import ToolFailed

CallTool = Callable[[str, dict[str, Any]], Awaitable[Any]]


class _Run:
    def __init__(self, state: FlowState, call: CallTool) -> None:
        self.s = state
        self._call = call
        self.calls: list[dict[str, Any]] = []

    async def call_plain(self, tool: str, args: dict[str, Any]) -> Any:
        """The tool call as the analysis module wants it (errors are its evidence)."""
        return await self._call(tool, args)

    async def call(self, tool: str, args: dict[str, Any], brief: dict[str, Any]) -> Any:
        entry: dict[str, Any] = {"tool": tool, **brief}
        self.calls.append(entry)
        try:
            result = await self._call(tool, args)
        except ToolFailed as exc:
            entry["error"] = str(exc)[:500]
            raise
        entry["ok"] = True
        return result

    # ---- primitive operations ----------------------------------------------------------
    async def apply(self, objects: list[dict[str, Any]]) -> None:
        names = [f"{o['kind']}/{o['metadata']['name']}" for o in objects]
        res = await self.call(
            "kubernetes.kubectl_apply",
            {"objects": objects, "namespace": self.s.namespace},
            {"objects": names},
        )
        self.calls[-1]["status"] = res.status

    async def scale(self, name: str, replicas: int) -> None:
        try:
            res = await self.call(
                "kubernetes.kubectl_scale",
                {"name": name, "replicas": replicas, "namespace": self.s.namespace},
                {"name": name, "replicas": replicas},
            )
        except ToolFailed as exc:
            if exc.status == 404 and replicas == 0:
                self.calls[-1]["error"] = "not found: nothing to scale down"
                return  # the state asked for (no pods of it) holds
            raise
        self.calls[-1]["previous"] = res.previous_replicas

    async def status(self, name: str) -> Any:
        return await self.call(
            "kubernetes.kubectl_rollout_status",
            {"name": name, "namespace": self.s.namespace, "watch": False},
            {"name": name},
        )

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            res = await self.call(
                "kubernetes.kubectl_get",
                {"resource_type": kind, "name": name, "namespace": self.s.namespace},
                {"kind": kind, "name": name},
            )
        except ToolFailed as exc:
            if exc.status == 404:
                self.calls[-1]["error"] = "not found"
                return None
            raise
        return res.items[0] if res.items else None

    async def undo(self, name: str) -> None:
        await self.call(
            "kubernetes.kubectl_rollout",
            {"action": "undo", "name": name, "namespace": self.s.namespace},
            {"action": "undo", "name": name},
        )

    def ref(self, ref: str) -> str | None:
        """A deployment ref of the plan (``@stable`` ...) as a name (None: none exists)."""
        if not ref.startswith("@"):
            return ref
        key = {
            "@stable": "stable",
            "@canary": "canary",
            "@new": "new_deployment",
            "@old": "old_deployment",
        }[ref]
        value = self.s.meta.get(key)
        return None if value is None else str(value)

    @property
    def app_deployment(self) -> dict[str, Any]:
        return deployments_of(self.s.objects)[0]

    @property
    def service(self) -> dict[str, Any]:
        return next(o for o in self.s.objects if o.get("kind") == "Service")


async def _enter(r: _Run, step: dict[str, Any]) -> dict[str, Any]:
    s = r.s
    kind = step["kind"]
    n = int(s.meta.get("replicas", 1))
    if kind == "apply" and step["target"] == "all":
        # What existed before decides whether an abort can undo or has nothing to go
        # back to; read once (a repeat after a crash would see our own apply).
        existed = s.meta.get("existed")
        if existed is None:
            existed = [
                n for n in s.meta.get("deployments", []) if await r.get("deployment", n) is not None
            ]
        await r.apply(s.objects)
        return {"meta": {"existed": existed}}
    elif kind == "apply" and step["target"] == "canary":
        dep = r.app_deployment
        if await r.get("deployment", s.meta["stable"]) is None:
            await r.apply([*without_kinds(s.objects, "Deployment"), stable_deployment(dep, n)])
            return {"first_deploy": True}
        canary = canary_deployment(dep, s.meta["canary"], 0)
        await r.apply([*without_kinds(s.objects, "Deployment"), canary])
    elif kind == "apply" and step["target"] == "stable":
        await r.apply([stable_deployment(r.app_deployment, n)])
        return {"meta": {"stable_promoted": True}}
    elif kind == "apply" and step["target"] == "preview":
        return await _apply_preview(r, n)
    elif kind == "scale":
        for ref, replicas in step["replicas"].items():
            name = r.ref(ref)
            if name is not None:
                await r.scale(name, int(replicas))
    elif kind == "switch":
        colour = s.meta["new_colour"]
        await r.apply([service_for(r.service, s.meta["active_service"], colour)])
    else:
        raise ValueError(f"step kind {kind!r} has no enter operation")
    return {}


async def _apply_preview(r: _Run, n: int) -> dict[str, Any]:
    s = r.s
    dep = r.app_deployment
    active = await r.get("service", s.meta["active_service"])
    old_colour: str | None = None
    old_deployment: str | None = None
    if active is not None:
        old_colour = (active.get("spec", {}).get("selector") or {}).get("codebus.io/color")
        base = dep["metadata"]["name"]
        old_deployment = f"{base}-{old_colour}" if old_colour else base
    new_colour = other_colour(old_colour)
    new = colour_deployment(dep, new_colour, n)
    preview = service_for(r.service, s.meta["preview_service"], new_colour)
    await r.apply([*without_kinds(s.objects, "Deployment", "Service"), new, preview])
    return {
        "meta": {
            "old_colour": old_colour,
            "new_colour": new_colour,
            "old_deployment": old_deployment,
            "new_deployment": new["metadata"]["name"],
            "had_active": active is not None,
        }
    }


async def _check(r: _Run, step: dict[str, Any]) -> dict[str, Any]:
    s = r.s
    if s.strategy == "canary" and step["kind"] == "scale":
        refs = ["@canary", "@stable"]
    elif step["kind"] == "scale":
        refs = [k for k, v in step["replicas"].items() if v]
    else:
        refs = list(step["deployments"])
    statuses = {}
    for ref in refs:
        name = r.ref(ref)
        if name is not None:
            statuses[ref] = await r.status(name)
    failed = [st for st in statuses.values() if st.status == "failed"]
    waiting = [st for st in statuses.values() if not st.ready]
    data: dict[str, Any] = {
        "ready": not waiting,
        "failed": bool(failed),
        "message": (failed or waiting or list(statuses.values()))[0].message if statuses else "",
    }
    if s.strategy == "canary" and "@canary" in statuses and "@stable" in statuses:
        canary = statuses["@canary"].ready_replicas
        stable = statuses["@stable"].ready_replicas
        data["canary_ready"], data["stable_ready"] = canary, stable
        total = canary + stable
        data["actual_weight"] = round(100.0 * canary / total, 2) if total else 0.0
    return data


async def _abort(r: _Run) -> dict[str, Any]:
    s = r.s
    n = int(s.meta.get("replicas", 1))
    if s.strategy == "rolling":
        existed = s.meta.get("existed") or []
        for name in existed:
            await r.undo(name)
        if not existed:
            return {"nothing_to_undo": True}
    elif s.strategy == "canary":
        if s.meta.get("stable_promoted"):
            await r.undo(s.meta["stable"])
        if await r.get("deployment", s.meta["canary"]) is not None:
            await r.scale(s.meta["stable"], n)  # capacity first
            await r.scale(s.meta["canary"], 0)
    else:
        if s.switched and s.meta.get("had_active"):
            back = service_for(r.service, s.meta["active_service"], s.meta.get("old_colour"))
            await r.apply([back])
        new = s.meta.get("new_deployment")
        if new and (s.meta.get("had_active") or not s.switched):
            await r.scale(new, 0)
    return {}


async def _measure(r: _Run, step: dict[str, Any], now: float) -> dict[str, Any]:
    """Measure every metric of the step's template that is due (never raises for a
    failed query: that is an ``error`` measurement)."""
    s = r.s
    template = AnalysisTemplate.model_validate(step["template"])
    args = {
        **template.args,
        "app": s.app,
        "version": s.version,
        "environment": s.environment,
        "namespace": s.namespace,
        "flow_id": s.id,
        "stable": str(s.meta.get("stable", "")),
        "canary": str(s.meta.get("canary", "")),
        **step.get("args", {}),
    }
    started = float(s.step_state.get("started_at", now))
    raw = s.step_state.get("measurements") or {}
    taken = []
    for metric in template.metrics:
        done = [Measurement.model_validate(m) for m in raw.get(metric.name, [])]
        due = next_due(metric, done, started)
        if due is not None and due <= now + 0.001:
            m = await measure(r.call_plain, metric, args, now)
            r.calls.append({"tool": "analysis", "metric": m.metric, "phase": m.phase})
            taken.append(m.model_dump(mode="json"))
    return {"measurements": taken}


async def execute(
    state: FlowState, action: dict[str, Any], call: CallTool, now: float | None = None
) -> StepResult:
    """Run ``action`` (a ``run`` entry of the outbox) and report its outcome."""
    r = _Run(state, call)
    op = action["op"]
    try:
        if op == "abort":
            data = await _abort(r)
        elif op == "measure":
            data = await _measure(r, state.steps[action["step"]], now or time.time())
        elif op == "enter":
            data = await _enter(r, state.steps[action["step"]])
        else:
            data = await _check(r, state.steps[action["step"]])
    except ToolFailed as exc:
        return StepResult(seq=action["seq"], ok=False, error=str(exc)[:1000], calls=tuple(r.calls))
    return StepResult(seq=action["seq"], ok=True, data=data, calls=tuple(r.calls))
