"""Reading Kubernetes manifests from disk, as ``kubectl apply -f`` does.

A path is a file or a directory; a directory contributes its ``*.yaml``, ``*.yml``
and ``*.json`` files in name order (not recursive, like kubectl without ``-R``).
A YAML file may hold several ``---``-separated documents; empty documents are
skipped and ``kind: List`` documents are flattened into their items.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import yaml

from schemas.tools.kubernetes import AppliedObject, KubectlApplyResult
from tools.errors import ToolArgumentError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

Manifest = dict[str, Any]


def manifest_files(path: str, *, tool: str, field: str = "manifest_path") -> list[Path]:
    """The files ``path`` names, in apply order; an error names ``field`` if none."""
    root = Path(path)
    if root.is_file():
        return [root]
    if root.is_dir():
        files = sorted(
            p for p in root.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
        )
        if not files:
            raise ToolArgumentError(
                f"{field}: directory {path} holds no *.yaml, *.yml or *.json files",
                tool=tool,
                fields=(field,),
            )
        return files
    raise ToolArgumentError(f"{field}: {path} does not exist", tool=tool, fields=(field,))


def _documents(file: Path, *, tool: str, field: str) -> list[Any]:
    try:
        text = file.read_text(encoding="utf-8")
        if file.suffix.lower() == ".json":
            return [json.loads(text)]
        return list(yaml.safe_load_all(text))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ToolArgumentError(
            f"{field}: cannot parse {file}: {exc}", tool=tool, fields=(field,)
        ) from exc


def _check(doc: Any, where: str, *, tool: str, field: str) -> Manifest:
    if not isinstance(doc, dict):
        raise ToolArgumentError(f"{field}: {where} is not a mapping", tool=tool, fields=(field,))
    missing = [key for key in ("apiVersion", "kind") if not isinstance(doc.get(key), str)]
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        missing.append("metadata.name")
    if missing:
        raise ToolArgumentError(
            f"{field}: {where} lacks {', '.join(missing)}", tool=tool, fields=(field,)
        )
    return doc


def load_manifests(path: str, *, tool: str, field: str = "manifest_path") -> list[Manifest]:
    """Every object of ``path`` in apply order, each checked for apiVersion/kind/name."""
    objects: list[Manifest] = []
    for file in manifest_files(path, tool=tool, field=field):
        for index, doc in enumerate(_documents(file, tool=tool, field=field)):
            if doc is None:  # an empty document between two ``---``
                continue
            where = f"{file.name} document {index + 1}"
            if isinstance(doc, dict) and doc.get("kind") == "List":
                for item_no, item in enumerate(doc.get("items") or []):
                    objects.append(
                        _check(item, f"{where} item {item_no + 1}", tool=tool, field=field)
                    )
                continue
            objects.append(_check(doc, where, tool=tool, field=field))
    if not objects:
        raise ToolArgumentError(f"{field}: {path} holds no objects", tool=tool, fields=(field,))
    return objects


def apply_sources(
    manifest_path: str | None, objects: list[Manifest] | None, *, tool: str
) -> list[Manifest]:
    """The objects a ``kubectl_apply`` call names: read from ``manifest_path`` or given
    inline in ``objects`` (checked the same way)."""
    if objects is not None:
        return [
            _check(copy.deepcopy(doc), f"object {i + 1}", tool=tool, field="objects")
            for i, doc in enumerate(objects)
        ]
    assert manifest_path is not None  # the argument model requires one of the two
    return load_manifests(manifest_path, tool=tool)


def object_namespace(
    obj: Manifest, namespaced: bool, requested: str | None, default: str, *, tool: str
) -> str | None:
    """The namespace ``obj`` goes to, with kubectl's rule for a conflicting ``namespace``."""
    if not namespaced:
        return None
    own = obj.get("metadata", {}).get("namespace")
    if own and requested and own != requested:
        raise ToolArgumentError(
            f"namespace: the object {obj['kind']}/{obj['metadata']['name']} names namespace "
            f"{own!r}, which does not match the requested {requested!r}",
            tool=tool,
            fields=("namespace",),
        )
    return own or requested or default


def summarize_apply(resources: list[AppliedObject], *, dry_run: bool) -> KubectlApplyResult:
    """The apply result: per-object actions plus kubectl-style names and an overall status."""
    actions = {r.action for r in resources}
    status: Literal["created", "configured", "unchanged", "empty"]
    if not resources:
        status = "empty"
    elif actions == {"unchanged"}:
        status = "unchanged"
    elif actions == {"created"}:
        status = "created"
    else:
        status = "configured"
    return KubectlApplyResult(
        resources=resources,
        applied_resources=[f"{r.kind.lower()}/{r.name}" for r in resources],
        status=status,
        dry_run=dry_run,
    )
