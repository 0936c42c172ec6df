"""Compiling a strategy spec into a flow's plan: a list of plain steps the decision
function walks (``flows.machine``) and the executor carries out (``flows.executor``).

Step kinds (every tool step sets absolute state, so repeating it is harmless):

- ``apply`` (target ``all`` | ``canary`` | ``preview`` | ``stable``): server-side apply;
- ``scale`` (``replicas``: deployment ref -> count, optional ``weight``), then wait for the
  scaled Deployments to be ready (``deadline``);
- ``wait_ready`` (``deployments``, ``deadline``): poll Deployment status by timer;
- ``pause`` (``seconds`` or null = until promoted), ``wait`` (``seconds``, no pause phase);
- ``approval`` (``timeout``, ``timeout_action``);
- ``switch`` (``to``): one selector patch of the active Service.

Deployment refs: ``@stable``, ``@canary``, ``@new``, ``@old`` (blue-green colours, known
once the first step has read the active Service), or a Deployment name.

Canary rounding rule: the canary gets ``round_half_up(weight * replicas / 100)`` pods,
the stable the rest. A weight of 1-99 % is reachable only if it needs at least one
canary pod and leaves at least one stable pod without rounding (``weight * replicas /
100 >= 1`` and ``(100 - weight) * replicas / 100 >= 1``); otherwise the plan is refused
at validation, never silently approximated.
"""

from __future__ import annotations

import math
from typing import Any

from schemas.analysis import AnalysisTemplate
from schemas.flows import (
    AnalysisRef,
    AnalysisStep,
    BlueGreenSpec,
    CanarySpec,
    FlowOverrides,
    Pause,
    RollingSpec,
    SetWeight,
    StrategySpec,
)

Step = dict[str, Any]

#: Arguments every analysis run gets (``{{args.app}}`` ...), besides its own.
BUILTIN_ARGS = ("app", "version", "environment", "namespace", "flow_id", "stable", "canary")


class PlanError(ValueError):
    """The spec cannot be carried out as written; the message names the field."""


def canary_replicas(weight: int, replicas: int) -> int:
    """Canary pods for ``weight`` % of ``replicas`` (nearest, halves up; see module doc)."""
    return min(replicas, max(0, math.floor(weight * replicas / 100 + 0.5)))


def check_weight(weight: int, replicas: int, where: str) -> None:
    """Refuse a weight the replica count cannot express (see the module docstring)."""
    if 0 < weight < 100 and (weight * replicas < 100 or (100 - weight) * replicas < 100):
        need = math.ceil(100 / min(weight, 100 - weight))
        raise PlanError(
            f"{where}: weight {weight} % is unreachable with {replicas} replicas "
            f"(needs at least {need}; a replica share cannot be finer than 1/{replicas})"
        )


