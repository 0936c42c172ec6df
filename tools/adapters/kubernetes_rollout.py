"""Deployment rollout logic shared by the real and the fake kubernetes adapters.

Pure functions over API objects (dicts), mirroring kubectl's code so that the tools
answer what ``kubectl rollout status|restart|undo`` would:

* :func:`rollout_status` is kubectl's ``DeploymentStatusViewer.Status``;
* :func:`restart_patch` is kubectl's ``ObjectRestarter`` patch;
* :func:`plan_undo` is kubectl's ``DeploymentRollbacker`` (previous revision, annotation
  copying, ``pod-template-hash`` removal, JSON patch).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.tools.kubernetes import KubectlRolloutStatusResult
from tools.errors import (  # RolloutError, RolloutTimeout: re-exported for adapters
    RolloutError,
    RolloutTimeout,
    ToolFailed,
    ToolTransientError,
)

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
POD_TEMPLATE_HASH = "pod-template-hash"

# Annotations kubectl keeps from the Deployment instead of copying them from the ReplicaSet.
_ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) else default


def rollout_status(deployment: dict[str, Any]) -> KubectlRolloutStatusResult:
    """Whether the Deployment's rollout finished, by kubectl's criteria."""
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    status = deployment.get("status") or {}
    name = meta.get("name", "")
    generation = _int(meta.get("generation"))
    observed = _int(status.get("observedGeneration"))
    desired = _int(spec.get("replicas"), 1)  # the API server defaults spec.replicas to 1
    updated = _int(status.get("updatedReplicas"))
    total = _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"))
    state: Literal["success", "progressing", "failed"] = "progressing"
    if generation <= observed:
        conditions = status.get("conditions") or []
        progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
        if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
            state, message = "failed", f'deployment "{name}" exceeded its progress deadline'
        elif updated < desired:
            message = (
                f'Waiting for deployment "{name}" rollout to finish: '
                f"{updated} out of {desired} new replicas have been updated..."
            )
        elif total > updated:
            message = (
                f'Waiting for deployment "{name}" rollout to finish: '
                f"{total - updated} old replicas are pending termination..."
            )
        elif available < updated:
            message = (
                f'Waiting for deployment "{name}" rollout to finish: '
                f"{available} of {updated} updated replicas are available..."
            )
        else:
            state, message = "success", f'deployment "{name}" successfully rolled out'
    else:
        message = "Waiting for deployment spec update to be observed..."
    return KubectlRolloutStatusResult(
        status=state,
        ready=state == "success",
        message=message,
        name=name,
        namespace=meta.get("namespace", ""),
        generation=generation,
        observed_generation=observed,
        replicas=desired,
        updated_replicas=updated,
        ready_replicas=_int(status.get("readyReplicas")),
        available_replicas=available,
        total_replicas=total,
    )


def restart_patch(deployment: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The strategic-merge patch that makes the controller roll every pod."""
    if deployment.get("spec", {}).get("paused"):
        raise RolloutError("can't restart paused deployment (run rollout resume first)")
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}}}


def revision(obj: dict[str, Any]) -> int | None:
    """The ``deployment.kubernetes.io/revision`` annotation as an int, if valid."""
    raw = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def selector_string(selector: dict[str, Any]) -> str:
    """A LabelSelector as a ``labelSelector`` query string."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    """Whether ``owner`` is ``obj``'s controller (ownerReference with controller=true)."""
    uid = owner.get("metadata", {}).get("uid")
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(template)
    labels = clean.get("metadata", {}).get("labels")
    if labels:
        labels.pop(POD_TEMPLATE_HASH, None)
    return clean


def _pick_replica_set(
    name: str, replica_sets: list[dict[str, Any]], to_revision: int | None
) -> tuple[int, dict[str, Any]]:
    if to_revision is not None:
        for rs in replica_sets:
            if revision(rs) == to_revision:
                return to_revision, rs
        raise RolloutError(f"unable to find specified revision {to_revision} in history")
    latest: tuple[int, dict[str, Any]] | None = None
    previous: tuple[int, dict[str, Any]] | None = None
    for rs in replica_sets:
        rev = revision(rs)
        if rev is None:
            continue
        if latest is None or rev > latest[0]:
            previous, latest = latest, (rev, rs)
        elif previous is None or rev > previous[0]:
            previous = (rev, rs)
    if previous is None:
        raise RolloutError(f'no rollout history found for deployment "{name}"')
    return previous


