"""Evaluation of analysis conditions over a measured value.

The grammar and its whitelist live in :mod:`schemas.expressions`; this module walks the
checked tree with a small interpreter (no ``eval``/``compile``). Values are floats,
booleans and lists of them:

- ``result`` is a float when the query answered one value and a list when it answered
  several. A float also behaves as a one-value list (``result[0]``, ``len(result)``), so
  Argo's ``result[0] < 0.05`` works for a single series.
- Arithmetic and comparisons work element by element on lists (``result < 0.05`` is a
  list of booleans; ``all(result < 0.05)`` is true when every series is below 0.05).
- Arithmetic follows IEEE 754 as PromQL does: ``x / 0`` is ``±Inf``, ``0 / 0`` is NaN;
  any comparison with NaN is false except ``!=``. ``min``/``max``/``sum``/``avg`` of
  values containing NaN are NaN. ``isNaN``/``isInf`` test for them.
- A condition must end as true or false; a list is an error that suggests all()/any().

Work is bounded: the tree has at most ``MAX_NODES`` nodes (checked at parse) and each
node touches at most ``MAX_VALUES`` values; powers that overflow are an error.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Callable, Sequence
from typing import Union

from schemas.expressions import Condition, parse_condition

__all__ = [
    "MAX_VALUES",
    "EvaluationError",
    "Value",
    "evaluate_condition",
    "evaluate_expression",
]

MAX_VALUES = 1_000

Scalar = float | bool
Value = Union[Scalar, list[Scalar]]  # noqa: UP007 - a runtime alias


class EvaluationError(ValueError):
    """The condition could not be evaluated on this value; the message says why."""


def evaluate_condition(condition: Condition | str, result: float | Sequence[float]) -> bool:
    """True or false for ``condition`` with ``result`` bound to the measured value."""
    value = evaluate_expression(condition, result)
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        raise EvaluationError(
            f"condition gives {len(value)} values, not true/false; wrap it in all(...) or any(...)"
        )
    raise EvaluationError(f"condition gives the number {_show(value)}, not true/false")


def evaluate_expression(condition: Condition | str, result: float | Sequence[float]) -> Value:
    """The value of ``condition`` (a number, boolean or list) for ``result``."""
    parsed = _parsed(condition) if isinstance(condition, str) else condition
    bound: Value
    if isinstance(result, bool):
        raise EvaluationError("result must be a number or a list of numbers, not true/false")
    if isinstance(result, int | float):
        bound = float(result)
    else:
        bound = [float(v) for v in result]
        if len(bound) > MAX_VALUES:
            raise EvaluationError(f"result has {len(bound)} values; at most {MAX_VALUES}")
    return _Interpreter(bound).eval(parsed.tree)


@functools.lru_cache(maxsize=512)
def _parsed(text: str) -> Condition:
    # Conditions come from a handful of templates and are judged on every measurement;
    # a parsed tree is never mutated, so sharing it is safe.
    return parse_condition(text)


def _show(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return "[" + ", ".join(_show(v) for v in value[:5]) + (", ...]" if len(value) > 5 else "]")


def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, float):
        return "a number"
    return f"a list of {len(value)}"


def _number(value: Value, what: str) -> float:
    if isinstance(value, float):
        return value
    raise EvaluationError(f"{what} needs a number, got {_kind(value)}")


def _as_list(value: Value) -> list[Scalar]:
    return value if isinstance(value, list) else [value]


def _div(a: float, b: float) -> float:
    if b == 0.0:
        if a == 0.0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _mod(a: float, b: float) -> float:
    if b == 0.0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
        return math.nan
    return math.fmod(a, b)  # PromQL's % keeps the sign of the dividend, like fmod


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        raise EvaluationError(f"{a:g} ** {b:g} is too large") from None
    except ValueError:  # negative base with a fractional exponent, 0 ** -1
        return math.nan if a != 0.0 else math.inf


_ARITHMETIC: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: _div,
    ast.Mod: _mod,
    ast.Pow: _pow,
}

_COMPARISONS: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}

_SYMBOLS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}


def _elementwise(
    left: Value, right: Value, fn: Callable[[float, float], Scalar], symbol: str
) -> Value:
    """Apply ``fn`` to two numbers, a list and a number, or two lists of equal length."""
    if isinstance(left, list) or isinstance(right, list):
        a, b = _as_list(left), _as_list(right)
        if isinstance(left, list) and isinstance(right, list) and len(a) != len(b):
            raise EvaluationError(
                f"{symbol} needs lists of equal length, got {len(a)} and {len(b)}"
            )
        if not isinstance(left, list):
            a = a * len(b)
        if not isinstance(right, list):
            b = b * len(a)
        return [fn(_number(x, symbol), _number(y, symbol)) for x, y in zip(a, b, strict=True)]
    return fn(_number(left, symbol), _number(right, symbol))


def _eq(left: Value, right: Value, negate: bool) -> Value:
    """``==``/``!=`` also compare true/false values; everything else compares numbers."""
    if isinstance(left, bool) and isinstance(right, bool):
        return (left == right) != negate
    fn = operator.ne if negate else operator.eq
    return _elementwise(left, right, fn, "!=" if negate else "==")


def _numbers(value: Value, name: str) -> list[float]:
    items = _as_list(value)
    numbers = [v for v in items if isinstance(v, float)]
    if len(numbers) != len(items):
        raise EvaluationError(f"{name}() needs numbers, got true/false values")
    return numbers


def _reduce_nan(numbers: list[float], fn: Callable[[list[float]], float], name: str) -> float:
    if not numbers:
        raise EvaluationError(f"{name}() of no values")
    if any(math.isnan(n) for n in numbers):
        return math.nan
    return fn(numbers)


def _bools(value: Value, name: str) -> list[bool]:
    items = _as_list(value)
    flags = [v for v in items if isinstance(v, bool)]
    if len(flags) != len(items):
        raise EvaluationError(f"{name}() needs true/false values, e.g. {name}(result < 0.05)")
    return flags


def _map(value: Value, fn: Callable[[float], Scalar], name: str) -> Value:
    if isinstance(value, list):
        return [fn(n) for n in _numbers(value, name)]
    return fn(_number(value, f"{name}()"))


def _extreme(args: list[Value], name: str, pick: Callable[[list[float]], float]) -> float:
    numbers = _numbers(args[0], name) if len(args) == 1 else [_number(a, name) for a in args]
    return _reduce_nan(numbers, pick, name)


def _call(name: str, args: list[Value]) -> Value:
    first = args[0]
    if name == "len":
        return float(len(_as_list(first)))
    if name == "min":
        return _extreme(args, name, min)
    if name == "max":
        return _extreme(args, name, max)
    if name == "sum":
        numbers = _numbers(first, name)
        return _reduce_nan(numbers, math.fsum, name) if numbers else 0.0
    if name == "avg":
        return _reduce_nan(_numbers(first, name), lambda ns: math.fsum(ns) / len(ns), name)
    if name == "abs":
        return _map(first, abs, name)
    if name == "all":
        return all(_bools(first, name))
    if name == "any":
        return any(_bools(first, name))
    if name == "isNaN":
        return _map(first, math.isnan, name)
    if name == "isInf":
        return _map(first, math.isinf, name)
    raise EvaluationError(f"unknown function {name!r}")  # the parser refuses it first


class _Interpreter:
    """Evaluates a tree checked by :func:`schemas.expressions.parse_condition`."""

    def __init__(self, result: Value) -> None:
        self.result = result

    def eval(self, node: ast.expr) -> Value:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float):
                return float(value)
            raise EvaluationError(f"{value!r} is not allowed in a condition")
        if isinstance(node, ast.Name):
            return {"result": self.result, "true": True, "false": False}[node.id]
        if isinstance(node, ast.BoolOp):
            return self._bool_op(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.BinOp):
            symbol = _SYMBOLS[type(node.op)]
            fn = _ARITHMETIC[type(node.op)]
            return _elementwise(self.eval(node.left), self.eval(node.right), fn, symbol)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            return _call(node.func.id, [self.eval(arg) for arg in node.args])
        if isinstance(node, ast.Subscript):
            return self._index(self.eval(node.value), self.eval(node.slice))
        if isinstance(node, ast.List):
            items = [self.eval(e) for e in node.elts]
            if any(isinstance(i, list) for i in items):
                raise EvaluationError("lists cannot hold lists")
            return [i for i in items if not isinstance(i, list)]
        if isinstance(node, ast.IfExp):
            test = self._truth(self.eval(node.test), "if")
            return self.eval(node.body if test else node.orelse)
        # The parser refuses everything else; this guards against a tree built elsewhere.
        raise EvaluationError(f"{type(node).__name__} is not allowed in a condition")

    def _truth(self, value: Value, where: str) -> bool:
        if isinstance(value, bool):
            return value
        raise EvaluationError(
            f"'{where}' needs true/false, got {_kind(value)}"
            + ("; wrap it in all(...) or any(...)" if isinstance(value, list) else "")
        )

    def _bool_op(self, node: ast.BoolOp) -> bool:
        word = "and" if isinstance(node.op, ast.And) else "or"
        for operand in node.values:
            truth = self._truth(self.eval(operand), word)
            if truth != (word == "and"):
                return truth  # short-circuit, as written
        return word == "and"

    def _unary(self, node: ast.UnaryOp) -> Value:
        operand = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not self._truth(operand, "not")
        if isinstance(node.op, ast.USub):
            return _map(operand, operator.neg, "-")
        return _map(operand, float, "+")

    def _compare(self, node: ast.Compare) -> Value:
        left = self.eval(node.left)
        outcome: Value = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.eval(right_node)
            if isinstance(op, ast.Eq | ast.NotEq):
                step = _eq(left, right, negate=isinstance(op, ast.NotEq))
            else:
                step = _elementwise(left, right, _COMPARISONS[type(op)], _SYMBOLS[type(op)])
            outcome = step if outcome is True else _and(outcome, step)
            left = right
        return outcome

    def _index(self, target: Value, index: Value) -> Value:
        position = _number(index, "[...]")
        if not position.is_integer():
            raise EvaluationError(f"index {position:g} is not a whole number")
        items = _as_list(target)  # a single value is a one-value list
        i = int(position)
        if not -len(items) <= i < len(items):
            raise EvaluationError(f"index {i} is out of range: the value has {len(items)} item(s)")
        return items[i]


def _and(left: Value, right: Value) -> Value:
    """Combine the links of a chained comparison (``0 < result < 1``)."""
    if isinstance(left, list) or isinstance(right, list):
        a, b = _as_list(left), _as_list(right)
        if len(a) == 1:
            a = a * len(b)
        if len(b) == 1:
            b = b * len(a)
        if len(a) != len(b):
            raise EvaluationError("chained comparison over lists of different lengths")
        return [bool(x) and bool(y) for x, y in zip(a, b, strict=True)]
    return bool(left) and bool(right)
