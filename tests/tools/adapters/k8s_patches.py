"""Patch and selector semantics of the Kubernetes API, for the test API server.

* merge patch (RFC 7386; also used for strategic-merge patches, which for the maps the
  adapter patches behave the same);
* JSON patch (RFC 6902: add, replace, remove, test);
* label selectors (``a=b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any


class PatchError(ValueError):
    """The patch cannot be applied (the API server answers 422)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(target: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 for the operations the adapter sends (add/replace/remove/test)."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        for part in parts[:-1]:
            try:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            except (KeyError, IndexError, ValueError) as exc:
                raise PatchError(f"path {op['path']} does not exist") from exc
        last = parts[-1]
        kind = op["op"]
        exists = last in parent if isinstance(parent, dict) else False
        if kind == "test":
            if not exists or parent[last] != op["value"]:
                raise PatchError(f"test operation failed at {op['path']}")
        elif kind == "add":
            parent[last] = copy.deepcopy(op["value"])
        elif kind == "replace":
            if not exists:  # RFC 6902: replace needs an existing member
                raise PatchError(f"replace operation does not apply: {op['path']} is missing")
            parent[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            if not exists:
                raise PatchError(f"remove operation does not apply: {op['path']} is missing")
            del parent[last]
        else:
            raise PatchError(f"unsupported operation {kind!r}")
    return doc


_SET_EXPR = re.compile(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$")


def _split_selector(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current.strip())
    return terms


def selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy a ``labelSelector`` string; ValueError if malformed."""
    for term in _split_selector(selector or ""):
        if match := _SET_EXPR.match(term):
            key, op, raw = match.groups()
            values = {v.strip() for v in raw.split(",")}
            ok = labels.get(key) in values
            if (op == "in") != ok:
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif re.fullmatch(r"[\w./-]+", term):
            if term not in labels:
                return False
        else:
            raise ValueError(f"unable to parse requirement: {term!r}")
    return True


def template_hash(template: dict[str, Any]) -> str:
    """A stable ``pod-template-hash`` of a pod template (without that label)."""
    clean = copy.deepcopy(template)
    (clean.get("metadata", {}).get("labels") or {}).pop("pod-template-hash", None)
    digest = hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def leaf_paths(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{".spec.replicas": 3, ...}``: the leaves of a document, lists taken whole."""
    if not isinstance(obj, dict) or not obj:
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.update(leaf_paths(value, f"{prefix}.{key}"))
    return out
