"""The condition language: what it computes, what it refuses, and that it stays bounded."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.expressions import (
    MAX_VALUES,
    EvaluationError,
    evaluate_condition,
    evaluate_expression,
)
from schemas.expressions import MAX_LENGTH, ConditionSyntaxError, parse_condition
from tests.reports import report

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("condition", "result", "expected"),
    [
        ("result < 0.05", 0.01, True),
        ("result < 0.05", 0.05, False),
        ("result <= 0.05", 0.05, True),
        ("result[0] < 0.05", 0.01, True),  # a single value indexes as a one-value list
        ("result[-1] >= 2", [1.0, 2.0], True),
        ("result[1] == 2", [1.0, 2.0], True),
        ("len(result) > 0", 0.3, True),
        ("len(result) == 3", [1.0, 2.0, 3.0], True),
        ("all(result < 0.05)", [0.01, 0.02], True),
        ("all(result < 0.05)", [0.01, 0.2], False),
        ("any(result > 0.1)", [0.01, 0.2], True),
        ("max(result) < 1 and min(result) > 0", [0.5, 0.7], True),
        ("sum(result) == 3", [1.0, 2.0], True),
        ("avg(result) == 1.5", [1.0, 2.0], True),
        ("max(result[0], result[1]) == 2", [1.0, 2.0], True),
        ("abs(result - 1) < 0.1", 0.95, True),
        ("all(abs(result) < 1)", [-0.5, 0.5], True),
        ("result * 100 > 5", 0.071, True),
        ("(result[0] + result[1]) / 2 == 1.5", [1.0, 2.0], True),
        ("result % 2 == 1", 3.0, True),
        ("2 ** 3 == 8", 0.0, True),
        ("-result == -1", 1.0, True),
        ("0 < result < 1", 0.5, True),
        ("0 < result < 1", 1.5, False),
        ("all(0 < result < 1)", [0.2, 0.3], True),
        ("not result > 1", 0.5, True),
        ("result > 1 or result < 0", -1.0, True),
        ("result > 1 && result < 3", 2.0, True),  # Argo's operators
        ("result > 1 || !(result < 3)", 0.0, False),
        ("result != 1", 2.0, True),
        ("true", 1.0, True),
        ("false or True", 1.0, True),
        ("(result if result > 0 else -result) == 2", -2.0, True),
    ],
)
def test_conditions_compute(condition: str, result: float | list[float], expected: bool) -> None:
    assert evaluate_condition(condition, result) is expected


def test_elementwise_values() -> None:
    assert evaluate_expression("result * 2", [1.0, 2.0]) == [2.0, 4.0]
    assert evaluate_expression("result + result", [1.0, 2.0]) == [2.0, 4.0]
    assert evaluate_expression("result < 2", [1.0, 2.0]) == [True, False]
    assert evaluate_expression("isNaN(result)", [NAN, 1.0]) == [True, False]
    assert evaluate_expression("[1, 2][1]", 0.0) == 2.0


@pytest.mark.parametrize(
    ("condition", "result", "expected"),
    [
        # IEEE 754, as PromQL: comparisons with NaN are false, except !=.
        ("result > 0.05", NAN, False),
        ("result <= 0.05", NAN, False),
        ("result != result", NAN, True),
        ("isNaN(result)", NAN, True),
        ("isNaN(result[0]) or result[0] < 1", [NAN], True),
        ("isInf(result)", INF, True),
        ("result > 1e308", INF, True),
        ("isNaN(max(result))", [1.0, NAN], True),  # reductions propagate NaN
        ("isNaN(avg(result))", [NAN, 2.0], True),
        ("isInf(result / 0)", 1.0, True),  # division by zero is ±Inf, not an exception
        ("isNaN(result / 0)", 0.0, True),
        ("isNaN(result % 0)", 1.0, True),
        ("isNaN((0 - 8) ** 0.5)", 0.0, True),
    ],
)
def test_nan_and_infinity(condition: str, result: float | list[float], expected: bool) -> None:
    assert evaluate_condition(condition, result) is expected


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("reslt > 1", "unknown name 'reslt'"),
        ("result.__class__", "attribute access is not allowed"),
        ("result.real > 0", "attribute access is not allowed"),
        ("__import__('os').system('id')", "attribute access is not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("__builtins__", "unknown name '__builtins__'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("(lambda: 1)()", "only the listed functions may be called"),
        ("lambda x: x", "lambda is not allowed"),
        ("[x for x in result]", "comprehensions are not allowed"),
        ("all(x < 1 for x in result)", "comprehensions are not allowed"),
        ("[[x for x in [1]*9**9] for y in [1]*9**9]", "comprehensions are not allowed"),
        ("{1: 2}", "dict literals are not allowed"),
        ("{1, 2}", "set literals are not allowed"),
        ("(1, 2)", "tuples are not allowed"),
        ("'a' == 'a'", "strings are not allowed"),
        ("f'{result}'", "strings are not allowed"),
        ("result[0:2]", "slices are not allowed"),
        ("(y := 1)", "assignment (:=) is not allowed"),
        ("max(*result)", "unpacking (*) is not allowed"),
        ("max(result, key=abs)", "takes no keyword arguments"),
        ("len(result, result)", "len() takes 1 argument(s), got 2"),
        ("result // 2", "operator FloorDiv is not allowed"),
        ("result << 2", "operator LShift is not allowed"),
        ("result is None", "comparison Is is not allowed"),
        ("1 in result", "comparison In is not allowed"),
        ("None", "None is not allowed"),
        ("...", "Ellipsis is not allowed"),
        ("1j > 0", "1j is not allowed"),
        ("result >", "syntax error"),
        ("result = 1", "syntax error"),
        ("import os", "syntax error"),
        ("", "condition is empty"),
        ("   ", "condition is empty"),
        ("len > 1", "len is a function; call it: len(...)"),
        ("9" * 400 + " > 1", "number too large"),
        ("result" + " + result" * 210 + " > 0", "characters long"),
        ("[" + "1," * 210 + "] == result", "more than 200 nodes"),
        ("-" * 60 + "result > 0", "nested more than"),
        ("(" * 300 + "1" + ")" * 300, "characters long"),
    ],
)
def test_refused_at_parse(condition: str, message: str) -> None:
    with pytest.raises(ConditionSyntaxError) as err:
        parse_condition(condition)
    assert message in str(err.value)


def test_length_limit_is_exact() -> None:
    base = "result > 0"
    parse_condition(base + " " * (MAX_LENGTH - len(base)))
    with pytest.raises(ConditionSyntaxError, match="characters long"):
        parse_condition(base + " " * (MAX_LENGTH - len(base) + 1))


@pytest.mark.parametrize(
    ("condition", "result", "message"),
    [
        ("2 ** 100000 > 1", 0.0, "too large"),  # huge exponent: refused, not computed
        ("result ** 1e10 > 1", 10.0, "too large"),
        ("10 ** 400 > 1", 0.0, "too large"),
        ("result < 0.05", [0.01, 0.02], "wrap it in all(...) or any(...)"),
        ("result", 1.0, "gives the number 1"),
        ("result[2] > 0", [1.0, 2.0], "index 2 is out of range"),
        ("result[0.5] > 0", [1.0, 2.0], "not a whole number"),
        ("all(result)", [1.0], "all() needs true/false values"),
        ("result and true", 1.0, "'and' needs true/false, got a number"),
        ("not result", 1.0, "'not' needs true/false"),
        ("result > true", 1.0, "> needs a number, got true/false"),
        ("all(result < [1, 2])", [0.0, 0.0, 0.0], "lists of equal length"),
        ("max([]) > 0", 0.0, "max() of no values"),
        ("[result] == 1", [1.0], "lists cannot hold lists"),
    ],
)
def test_errors_at_evaluation(condition: str, result: float | list[float], message: str) -> None:
    with pytest.raises(EvaluationError) as err:
        evaluate_condition(condition, result)
    assert message in str(err.value)


def test_list_arithmetic_is_elementwise_so_repetition_cannot_allocate() -> None:
    # In Python `[1] * 9 ** 9` builds 387 million items; here it multiplies one element.
    assert evaluate_expression("[1] * 9 ** 9", 0.0) == [float(9**9)]
    assert evaluate_condition("len([1] * 9 ** 9) == 1", 0.0)


def test_the_largest_condition_over_the_most_values_stays_bounded() -> None:
    """About 200 nodes over 1000 values: the worst the limits allow, evaluated once."""
    text = "all(" + "+".join(["result*2"] * 45) + " < 1e9)"
    condition = parse_condition(text)
    started = time.perf_counter()
    assert evaluate_condition(condition, [1.0] * MAX_VALUES)
    elapsed = time.perf_counter() - started
    report(
        "condition-worst-case",
        f"{len(text)} chars over {MAX_VALUES} values: {elapsed * 1000:.1f} ms",
    )


def test_too_many_values_are_refused() -> None:
    assert evaluate_condition("len(result) > 0", [0.0] * MAX_VALUES)
    with pytest.raises(EvaluationError, match="at most"):
        evaluate_condition("len(result) > 0", [0.0] * (MAX_VALUES + 1))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_is_accepted_or_refused_cleanly(text: str) -> None:
    """Whatever the text, parsing either succeeds or raises ConditionSyntaxError."""
    try:
        condition = parse_condition(text)
    except ConditionSyntaxError:
        return
    try:
        evaluate_expression(condition, [0.5, NAN, 2.0])
    except EvaluationError:
        pass


_atoms = st.sampled_from(["result", "result[0]", "1", "0.5", "len(result)", "max(result)"])
_ops = st.sampled_from(["+", "-", "*", "/", "%", "**", "<", ">", "==", "!="])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_ops, _atoms), max_size=12), _atoms, st.lists(st.floats(), max_size=6))
def test_generated_expressions_never_escape_the_language(
    tail: list[tuple[str, str]], head: str, values: list[float]
) -> None:
    """Grammatical expressions evaluate to a value or an EvaluationError, nothing else."""
    text = head + "".join(f" {op} {atom}" for op, atom in tail)
    condition = parse_condition(text)
    try:
        evaluate_expression(condition, values)
    except EvaluationError:
        pass
