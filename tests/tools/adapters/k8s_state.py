"""Object storage of the test Kubernetes API server: resources, objects, versions, owners.

Defined independently of the adapter's resource table on purpose: the adapter must
find these paths on its own, as it would against a real cluster.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.tools.adapters.k8s_patches import leaf_paths


@dataclass(frozen=True)
class Resource:
    """One served resource."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    scalable: bool = False

    @property
    def api_version(self) -> str:
        """``v1`` or ``group/version``."""
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = (
    Resource("", "v1", "pods", "Pod"),
    Resource("", "v1", "services", "Service"),
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False),
    Resource("apps", "v1", "deployments", "Deployment", scalable=True),
    Resource("apps", "v1", "replicasets", "ReplicaSet", scalable=True),
    Resource("apps", "v1", "statefulsets", "StatefulSet", scalable=True),
    Resource("example.com", "v1", "widgets", "Widget"),  # a custom resource: needs discovery
)

Key = tuple[Resource, str | None, str]

# Fields that identify an object rather than configure it; never conflicts for apply.
_IDENTITY = {".apiVersion", ".kind", ".metadata.name", ".metadata.namespace"}


def find_resource(group: str, version: str, plural: str) -> Resource | None:
    """The served resource at ``group/version/plural``."""
    for res in RESOURCES:
        if (res.group, res.version, res.plural) == (group, version, plural):
            return res
    return None


def by_kind(kind: str) -> Resource:
    """The served resource of ``kind`` (for seeding objects)."""
    return next(r for r in RESOURCES if r.kind == kind)


def _stable(obj: dict[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(obj)
    for key in ("resourceVersion", "generation", "managedFields"):
        clean.get("metadata", {}).pop(key, None)
    return clean


@dataclass
class ApiState:
    """Every object, per-manager field ownership for apply, and pod logs."""

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    owners: dict[Key, dict[str, str]] = field(default_factory=dict)
    logs: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object, or None."""
        return self.objects.get((res, namespace, name))

    def select(self, res: Resource, namespace: str | None) -> list[dict[str, Any]]:
        """Objects of ``res`` in ``namespace`` (every namespace if None)."""
        return [
            obj
            for (r, ns, _), obj in sorted(
                self.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])
            )
            if r == res and (namespace is None or ns == namespace)
        ]

    def prepare(self, res: Resource, namespace: str | None, obj: dict[str, Any]) -> dict[str, Any]:
        """A new object as the server would store it (defaults, uid, timestamps)."""
        new = copy.deepcopy(obj)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        meta = new.setdefault("metadata", {})
        if namespace is not None:
            meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["generation"] = 1
        if res.kind == "Deployment":
            new.setdefault("spec", {}).setdefault("replicas", 1)
        return new

    def write(self, res: Resource, namespace: str | None, new: dict[str, Any]) -> dict[str, Any]:
        """Store ``new``; bump resourceVersion if anything changed, generation if spec did."""
        key = (res, namespace, new["metadata"]["name"])
        old = self.objects.get(key)
        if old is not None and _stable(old) == _stable(new):
            return old
        stored = copy.deepcopy(new)
        meta = stored["metadata"]
        if old is not None:
            meta["generation"] = old["metadata"].get("generation", 1) + (
                1 if old.get("spec") != stored.get("spec") else 0
            )
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[key] = stored
        return stored

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Seed an object (tests): ``kind`` picks the resource."""
        res = by_kind(obj["kind"])
        namespace = obj.get("metadata", {}).get("namespace", "default") if res.namespaced else None
        return self.write(res, namespace, self.prepare(res, namespace, obj))

    def delete(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """Remove an object and, as the garbage collector would, what it owns."""
        key = (res, namespace, name)
        obj = self.objects.pop(key)
        self.owners.pop(key, None)
        uid = obj["metadata"]["uid"]
        for other_key, other in list(self.objects.items()):
            refs = other["metadata"].get("ownerReferences") or []
            in_deleted_ns = res.kind == "Namespace" and other_key[1] == name
            if in_deleted_ns or any(ref.get("uid") == uid for ref in refs):
                self.objects.pop(other_key, None)
                self.owners.pop(other_key, None)
        return obj

    def conflicts(self, key: Key, body: dict[str, Any], manager: str) -> list[tuple[str, str]]:
        """(manager, field) pairs an apply by ``manager`` would take from other managers."""
        current = self.objects.get(key)
        if current is None:
            return []
        now = leaf_paths(current)
        owners = self.owners.get(key, {})
        return [
            (owners[path], path)
            for path, value in leaf_paths(body).items()
            if path not in _IDENTITY
            and owners.get(path, manager) != manager
            and now.get(path) != value
        ]

    def own(self, key: Key, body: dict[str, Any], manager: str) -> None:
        """Record ``manager`` as owner of every field of its applied configuration."""
        owners = self.owners.setdefault(key, {})
        for path in leaf_paths(body):
            if path not in _IDENTITY:
                owners[path] = manager
