"""Bounds on untrusted JSON, checked where it enters: the gateway and ``codebus publish``.

A body within ``max_body_bytes`` can still hold what breaks a later stage: an integer of
thousands of digits (Python refuses to convert more than 4,300, a ``ValueError`` deep in
the decoder), or nesting so deep that serialising the event fails or that every
subscriber dead-letters it. :func:`loads_bounded` decodes and checks both, and raises
:class:`JsonLimitExceeded` naming the limit and where it was crossed, so the caller
answers 400 (or one CLI line) instead of a 500 or a poisoned event.
"""

from __future__ import annotations

import json
from typing import Any

#: Deepest nesting of objects/arrays accepted. Event payloads are shallow (``data`` plus
#: a few levels of details); the envelope adds one level.
MAX_JSON_DEPTH = 32
#: Most digits (sign excluded) in one JSON number. 64-bit integers have at most 20.
MAX_NUMBER_DIGITS = 64


class JsonLimitExceeded(ValueError):
    """JSON that crosses a bound; ``limit`` names it, ``path`` says where."""

    def __init__(self, limit: str, detail: str, path: str = "(body)") -> None:
        super().__init__(f"{path}: {detail}")
        self.limit = limit
        self.detail = detail
        self.path = path


def loads_bounded(
    text: str | bytes,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_digits: int = MAX_NUMBER_DIGITS,
) -> Any:
    """Decode JSON, refusing long numbers, ``NaN``/``Infinity`` and deep nesting.

    Raises :class:`JsonLimitExceeded` for a crossed bound and :class:`ValueError`
    (``json.JSONDecodeError`` / ``UnicodeDecodeError``) for text that is not JSON.
    """

    def number(kind: str) -> Any:
        def parse(literal: str) -> Any:
            digits = sum(c.isdigit() for c in literal)
            if digits > max_digits:
                raise JsonLimitExceeded(
                    "max_number_digits",
                    f"a number has {digits} digits; the limit is {max_digits}",
                )
            value = int(literal) if kind == "int" else float(literal)
            if kind == "float" and value in (float("inf"), float("-inf")):
                raise JsonLimitExceeded(
                    "max_number_digits", f"number {literal[:20]!r} is out of range"
                )
            return value

        return parse

    def constant(name: str) -> Any:
        raise JsonLimitExceeded("json", f"{name} is not valid JSON")

    try:
        value = json.loads(
            text,
            parse_int=number("int"),
            parse_float=number("float"),
            parse_constant=constant,
        )
    except RecursionError as exc:
        # Deeper than the interpreter's stack: far past any depth limit.
        raise JsonLimitExceeded(
            "max_json_depth", f"nesting is deeper than the limit of {max_depth}"
        ) from exc
    check_depth(value, max_depth)
    return value


def check_depth(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JsonLimitExceeded` if ``value`` nests deeper than ``max_depth``.

    Iterative, so that the check itself cannot exhaust the stack.
    """
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            children = [(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()]
        elif isinstance(node, list):
            children = [(v, f"{path}[{i}]") for i, v in enumerate(node)]
        else:
            continue
        if depth > max_depth:
            raise JsonLimitExceeded(
                "max_json_depth",
                f"nesting depth exceeds the limit of {max_depth}",
                path or "(body)",
            )
        stack.extend((child, depth + 1, child_path) for child, child_path in children)