def plan_undo(
    deployment: dict[str, Any], replica_sets: list[dict[str, Any]], to_revision: int | None
) -> tuple[int, list[dict[str, Any]] | None]:
    """The revision to roll back to and the JSON patch doing it (None: already there).

    ``replica_sets`` may hold any ReplicaSets of the namespace; only those the
    Deployment controls are considered.
    """
    meta = deployment.get("metadata", {})
    if deployment.get("spec", {}).get("paused"):
        raise RolloutError(
            "you cannot rollback a paused deployment; resume it first with "
            "'kubectl rollout resume' and try again"
        )
    owned = [rs for rs in replica_sets if owned_by(rs, deployment)]
    rev, rs = _pick_replica_set(meta.get("name", ""), owned, to_revision)
    template = _without_hash(rs.get("spec", {}).get("template", {}))
    if template == _without_hash(deployment.get("spec", {}).get("template", {})):
        return rev, None
    current = meta.get("annotations") or {}
    annotations = {k: v for k, v in current.items() if k in _ANNOTATIONS_TO_SKIP}
    rs_annotations = rs.get("metadata", {}).get("annotations") or {}
    annotations.update({k: v for k, v in rs_annotations.items() if k not in _ANNOTATIONS_TO_SKIP})
    patch = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    return rev, patch


@dataclass(frozen=True)
class RolloutPlan:
    """What a rollout action sends: a patch (None when already done) and its type."""

    patch: Any
    patch_type: Literal["strategic-merge", "json"]
    message: str
    revision: int | None = None

    @property
    def changed(self) -> bool:
        """Whether the action changes the Deployment."""
        return self.patch is not None


def plan_action(
    action: str,
    deployment: dict[str, Any],
    replica_sets: list[dict[str, Any]],
    to_revision: int | None = None,
) -> RolloutPlan:
    """The patch for restart/pause/resume/undo. Pause and resume are idempotent here
    (kubectl errors on "already paused"); automation re-running a step should not fail."""
    if action == "restart":
        return RolloutPlan(restart_patch(deployment), "strategic-merge", "restarted")
    if action in ("pause", "resume"):
        want = action == "pause"
        if bool(deployment.get("spec", {}).get("paused")) == want:
            return RolloutPlan(None, "strategic-merge", "already paused" if want else "not paused")
        return RolloutPlan({"spec": {"paused": want}}, "strategic-merge", f"{action}d")
    if action == "undo":
        rev, patch = plan_undo(deployment, replica_sets, to_revision)
        if patch is None:
            message = f"skipped rollback (current template already matches revision {rev})"
            return RolloutPlan(None, "json", message, rev)
        return RolloutPlan(patch, "json", f"rolled back to revision {rev}", rev)
    raise RolloutError(f"unknown rollout action {action!r}")


async def wait_for_rollout(
    fetch: Callable[[], Awaitable[dict[str, Any]]],
    *,
    name: str,
    timeout: float,
    interval: float,
    tool: str,
) -> KubectlRolloutStatusResult:
    """Poll ``fetch`` (the Deployment) until it is rolled out.

    Raises ToolFailed when the progress deadline is exceeded and :class:`RolloutTimeout`
    (a transient error) with the last status when ``timeout`` passes first. A transient
    error while polling does not end the wait: one blip is not a failed rollout.
    """
    deadline = time.monotonic() + timeout
    last: KubectlRolloutStatusResult | None = None
    last_error: ToolTransientError | None = None
    while True:
        try:
            last = rollout_status(await fetch())
        except ToolTransientError as exc:
            last_error = exc
        if last is not None and last.status == "success":
            return last
        if last is not None and last.status == "failed":
            raise ToolFailed(last.message, tool=tool)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(interval, remaining))
    if last is None:
        assert last_error is not None
        raise last_error
    raise RolloutTimeout(
        f"rollout of deployment {name} not finished after {timeout:g}s: {last.message}",
        tool=tool,
        last_status=last,
    )
