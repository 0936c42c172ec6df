"""The ``kubernetes`` tool server over the Kubernetes API (kubernetes-asyncio).

Each tool does what its kubectl namesake does, through the same API calls:

* ``kubectl_apply``: server-side apply (``PATCH`` with ``application/apply-patch+yaml``,
  ``fieldManager``, optional ``force`` and ``dryRun=All``) of every object of a file or
  directory; the result tells created / configured / unchanged per object.
* ``kubectl_get`` / ``kubectl_delete``: GET/LIST and DELETE (background propagation);
  a missing object on delete is reported, not raised, unless ``ignore_not_found`` is off.
* ``kubectl_scale``: merge-patch of the ``/scale`` subresource.
* ``kubectl_rollout_status``: polls the Deployment until kubectl's criteria hold.
* ``kubectl_rollout``: restart / undo / pause / resume as kubectl implements them.
* ``kubectl_logs``: the pod ``/log`` subresource, capped at ``max_log_bytes``.

API errors map to the tool errors: 5xx, 429 and connection failures are
:class:`ToolTransientError`, other 4xx :class:`ToolFailed` with the API's message.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from kubernetes_asyncio.client import ApiClient

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
)
from tools.adapters.kubernetes_client import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    KubeClient,
    KubernetesConfig,
    build_api_client,
    resource_path,
)
from tools.adapters.kubernetes_manifests import (
    apply_sources,
    load_manifests,
    object_namespace,
    summarize_apply,
)
from tools.adapters.kubernetes_rollout import (
    RolloutError,
    RolloutTimeout,
    plan_action,
    rollout_status,
    selector_string,
    wait_for_rollout,
)
from tools.errors import ToolFailed, ToolTransientError
from tools.spec import ToolServer, tool

__all__ = ["KubernetesConfig", "KubernetesServer", "RolloutTimeout"]


def _builtin(resource_type: str) -> ResourceKind:
    found = find_builtin(resource_type)
    assert found is not None
    return found


_DEPLOYMENTS = _builtin("deployments")
_REPLICASETS = _builtin("replicasets")
_PODS = _builtin("pods")

# Fields the server changes on every write or that controllers change on their own;
# ignored when deciding whether an apply changed anything.
_VOLATILE_META = ("resourceVersion", "managedFields", "generation")


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(obj)
    clean.pop("status", None)
    meta = clean.get("metadata", {})
    for key in _VOLATILE_META:
        meta.pop(key, None)
    return clean


def _bool(value: bool) -> str:
    return "true" if value else "false"


class KubernetesServer(ToolServer):
    """kubectl-like tools over the Kubernetes API. ``api_client`` is injectable for tests."""

    name = "kubernetes"

    def __init__(self, config: KubernetesConfig, *, api_client: ApiClient | None = None) -> None:
        self.config = config
        self._api = api_client
        self._owns_api = api_client is None
        self._client: KubeClient | None = None

    async def start(self) -> None:
        """Load the configuration and open the HTTP session."""
        if self._api is None:
            self._api = await build_api_client(self.config)
        self._client = KubeClient(self._api, self.config)

    async def close(self) -> None:
        """Close the HTTP session if this server opened it."""
        if self._api is not None and self._owns_api:
            await self._api.close()
            self._api = None
        self._client = None

    async def _kube(self) -> KubeClient:
        if self._client is None:
            await self.start()
        assert self._client is not None
        return self._client

    def _ns(self, namespace: str | None) -> str:
        return namespace or self.config.default_namespace

    # ---- apply / get / delete ----------------------------------------------------------

    @tool()
    async def kubectl_apply(self, args: KubectlApplyArgs) -> KubectlApplyResult:
        """Server-side apply every object of a manifest file or directory."""
        name = "kubernetes.kubectl_apply"
        kube = await self._kube()
        # Resolve every object before writing any, so a bad kind or namespace in the
        # last document does not leave the first ones half-applied.
        planned: list[tuple[ResourceKind, str | None, dict[str, Any]]] = []
        for manifest in apply_sources(args.manifest_path, args.objects, tool=name):
            res = await kube.resolve_kind(manifest["apiVersion"], manifest["kind"], tool=name)
            ns = object_namespace(
                manifest, res.namespaced, args.namespace, self.config.default_namespace, tool=name
            )
            body = copy.deepcopy(manifest)
            if ns is None:
                body["metadata"].pop("namespace", None)
            else:
                body["metadata"]["namespace"] = ns
            planned.append((res, ns, body))
        applied: list[AppliedObject] = []
        for res, ns, body in planned:
            obj_name = body["metadata"]["name"]
            try:
                action = await self._apply_one(kube, res, ns, obj_name, body, args)
            except (ToolFailed, ToolTransientError) as exc:
                done = ", ".join(f"{a.kind.lower()}/{a.name}" for a in applied) or "nothing"
                message = f"{exc} (applied before the failure: {done})"
                raise type(exc)(message, tool=exc.tool, status=exc.status) from exc
            applied.append(
                AppliedObject(
                    kind=res.kind,
                    api_version=res.api_version,
                    name=obj_name,
                    namespace=ns,
                    action=action,
                )
            )
        return summarize_apply(applied, dry_run=args.dry_run)

    async def _apply_one(
        self,
        kube: KubeClient,
        res: ResourceKind,
        ns: str | None,
        obj_name: str,
        body: dict[str, Any],
        args: KubectlApplyArgs,
    ) -> AppliedAction:
        name = "kubernetes.kubectl_apply"
        path = resource_path(res, ns, obj_name)
        label = f"{res.kind}/{obj_name}"
        existing = await self._get_or_none(kube, path, tool=name, doing=f"read {label}")
        result = await kube.request(
            "PATCH",
            path,
            tool=name,
            doing=f"apply {label}",
            query={
                "fieldManager": self.config.field_manager,
                "force": _bool(args.force),
                "dryRun": "All" if args.dry_run else None,
            },
            body=body,
            content_type=APPLY_PATCH,
        )
        if existing is None:
            return "created"
        return "unchanged" if _comparable(existing) == _comparable(result) else "configured"

    async def _get_or_none(
        self, kube: KubeClient, path: str, *, tool: str, doing: str
    ) -> dict[str, Any] | None:
        try:
            return await kube.request("GET", path, tool=tool, doing=doing)
        except ToolFailed as exc:
            if exc.status == 404:
                return None
            raise

    @tool(read_only=True)
    async def kubectl_get(self, args: KubectlGetArgs) -> KubectlGetResult:
        """Fetch one object by name, or list objects (label/field selectors, all namespaces)."""
        name = "kubernetes.kubectl_get"
        kube = await self._kube()
        res = await kube.resolve_type(args.resource_type, tool=name)
        if args.name is not None:
            path = resource_path(res, self._ns(args.namespace), args.name)
            obj = await kube.request("GET", path, tool=name, doing=f"get {res.kind}/{args.name}")
            return KubectlGetResult(kind=res.kind, items=[obj])
        ns = None if args.all_namespaces else self._ns(args.namespace)
        listing = await kube.request(
            "GET",
            resource_path(res, ns),
            tool=name,
            doing=f"list {res.plural}",
            query={"labelSelector": args.label_selector, "fieldSelector": args.field_selector},
        )
        items = list(listing.get("items") or [])
        for item in items:  # list items omit apiVersion/kind; kubectl fills them in too
            item.setdefault("apiVersion", res.api_version)
            item.setdefault("kind", res.kind)
        return KubectlGetResult(kind=res.kind, items=items)

    @tool()
    async def kubectl_delete(self, args: KubectlDeleteArgs) -> KubectlDeleteResult:
        """Delete a named object or every object of a manifest (background propagation)."""
        name = "kubernetes.kubectl_delete"
        kube = await self._kube()
        targets: list[tuple[ResourceKind, str | None, str]] = []
        if args.manifest_path is not None:
            for manifest in load_manifests(args.manifest_path, tool=name):
                res = await kube.resolve_kind(manifest["apiVersion"], manifest["kind"], tool=name)
                ns = object_namespace(
                    manifest,
                    res.namespaced,
                    args.namespace,
                    self.config.default_namespace,
                    tool=name,
                )
                targets.append((res, ns, manifest["metadata"]["name"]))
        else:
            assert args.resource_type is not None and args.name is not None  # model-checked
            res = await kube.resolve_type(args.resource_type, tool=name)
            ns = self._ns(args.namespace) if res.namespaced else None
            targets.append((res, ns, args.name))
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        options["propagationPolicy"] = "Background"
        if args.force:
            options["gracePeriodSeconds"] = 0
        deleted: list[DeletedObject] = []
        for res, ns, obj_name in targets:
            try:
                await kube.request(
                    "DELETE",
                    resource_path(res, ns, obj_name),
                    tool=name,
                    doing=f"delete {res.kind}/{obj_name}",
                    query={"dryRun": "All" if args.dry_run else None},
                    body=options,
                )
                outcome: Literal["deleted", "not_found"] = "deleted"
            except ToolFailed as exc:
                if exc.status != 404 or not args.ignore_not_found:
                    raise
                outcome = "not_found"
            deleted.append(
                DeletedObject(kind=res.kind, name=obj_name, namespace=ns, status=outcome)
            )
        success = all(d.status == "deleted" for d in deleted)
        return KubectlDeleteResult(deleted=deleted, success=success, dry_run=args.dry_run)

    # ---- scale / rollouts ----------------------------------------------------------------

    @tool()
    async def kubectl_scale(self, args: KubectlScaleArgs) -> KubectlScaleResult:
        """Set ``spec.replicas`` through the ``/scale`` subresource."""
        name = "kubernetes.kubectl_scale"
        kube = await self._kube()
        res = await kube.resolve_type(args.resource_type, tool=name)
        ns = self._ns(args.namespace)
        path = resource_path(res, ns, args.name, "scale")
        label = f"{res.kind}/{args.name}"
        before = await kube.request("GET", path, tool=name, doing=f"read scale of {label}")
        after = await kube.request(
            "PATCH",
            path,
            tool=name,
            doing=f"scale {label}",
            body={"spec": {"replicas": args.replicas}},
            content_type=MERGE_PATCH,
        )
        return KubectlScaleResult(
            success=True,
            kind=res.kind,
            name=args.name,
            namespace=ns,
            previous_replicas=int((before.get("spec") or {}).get("replicas", 0)),
            replicas=int((after.get("spec") or {}).get("replicas", 0)),
        )

    @tool(read_only=True)
    async def kubectl_rollout_status(
        self, args: KubectlRolloutStatusArgs
    ) -> KubectlRolloutStatusResult:
        """Wait until the Deployment is rolled out; RolloutTimeout if it is not in time."""
        name = "kubernetes.kubectl_rollout_status"
        kube = await self._kube()
        path = resource_path(_DEPLOYMENTS, self._ns(args.namespace), args.name)

        async def fetch() -> dict[str, Any]:
            doing = f"read deployment {args.name}"
            dep: dict[str, Any] = await kube.request("GET", path, tool=name, doing=doing)
            return dep

        if not args.watch:
            return rollout_status(await fetch())
        return await wait_for_rollout(
            fetch,
            name=args.name,
            timeout=args.timeout,
            interval=self.config.rollout_poll_interval,
            tool=name,
        )

    @tool()
    async def kubectl_rollout(self, args: KubectlRolloutArgs) -> KubectlRolloutResult:
        """Restart, undo (to the previous or a given revision), pause or resume a Deployment."""
        name = "kubernetes.kubectl_rollout"
        kube = await self._kube()
        ns = self._ns(args.namespace)
        path = resource_path(_DEPLOYMENTS, ns, args.name)
        dep = await kube.request("GET", path, tool=name, doing=f"read deployment {args.name}")
        replica_sets: list[dict[str, Any]] = []
        if args.action == "undo":
            listing = await kube.request(
                "GET",
                resource_path(_REPLICASETS, ns),
                tool=name,
                doing=f"list replicasets of {args.name}",
                query={"labelSelector": selector_string(dep["spec"].get("selector", {}))},
            )
            replica_sets = listing.get("items") or []
        try:
            plan = plan_action(args.action, dep, replica_sets, args.to_revision)
        except RolloutError as exc:
            raise ToolFailed(f"deployment {args.name}: {exc}", tool=name) from exc
        if plan.patch is not None:
            await kube.request(
                "PATCH",
                path,
                tool=name,
                doing=f"{args.action} {args.name}",
                body=plan.patch,
                content_type=JSON_PATCH if plan.patch_type == "json" else STRATEGIC_MERGE_PATCH,
            )
        return KubectlRolloutResult(
            action=args.action,
            name=args.name,
            namespace=ns,
            changed=plan.changed,
            message=plan.message,
            revision=plan.revision,
        )

    # ---- logs ----------------------------------------------------------------------------

    @tool(read_only=True)
    async def kubectl_logs(self, args: KubectlLogsArgs) -> KubectlLogsResult:
        """A pod container's log, optionally only the last ``tail_lines`` lines."""
        name = "kubernetes.kubectl_logs"
        kube = await self._kube()
        ns = self._ns(args.namespace)
        cap = self.config.max_log_bytes
        raw = await kube.raw(
            resource_path(_PODS, ns, args.pod_name, "log"),
            tool=name,
            doing=f"read logs of pod {args.pod_name}",
            query={
                "container": args.container,
                "tailLines": args.tail_lines,
                "previous": "true" if args.previous else None,
                "sinceSeconds": args.since_seconds,
                "limitBytes": cap + 1,  # one byte more tells us whether it was cut
            },
        )
        truncated = len(raw) > cap
        text = raw[:cap].decode("utf-8", "replace")
        return KubectlLogsResult(
            pod_name=args.pod_name,
            namespace=ns,
            container=args.container,
            logs=text,
            lines=len(text.splitlines()),
            truncated=truncated,
        )
