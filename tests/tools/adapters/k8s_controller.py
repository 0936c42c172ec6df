"""A deployment controller for the test API server: one small step per observation.

Each :func:`tick` does one thing, as a real rollout proceeds over time: observe the new
generation (and pick or create the ReplicaSet of the current template, with the next
revision, as the real controller does, also on rollback), then make one new pod
available, add one new pod, or remove one old pod. So ``kubectl_rollout_status`` sees
several intermediate states before the rollout completes.

Knobs, by the first container's image tag:
``:broken``   new pods never become available (rollout never completes);
``:deadline`` the Progressing condition reports ProgressDeadlineExceeded.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.tools.adapters.k8s_patches import template_hash
from tests.tools.adapters.k8s_state import ApiState, by_kind

_RS = by_kind("ReplicaSet")
REVISION = "deployment.kubernetes.io/revision"


def _image_tag(dep: dict[str, Any]) -> str:
    containers = dep["spec"].get("template", {}).get("spec", {}).get("containers") or [{}]
    return str(containers[0].get("image", "")).rpartition(":")[2]


def _owned(state: ApiState, dep: dict[str, Any]) -> list[dict[str, Any]]:
    uid = dep["metadata"]["uid"]
    return [
        rs
        for rs in state.select(_RS, dep["metadata"]["namespace"])
        if any(r.get("uid") == uid for r in rs["metadata"].get("ownerReferences") or [])
    ]


def _revision(obj: dict[str, Any]) -> int:
    return int((obj["metadata"].get("annotations") or {}).get(REVISION, "0"))


def _sync_new_replica_set(state: ApiState, dep: dict[str, Any]) -> None:
    """Find the ReplicaSet of the current template or create it, at the newest revision."""
    meta, ns = dep["metadata"], dep["metadata"]["namespace"]
    digest = template_hash(dep["spec"]["template"])
    owned = _owned(state, dep)
    top = max((_revision(rs) for rs in owned), default=0)
    current = next(
        (rs for rs in owned if rs["metadata"]["labels"].get("pod-template-hash") == digest), None
    )
    if current is None:
        template = copy.deepcopy(dep["spec"]["template"])
        labels = {**template.get("metadata", {}).get("labels", {}), "pod-template-hash": digest}
        template.setdefault("metadata", {})["labels"] = labels
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{digest}",
                "namespace": ns,
                "labels": labels,
                "annotations": {REVISION: str(top + 1)},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": template,
            },
            "status": {"replicas": 0, "availableReplicas": 0},
        }
        state.write(_RS, ns, state.prepare(_RS, ns, rs))
        revision = top + 1
    elif _revision(current) < top:  # a rollback: the old ReplicaSet becomes the newest
        current = copy.deepcopy(current)
        current["metadata"]["annotations"][REVISION] = str(top + 1)
        state.write(_RS, ns, current)
        revision = top + 1
    else:
        revision = _revision(current)
    dep["metadata"].setdefault("annotations", {})[REVISION] = str(revision)


def _set_rs(state: ApiState, rs: dict[str, Any], replicas: int, available: int) -> None:
    rs = copy.deepcopy(rs)
    rs["spec"]["replicas"] = replicas
    rs["status"] = {
        "replicas": replicas,
        "availableReplicas": available,
        "readyReplicas": available,
    }
    state.write(_RS, rs["metadata"]["namespace"], rs)


def _step(state: ApiState, dep: dict[str, Any]) -> None:
    """Make one change towards the desired state (if any is left)."""
    desired = dep["spec"].get("replicas", 1)
    digest = template_hash(dep["spec"]["template"])
    owned = _owned(state, dep)
    new = next(rs for rs in owned if rs["metadata"]["labels"]["pod-template-hash"] == digest)
    old = [rs for rs in owned if rs is not new and rs["spec"]["replicas"] > 0]
    replicas = new["spec"]["replicas"]
    available = new["status"].get("availableReplicas", 0)
    if available < replicas and _image_tag(dep) != "broken":
        _set_rs(state, new, replicas, available + 1)
    elif replicas < desired:
        _set_rs(state, new, replicas + 1, available)
    elif replicas > desired:
        _set_rs(state, new, desired, min(available, desired))
    elif old and available >= desired:
        victim = old[0]
        count = victim["spec"]["replicas"] - 1
        _set_rs(state, victim, count, min(count, victim["status"].get("availableReplicas", 0)))


def _status(state: ApiState, dep: dict[str, Any]) -> dict[str, Any]:
    owned = _owned(state, dep)
    digest = template_hash(dep["spec"]["template"])
    new = [rs for rs in owned if rs["metadata"]["labels"]["pod-template-hash"] == digest]
    total = sum(rs["spec"]["replicas"] for rs in owned)
    updated = sum(rs["spec"]["replicas"] for rs in new)
    available = sum(rs["status"].get("availableReplicas", 0) for rs in owned)
    done = updated == total == dep["spec"].get("replicas", 1) and available >= updated
    reason = "NewReplicaSetAvailable" if done else "ReplicaSetUpdated"
    if _image_tag(dep) == "deadline":
        reason = "ProgressDeadlineExceeded"
    return {
        "observedGeneration": dep["status"].get("observedGeneration", 0),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": available,
        "availableReplicas": available,
        "unavailableReplicas": max(total - available, 0),
        "conditions": [{"type": "Progressing", "status": "True", "reason": reason}],
    }


def tick(state: ApiState, dep: dict[str, Any]) -> dict[str, Any]:
    """One controller step for ``dep``; returns the stored Deployment afterwards."""
    dep = copy.deepcopy(dep)
    status = dep.setdefault("status", {})
    paused = bool(dep["spec"].get("paused"))
    if status.get("observedGeneration", 0) < dep["metadata"]["generation"]:
        status["observedGeneration"] = dep["metadata"]["generation"]
        if not paused:
            _sync_new_replica_set(state, dep)
    elif not paused:
        _step(state, dep)
    if any(True for _ in _owned(state, dep)):
        dep["status"] = _status(state, dep)
    return state.write(by_kind("Deployment"), dep["metadata"]["namespace"], dep)