def deployments_of(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Deployment objects of a manifest set."""
    return [o for o in objects if o.get("kind") == "Deployment"]


def _one_deployment(objects: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
    deps = deployments_of(objects)
    if len(deps) != 1:
        raise PlanError(
            f"manifest_path: the {strategy} strategy needs exactly one Deployment in the "
            f"manifests, found {len(deps)}"
        )
    return deps[0]


def _replicas(dep: dict[str, Any], configured: int | None) -> int:
    if configured is not None:
        return configured
    return int(dep.get("spec", {}).get("replicas") or 1)


def _merge_overrides(spec: StrategySpec, o: FlowOverrides | None) -> StrategySpec:
    if o is None:
        return spec
    rolling = spec.rolling.model_copy(
        update={k: v for k, v in {"progress_deadline": o.progress_deadline}.items() if v}
    )
    canary_upd: dict[str, Any] = {}
    if o.steps is not None:
        canary_upd["steps"] = o.steps
    if o.replicas is not None:
        canary_upd["replicas"] = o.replicas
    bg_upd = {
        k: getattr(o, k)
        for k in ("auto_promote", "approval_timeout", "approval_timeout_action", "scale_down_delay")
        if getattr(o, k) is not None
    }
    if o.replicas is not None:
        bg_upd["replicas"] = o.replicas
    return spec.model_copy(
        update={
            "rolling": rolling,
            "canary": spec.canary.model_copy(update=canary_upd),
            "blue_green": spec.blue_green.model_copy(update=bg_upd),
        }
    )


def analysis_step(
    ref: AnalysisRef, templates: dict[str, AnalysisTemplate], where: str, **extra: Any
) -> Step:
    """An ``analysis`` step with its template inlined (the plan never changes under a
    running flow); PlanError for an unknown template or an argument nobody fills."""
    template = templates.get(ref.template)
    if template is None:
        known = ", ".join(sorted(templates)) or "none configured"
        raise PlanError(f"{where}.template: unknown analysis template {ref.template!r} ({known})")
    missing = template.missing_args({**dict.fromkeys(BUILTIN_ARGS, ""), **ref.args})
    if missing:
        raise PlanError(f"{where}.args: {ref.template} needs {', '.join(sorted(missing))}")
    for metric in template.metrics:
        if metric.interval is not None and metric.count is None:
            raise PlanError(
                f"{where}: metric {metric.name} of {ref.template} has an interval but no count; "
                "an analysis step must end by itself"
            )
    return {
        "kind": "analysis",
        "name": ref.template,
        "template": template.model_dump(mode="json"),
        "args": dict(ref.args),
        "timeout": ref.approval_timeout,
        "timeout_action": ref.approval_timeout_action,
        **extra,
    }


def compile_plan(
    strategy: str,
    spec: StrategySpec,
    objects: list[dict[str, Any]],
    overrides: FlowOverrides | None = None,
    templates: dict[str, AnalysisTemplate] | None = None,
) -> tuple[list[Step], dict[str, Any]]:
    """The steps and the metadata (names, replica counts) of a flow; PlanError if the
    spec cannot be carried out with these manifests."""
    spec = _merge_overrides(spec, overrides)
    if strategy == "rolling":
        return _rolling(spec.rolling, objects)
    if strategy == "canary":
        return _canary(spec.canary, objects, templates or {})
    if strategy == "blue_green":
        return _blue_green(spec.blue_green, objects, templates or {})
    raise PlanError(f"strategy: unknown strategy {strategy!r}")


def _rolling(spec: RollingSpec, objects: list[dict[str, Any]]) -> tuple[list[Step], dict[str, Any]]:
    names = [d["metadata"]["name"] for d in deployments_of(objects)]
    if not names:
        raise PlanError("manifest_path: the manifests hold no Deployment to roll out")
    steps: list[Step] = [
        {"kind": "apply", "target": "all"},
        {
            "kind": "wait_ready",
            "deployments": names,
            "deadline": spec.progress_deadline,
            "poll": spec.poll_interval,
        },
    ]
    return steps, {"deployments": names}


def _canary(
    spec: CanarySpec, objects: list[dict[str, Any]], templates: dict[str, AnalysisTemplate]
) -> tuple[list[Step], dict[str, Any]]:
    dep = _one_deployment(objects, "canary")
    n = _replicas(dep, spec.replicas)
    stable = dep["metadata"]["name"]
    canary = f"{stable}-canary"[:253]
    if not spec.steps:
        raise PlanError("canary.steps: at least one step is needed")
    steps: list[Step] = [{"kind": "apply", "target": "canary"}]
    for i, s in enumerate(spec.steps):
        if isinstance(s, SetWeight):
            check_weight(s.set_weight, n, f"canary.steps.{i}.set_weight")
            c = canary_replicas(s.set_weight, n)
            steps.append(
                {
                    "kind": "scale",
                    "weight": s.set_weight,
                    # Canary first, then stable: capacity never drops below n.
                    "replicas": {"@canary": c, "@stable": n - c},
                    "deadline": spec.step_deadline,
                    "poll": spec.poll_interval,
                }
            )
        elif isinstance(s, Pause):
            steps.append({"kind": "pause", "seconds": s.pause})
        elif isinstance(s, AnalysisStep):
            steps.append(analysis_step(s.analysis, templates, f"canary.steps.{i}.analysis"))
        else:  # only reachable by building specs without validation
            raise PlanError(f"canary.steps.{i}: not a set_weight, pause or analysis step")
    steps += [
        {"kind": "apply", "target": "stable", "phase": "promoting", "promotion": True},
        {
            "kind": "wait_ready",
            "deployments": ["@stable"],
            "deadline": spec.step_deadline,
            "poll": spec.poll_interval,
            "phase": "promoting",
        },
        {"kind": "scale", "replicas": {"@canary": 0}, "phase": "promoting", "final": True},
    ]
    meta = {"stable": stable, "canary": canary, "replicas": n}
    return steps, meta


def _blue_green(
    spec: BlueGreenSpec, objects: list[dict[str, Any]], templates: dict[str, AnalysisTemplate]
) -> tuple[list[Step], dict[str, Any]]:
    dep = _one_deployment(objects, "blue-green")
    services = [o for o in objects if o.get("kind") == "Service"]
    if len(services) != 1:
        raise PlanError(
            f"manifest_path: the blue-green strategy needs exactly one Service (the active "
            f"one) in the manifests, found {len(services)}"
        )
    active = services[0]["metadata"]["name"]
    n = _replicas(dep, spec.replicas)
    steps: list[Step] = [
        {"kind": "apply", "target": "preview"},
        {
            "kind": "wait_ready",
            "deployments": ["@new"],
            "deadline": spec.step_deadline,
            "poll": spec.poll_interval,
        },
    ]
    if spec.pre_promotion_analysis is not None:
        where = "blue_green.pre_promotion_analysis"
        steps.append(analysis_step(spec.pre_promotion_analysis, templates, where))
    if not spec.auto_promote:
        steps.append(
            {
                "kind": "approval",
                "timeout": spec.approval_timeout,
                "timeout_action": spec.approval_timeout_action,
            }
        )
    steps += [
        {"kind": "switch", "to": "@new", "phase": "promoting", "promotion": True},
    ]
    if spec.post_promotion_analysis is not None:
        where = "blue_green.post_promotion_analysis"
        steps.append(
            analysis_step(spec.post_promotion_analysis, templates, where, phase="promoting")
        )
    steps += [
        {"kind": "wait", "seconds": spec.scale_down_delay, "phase": "promoting"},
        {"kind": "scale", "replicas": {"@old": 0}, "phase": "promoting", "final": True},
    ]
    meta = {
        "app_deployment": dep["metadata"]["name"],
        "active_service": active,
        "preview_service": f"{active}{spec.preview_suffix}"[:63],
        "replicas": n,
    }
    return steps, meta


def describe_step(step: Step) -> str:
    """One line for people: ``set weight 25 %``, ``pause 300 s``, ..."""
    kind = step["kind"]
    if kind == "scale" and "weight" in step:
        return f"set weight {step['weight']} %"
    if kind == "scale":
        return "scale " + ", ".join(f"{k}={v}" for k, v in step["replicas"].items())
    if kind == "pause":
        return "pause until promoted" if step["seconds"] is None else f"pause {step['seconds']} s"
    if kind == "wait":
        return f"wait {step['seconds']} s"
    if kind == "wait_ready":
        return "wait until ready: " + ", ".join(step["deployments"])
    if kind == "apply":
        return f"apply {step['target']}"
    if kind == "switch":
        return f"switch the active Service to {step['to']}"
    if kind == "approval":
        return "wait for approval"
    if kind == "analysis":
        return f"analysis {step['name']}"
    return str(kind)
