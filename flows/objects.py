"""The Kubernetes objects a strategy applies, derived from the app's manifests.

Canary: the stable Deployment keeps the manifest's name; the canary is a copy named
``<name>-canary`` whose selector and pod labels add ``codebus.io/track: canary``. The
app's Service selects by the manifest's labels, so it spreads connections over the
ready pods of both: the canary's traffic share is its share of ready pods.

Blue-green: ``<name>-blue`` / ``<name>-green`` with ``codebus.io/color`` in selector and
pod labels; the active and preview Services add the colour to the manifest Service's
selector. Promotion patches one selector.
"""

from __future__ import annotations

import copy
from typing import Any

TRACK_LABEL = "codebus.io/track"
COLOR_LABEL = "codebus.io/color"
COLOURS = ("blue", "green")

Obj = dict[str, Any]


def _with_labels(dep: Obj, name: str, labels: dict[str, str], replicas: int) -> Obj:
    out = copy.deepcopy(dep)
    out["metadata"] = {
        k: v for k, v in out["metadata"].items() if k in ("name", "labels", "annotations")
    }
    out["metadata"]["name"] = name
    out["metadata"]["labels"] = {**(out["metadata"].get("labels") or {}), **labels}
    spec = out.setdefault("spec", {})
    spec["replicas"] = replicas
    match = spec.setdefault("selector", {}).setdefault("matchLabels", {})
    match.update(labels)
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
    out.pop("status", None)
    return out


def canary_deployment(dep: Obj, name: str, replicas: int) -> Obj:
    """The canary copy of the app's Deployment (new version) at ``replicas``."""
    return _with_labels(dep, name, {TRACK_LABEL: "canary"}, replicas)


def stable_deployment(dep: Obj, replicas: int) -> Obj:
    """The app's Deployment (new version) at ``replicas``: the canary's promotion."""
    out = copy.deepcopy(dep)
    out.setdefault("spec", {})["replicas"] = replicas
    return out


def colour_deployment(dep: Obj, colour: str, replicas: int) -> Obj:
    """The app's Deployment of one colour."""
    return _with_labels(dep, f"{dep['metadata']['name']}-{colour}", {COLOR_LABEL: colour}, replicas)


def service_for(svc: Obj, name: str, colour: str | None) -> Obj:
    """The manifest's Service under ``name``, selecting ``colour`` (None: the manifest's
    own selector, i.e. the pods from before codebus managed colours)."""
    out = copy.deepcopy(svc)
    out["metadata"] = {k: v for k, v in out["metadata"].items() if k in ("name", "labels")}
    out["metadata"]["name"] = name
    selector = dict((out.setdefault("spec", {}).get("selector")) or {})
    selector.pop(COLOR_LABEL, None)
    if colour is not None:
        selector[COLOR_LABEL] = colour
    out["spec"]["selector"] = selector
    return out


def other_colour(colour: str | None) -> str:
    """The colour a new version gets: the one not serving now (blue first)."""
    return "green" if colour == "blue" else "blue"


def without_kinds(objects: list[Obj], *kinds: str) -> list[Obj]:
    """The objects that are none of ``kinds`` (ConfigMaps, Secrets, ... applied as is)."""
    return [copy.deepcopy(o) for o in objects if o.get("kind") not in kinds]


def images_of(objects: list[Obj]) -> list[str]:
    """Every container image the manifests' pod templates run (init containers too),
    in first-seen order: exactly what must be scanned."""
    seen: list[str] = []
    for obj in objects:
        spec = obj.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        if obj.get("kind") == "Pod":
            pod = spec
        if obj.get("kind") == "CronJob":
            job = (spec.get("jobTemplate") or {}).get("spec") or {}
            pod = (job.get("template") or {}).get("spec") or {}
        for key in ("initContainers", "containers", "ephemeralContainers"):
            for c in pod.get(key) or []:
                image = c.get("image") if isinstance(c, dict) else None
                if isinstance(image, str) and image not in seen:
                    seen.append(image)
    return seen
