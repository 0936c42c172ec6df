"""Grammar of analysis conditions: parse and check, never execute.

A condition such as ``result[0] < 0.05 and not isNaN(result[0])`` is parsed with
Python's :mod:`ast` and checked against a whitelist: the one name ``result`` (plus
``true``/``false``), numbers, comparisons, ``and``/``or``/``not`` (Argo's ``&&``, ``||``
and ``!`` are accepted too), arithmetic, indexing with ``[...]``, list literals, ``x if c
else y`` and the functions in :data:`FUNCTIONS`. Anything else (attributes, strings,
lambdas, comprehensions, keyword arguments, slices) is refused here, at load time, with a
message that names the offending piece. Text length, node count and nesting depth are
bounded so a hostile condition cannot make parsing or evaluation expensive.

This module only parses; :mod:`flows.expressions` evaluates the checked tree. It lives in
``schemas`` because the analysis models validate their conditions when they are loaded.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_NODES",
    "NAMES",
    "Condition",
    "ConditionSyntaxError",
    "parse_condition",
]

MAX_LENGTH = 500
MAX_NODES = 200
MAX_DEPTH = 50

# Names a condition may read; the evaluator binds ``result`` to the measured value.
NAMES = frozenset({"result", "true", "false"})

# Function name -> (fewest, most) positional arguments.
FUNCTIONS: dict[str, tuple[int, int]] = {
    "len": (1, 1),
    "min": (1, 8),
    "max": (1, 8),
    "sum": (1, 1),
    "avg": (1, 1),
    "abs": (1, 1),
    "all": (1, 1),
    "any": (1, 1),
    "isNaN": (1, 1),
    "isInf": (1, 1),
}

_BOOL_OPS = (ast.And, ast.Or)
_UNARY_OPS = (ast.Not, ast.USub, ast.UAdd)
_BIN_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod, ast.Pow)
_COMPARE_OPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)

# Friendly names for constructs people try; everything else is reported by class name.
_REFUSED = {
    ast.Attribute: "attribute access is",
    ast.Lambda: "lambda is",
    ast.ListComp: "comprehensions are",
    ast.SetComp: "comprehensions are",
    ast.DictComp: "comprehensions are",
    ast.GeneratorExp: "comprehensions are",
    ast.NamedExpr: "assignment (:=) is",
    ast.Starred: "unpacking (*) is",
    ast.Slice: "slices are",
    ast.Dict: "dict literals are",
    ast.Set: "set literals are",
    ast.Tuple: "tuples are",
    ast.JoinedStr: "strings are",
    ast.Await: "await is",
    ast.Yield: "yield is",
    ast.YieldFrom: "yield is",
}

# Argo's conditions use C-style operators; the language has no strings, so rewriting the
# text before parsing cannot change the meaning of anything inside a literal.
_ARGO_OPERATORS = ((re.compile(r"&&"), " and "), (re.compile(r"\|\|"), " or "))
_ARGO_NOT = re.compile(r"!(?!=)")


class ConditionSyntaxError(ValueError):
    """A condition that cannot be accepted; the message says what and where."""


@dataclass(frozen=True)
class Condition:
    """A parsed, checked condition: its source text and its expression tree."""

    text: str
    tree: ast.expr

    def __str__(self) -> str:
        return self.text


def parse_condition(text: str) -> Condition:
    """Parse and check ``text``; :class:`ConditionSyntaxError` says why it is refused."""
    if not isinstance(text, str):
        raise ConditionSyntaxError(f"a condition is text, not {type(text).__name__}")
    if not text.strip():
        raise ConditionSyntaxError("condition is empty")
    if len(text) > MAX_LENGTH:
        raise ConditionSyntaxError(
            f"condition is {len(text)} characters long; at most {MAX_LENGTH}"
        )
    source = text
    for pattern, replacement in _ARGO_OPERATORS:
        source = pattern.sub(replacement, source)
    source = _ARGO_NOT.sub(" not ", source)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ConditionSyntaxError(f"syntax error{where}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ConditionSyntaxError(f"cannot parse condition: {type(exc).__name__}") from None
    _Checker().check(tree.body)
    return Condition(text=text, tree=tree.body)


class _Checker:
    """Walks the tree once, refusing anything outside the whitelist."""

    def __init__(self) -> None:
        self.nodes = 0

    def check(self, node: ast.AST, depth: int = 0) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ConditionSyntaxError(f"condition is too complex: more than {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise ConditionSyntaxError(f"condition is nested more than {MAX_DEPTH} levels deep")
        children = self._children(node)
        for child in children:
            self.check(child, depth + 1)

    def _children(self, node: ast.AST) -> list[ast.AST]:
        if isinstance(node, ast.Constant):
            _check_constant(node)
            return []
        if isinstance(node, ast.Name):
            if node.id not in NAMES:
                if node.id in FUNCTIONS:
                    raise ConditionSyntaxError(f"{node.id} is a function; call it: {node.id}(...)")
                raise ConditionSyntaxError(f"unknown name {node.id!r}; use 'result'")
            return []
        if isinstance(node, ast.BoolOp) and isinstance(node.op, _BOOL_OPS):
            return list(node.values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, _UNARY_OPS):
            return [node.operand]
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, _BIN_OPS):
                raise ConditionSyntaxError(f"operator {_op_name(node.op)} is not allowed")
            return [node.left, node.right]
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if not isinstance(op, _COMPARE_OPS):
                    raise ConditionSyntaxError(f"comparison {_op_name(op)} is not allowed")
            return [node.left, *node.comparators]
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Subscript):
            if isinstance(node.slice, ast.Slice):
                raise ConditionSyntaxError("slices are not allowed; index one value: result[0]")
            return [node.value, node.slice]
        if isinstance(node, ast.List):
            return list(node.elts)
        if isinstance(node, ast.IfExp):
            return [node.test, node.body, node.orelse]
        what = _REFUSED.get(type(node), f"{type(node).__name__} is")
        raise ConditionSyntaxError(f"{what} not allowed in a condition")

    def _call(self, node: ast.Call) -> list[ast.AST]:
        if isinstance(node.func, ast.Attribute):
            raise ConditionSyntaxError("attribute access is not allowed in a condition")
        if not isinstance(node.func, ast.Name):
            raise ConditionSyntaxError("only the listed functions may be called, by name")
        name = node.func.id
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise ConditionSyntaxError(f"unknown function {name!r}; known: {known}")
        if node.keywords:
            raise ConditionSyntaxError(f"{name}() takes no keyword arguments")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ConditionSyntaxError("unpacking (*) is not allowed in a condition")
        fewest, most = FUNCTIONS[name]
        if not fewest <= len(node.args) <= most:
            wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
            raise ConditionSyntaxError(f"{name}() takes {wanted} argument(s), got {len(node.args)}")
        return list(node.args)


def _check_constant(node: ast.Constant) -> None:
    value = node.value
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise ConditionSyntaxError("number too large") from None
        if math.isinf(number) and not isinstance(value, float):
            raise ConditionSyntaxError("number too large")
        return
    if isinstance(value, str | bytes):
        raise ConditionSyntaxError("strings are not allowed in a condition")
    raise ConditionSyntaxError(f"{value!r} is not allowed in a condition")


def _op_name(op: ast.AST) -> str:
    return type(op).__name__
