"""In-memory ``kubernetes`` tool server for tests and the demo.

Same name, tools and models as :class:`tools.adapters.kubernetes.KubernetesServer`,
with the same manifest loading, namespace rules and rollout logic (shared modules),
but objects live in a dict and a Deployment is rolled out the moment it changes:
every write records a new revision (as the deployment controller's ReplicaSets do)
and sets its status to fully available. ``never_ready`` names Deployments that stay
unavailable, so ``kubectl_rollout_status`` on them raises ``RolloutTimeout`` (at once:
the fake never sleeps). ``fail_next`` injects an error into the next call of a tool.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any, Literal

from pydantic import BaseModel

from schemas.tools.kubernetes import (
    AppliedAction,
    AppliedObject,
    DeletedObject,
    KubectlApplyArgs,
    KubectlApplyResult,
    KubectlDeleteArgs,
    KubectlDeleteResult,
    KubectlGetArgs,
    KubectlGetResult,
    KubectlLogsArgs,
    KubectlLogsResult,
    KubectlRolloutArgs,
    KubectlRolloutResult,
    KubectlRolloutStatusArgs,
    KubectlRolloutStatusResult,
    KubectlScaleArgs,
    KubectlScaleResult,
    ResourceKind,
    find_builtin,
    find_builtin_kind,
)
from tools.adapters.kubernetes_manifests import (
    apply_sources,
    load_manifests,
    object_namespace,
    summarize_apply,
)
from tools.adapters.kubernetes_rollout import (
    REVISION_ANNOTATION,
    RolloutError,
    RolloutTimeout,
    plan_action,
    rollout_status,
)
from tools.errors import ToolError, ToolFailed
from tools.spec import ToolServer, tool

Key = tuple[str, str | None, str]  # (kind, namespace, name)


def _merge(target: Any, patch: Any) -> Any:
    """Merge-patch semantics: maps merge, ``None`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _json_patch(target: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``replace``/``add`` operations the rollback plan uses."""
    doc = copy.deepcopy(target)
    for op in ops:
        *parents, last = op["path"].lstrip("/").split("/")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(op["value"])
    return doc


def _resolve_type(resource_type: str) -> ResourceKind:
    found = find_builtin(resource_type)
    if found is not None:
        return found
    plural, _, group = resource_type.partition(".")
    kind = plural[:-1].capitalize() if plural.endswith("s") else plural.capitalize()
    return ResourceKind(kind, group, "v1", plural)


def _resolve_kind(api_version: str, kind: str) -> ResourceKind:
    found = find_builtin_kind(api_version, kind)
    if found is not None:
        return found
    group, _, version = api_version.rpartition("/")
    return ResourceKind(kind, group, version, kind.lower() + "s")


def _not_found(tool_name: str, plural: str, name: str) -> ToolFailed:
    return ToolFailed(f'{plural} "{name}" not found', tool=f"kubernetes.{tool_name}", status=404)


class FakeKubernetesServer(ToolServer):
    """In-memory stand-in for the ``kubernetes`` tool server."""

    name = "kubernetes"

    def __init__(
        self,
        default_namespace: str = "default",
        manifests: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        self.default_namespace = default_namespace
        # Canned manifests by manifest_path, for demos without files on disk.
        self.manifests: dict[str, list[dict[str, Any]]] = dict(manifests or {})
        self.objects: dict[Key, dict[str, Any]] = {}
        self.history: dict[Key, list[tuple[int, dict[str, Any]]]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.never_ready: set[str] = set()
        self.calls: list[tuple[str, BaseModel]] = []
        self._failures: dict[str, list[ToolError]] = {}

    # ---- test helpers --------------------------------------------------------------------

    def fail_next(self, tool_name: str, error: ToolError) -> None:
        """Make the next call of ``tool_name`` (e.g. ``kubectl_apply``) raise ``error``."""
        self._failures.setdefault(tool_name, []).append(error)

    def add_manifests(self, path: str, objects: list[dict[str, Any]]) -> None:
        """Serve ``objects`` for ``manifest_path == path`` instead of reading the disk."""
        self.manifests[path] = copy.deepcopy(objects)

    def _load(self, path: str | None, tool_name: str, objects: Any = None) -> list[dict[str, Any]]:
        if path is None or objects is not None:
            return apply_sources(path, objects, tool=f"kubernetes.{tool_name}")
        if path in self.manifests:
            return copy.deepcopy(self.manifests[path])
        return load_manifests(path, tool=tool_name)

    def set_logs(self, pod: str, text: str, namespace: str = "default") -> None:
        """What ``kubectl_logs`` returns for ``pod``."""
        self.logs[(namespace, pod)] = text

    def get(self, kind: str, name: str, namespace: str | None = "default") -> dict[str, Any] | None:
        """A stored object (``namespace`` None for cluster-scoped kinds)."""
        return self.objects.get((kind, namespace, name))

    def _enter(self, tool_name: str, args: BaseModel) -> None:
        self.calls.append((tool_name, args))
        pending = self._failures.get(tool_name)
        if pending:
            raise pending.pop(0)

    def _ns(self, namespace: str | None) -> str:
        return namespace or self.default_namespace

    # ---- object store --------------------------------------------------------------------

    def _store(
        self, res: ResourceKind, ns: str | None, obj: dict[str, Any], *, replace: bool = False
    ) -> AppliedAction:
        """Merge ``obj`` into the stored object (or replace it); bump generation on spec."""
        key = (res.kind, ns, obj["metadata"]["name"])
        old = self.objects.get(key)
        new = _merge(old, obj) if old is not None and not replace else copy.deepcopy(obj)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        meta = new.setdefault("metadata", {})
        if ns is not None:
            meta["namespace"] = ns
        meta.setdefault("uid", str(uuid.uuid4()))
        if old is not None and new == old:
            return "unchanged"
        meta["generation"] = (old or {}).get("metadata", {}).get("generation", 0) + (
            1 if old is None or old.get("spec") != new.get("spec") else 0
        )
        if res.kind == "Deployment":
            self._roll_out(key, new)
        self.objects[key] = new
        return "created" if old is None else "configured"

    def _roll_out(self, key: Key, dep: dict[str, Any]) -> None:
        """What the controller does at once: record the template's revision, mark ready."""
        spec = dep.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        template = spec.get("template", {})
        history = self.history.setdefault(key, [])
        if not spec.get("paused"):
            top = max((rev for rev, _ in history), default=0)
            same = [entry for entry in history if entry[1] == template]
            if not same:
                history.append((top + 1, copy.deepcopy(template)))
            elif same[0][0] != top:  # rollback: the old revision becomes the newest
                history.remove(same[0])
                history.append((top + 1, same[0][1]))
            dep["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = str(history[-1][0])
        replicas = spec["replicas"]
        available = 0 if key[2] in self.never_ready else replicas
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": available,
            "availableReplicas": available,
        }

    def _replica_sets(self, key: Key, dep: dict[str, Any]) -> list[dict[str, Any]]:
        """The history shaped as the ReplicaSets the rollback planner reads."""
        owner = [{"uid": dep["metadata"]["uid"], "controller": True}]
        return [
            {
                "metadata": {
                    "annotations": {REVISION_ANNOTATION: str(rev)},
                    "ownerReferences": owner,
                },
                "spec": {"template": template},
            }
            for rev, template in self.history.get(key, [])
        ]

    def _deployment(self, tool_name: str, name: str, ns: str) -> dict[str, Any]:
        dep = self.objects.get(("Deployment", ns, name))
        if dep is None:
            raise _not_found(tool_name, "deployments.apps", name)
        return dep

    # ---- tools ---------------------------------------------------------------------------

    @tool()
    async def kubectl_apply(self, args: KubectlApplyArgs) -> KubectlApplyResult:
        """Apply every object of a manifest file or directory (in memory)."""
        self._enter("kubectl_apply", args)
        name = "kubernetes.kubectl_apply"
        applied: list[AppliedObject] = []
        for manifest in self._load(args.manifest_path, name, args.objects):
            res = _resolve_kind(manifest["apiVersion"], manifest["kind"])
            ns = object_namespace(
                manifest, res.namespaced, args.namespace, self.default_namespace, tool=name
            )
            if args.dry_run:
                exists = (res.kind, ns, manifest["metadata"]["name"]) in self.objects
                action: AppliedAction = "configured" if exists else "created"
            else:
                action = self._store(res, ns, manifest)
            applied.append(
                AppliedObject(
                    kind=res.kind,
                    api_version=res.api_version,
                    name=manifest["metadata"]["name"],
                    namespace=ns,
                    action=action,
                )
            )
        return summarize_apply(applied, dry_run=args.dry_run)

    @tool(read_only=True)
    async def kubectl_get(self, args: KubectlGetArgs) -> KubectlGetResult:
        """Stored objects of a type (label selector: ``k=v`` terms only)."""
        self._enter("kubectl_get", args)
        res = _resolve_type(args.resource_type)
        ns = self._ns(args.namespace) if res.namespaced and not args.all_namespaces else None
        if args.name is not None:
            obj = self.objects.get((res.kind, ns, args.name))
            if obj is None:
                raise _not_found("kubectl_get", res.plural, args.name)
            return KubectlGetResult(kind=res.kind, items=[copy.deepcopy(obj)])
        wanted = dict(
            term.split("=", 1) for term in (args.label_selector or "").split(",") if "=" in term
        )
        items = [
            copy.deepcopy(obj)
            for (kind, obj_ns, _), obj in sorted(self.objects.items(), key=lambda kv: str(kv[0]))
            if kind == res.kind
            and (ns is None or obj_ns == ns)
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
        ]
        return KubectlGetResult(kind=res.kind, items=items)

    @tool()
    async def kubectl_delete(self, args: KubectlDeleteArgs) -> KubectlDeleteResult:
        """Delete named objects or a manifest's objects; a namespace takes its objects along."""
        self._enter("kubectl_delete", args)
        name = "kubernetes.kubectl_delete"
        targets: list[tuple[ResourceKind, str | None, str]] = []
        if args.manifest_path is not None:
            for manifest in self._load(args.manifest_path, name):
                res = _resolve_kind(manifest["apiVersion"], manifest["kind"])
                ns = object_namespace(
                    manifest, res.namespaced, args.namespace, self.default_namespace, tool=name
                )
                targets.append((res, ns, manifest["metadata"]["name"]))
        else:
            assert args.resource_type is not None and args.name is not None
            res = _resolve_type(args.resource_type)
            targets.append((res, self._ns(args.namespace) if res.namespaced else None, args.name))
        deleted: list[DeletedObject] = []
        for res, ns, obj_name in targets:
            key = (res.kind, ns, obj_name)
            status: Literal["deleted", "not_found"] = (
                "deleted" if key in self.objects else "not_found"
            )
            if status == "not_found" and not args.ignore_not_found:
                raise _not_found("kubectl_delete", res.plural, obj_name)
            if status == "deleted" and not args.dry_run:
                del self.objects[key]
                self.history.pop(key, None)
                if res.kind == "Namespace":
                    for other in [k for k in self.objects if k[1] == obj_name]:
                        del self.objects[other]
            deleted.append(DeletedObject(kind=res.kind, name=obj_name, namespace=ns, status=status))
        return KubectlDeleteResult(
            deleted=deleted,
            success=all(d.status == "deleted" for d in deleted),
            dry_run=args.dry_run,
        )

    @tool()
    async def kubectl_scale(self, args: KubectlScaleArgs) -> KubectlScaleResult:
        """Set ``spec.replicas`` of a stored object."""
        self._enter("kubectl_scale", args)
        res = _resolve_type(args.resource_type)
        ns = self._ns(args.namespace)
        obj = self.objects.get((res.kind, ns, args.name))
        if obj is None:
            raise _not_found("kubectl_scale", res.plural, args.name)
        previous = int(obj.get("spec", {}).get("replicas", 1))
        self._store(res, ns, {"metadata": {"name": args.name}, "spec": {"replicas": args.replicas}})
        return KubectlScaleResult(
            success=True,
            kind=res.kind,
            name=args.name,
            namespace=ns,
            previous_replicas=previous,
            replicas=args.replicas,
        )

    @tool(read_only=True)
    async def kubectl_rollout_status(
        self, args: KubectlRolloutStatusArgs
    ) -> KubectlRolloutStatusResult:
        """The rollout state; RolloutTimeout at once for ``never_ready`` Deployments."""
        self._enter("kubectl_rollout_status", args)
        name = "kubernetes.kubectl_rollout_status"
        status = rollout_status(
            self._deployment("kubectl_rollout_status", args.name, self._ns(args.namespace))
        )
        if not args.watch:
            return status
        if status.status == "failed":
            raise ToolFailed(status.message, tool=name)
        if not status.ready:
            raise RolloutTimeout(
                f"rollout of deployment {args.name} not finished after {args.timeout:g}s: "
                f"{status.message}",
                tool=name,
                last_status=status,
            )
        return status

    @tool()
    async def kubectl_rollout(self, args: KubectlRolloutArgs) -> KubectlRolloutResult:
        """Restart, undo, pause or resume, with kubectl's rules (shared with the real adapter)."""
        self._enter("kubectl_rollout", args)
        ns = self._ns(args.namespace)
        dep = self._deployment("kubectl_rollout", args.name, ns)
        key: Key = ("Deployment", ns, args.name)
        try:
            plan = plan_action(args.action, dep, self._replica_sets(key, dep), args.to_revision)
        except RolloutError as exc:
            raise ToolFailed(
                f"deployment {args.name}: {exc}", tool="kubernetes.kubectl_rollout"
            ) from exc
        if plan.patch is not None:
            patched = (
                _json_patch(dep, plan.patch)
                if plan.patch_type == "json"
                else _merge(dep, plan.patch)
            )
            self._store(_resolve_type("deployments"), ns, patched, replace=True)
        return KubectlRolloutResult(
            action=args.action,
            name=args.name,
            namespace=ns,
            changed=plan.changed,
            message=plan.message,
            revision=plan.revision,
        )

    @tool(read_only=True)
    async def kubectl_logs(self, args: KubectlLogsArgs) -> KubectlLogsResult:
        """The text set with :meth:`set_logs` (tail applied)."""
        self._enter("kubectl_logs", args)
        ns = self._ns(args.namespace)
        if ("Pod", ns, args.pod_name) not in self.objects and (ns, args.pod_name) not in self.logs:
            raise _not_found("kubectl_logs", "pods", args.pod_name)
        lines = self.logs.get((ns, args.pod_name), "").splitlines(keepends=True)
        if args.tail_lines is not None:
            lines = lines[len(lines) - args.tail_lines :] if args.tail_lines else []
        return KubectlLogsResult(
            pod_name=args.pod_name,
            namespace=ns,
            container=args.container,
            logs="".join(lines),
            lines=len(lines),
            truncated=False,
        )


def sample_app_manifests(app: str, image: str, replicas: int = 2) -> list[dict[str, Any]]:
    """A Deployment and a Service for ``app``: canned manifests for demos and tests."""
    labels = {"app": app}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": app, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": app, "image": image}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": app, "labels": labels},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    ]
