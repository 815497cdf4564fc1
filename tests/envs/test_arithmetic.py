"""Arithmetic problems (envs.arithmetic): answers checked against Python's own evaluation of the
expression, levels, determinism, bad parameters, and the boxed-answer checker."""

from __future__ import annotations

import re

import numpy as np
import pytest

from envs.actions import last_boxed
from envs.arithmetic import (LEVELS, OPS, check_answer, check_params, generate, generate_custom,
                             make_dataset, parse_number, render)

_TOKENS = re.compile(r"\d+|[-+*()]| ")


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_answers_are_exact_and_levels_hold(level):
    p = LEVELS[level]
    for seed in range(60):
        prob = generate(level, rng=seed)
        expr = prob.expression
        # Only digits, operators, parentheses and spaces: eval here is on generator output.
        assert "".join(_TOKENS.findall(expr)) == expr
        assert eval(expr) == int(prob.answer) and prob.answer == str(int(prob.answer))  # noqa: S307
        numbers = [int(n) for n in re.findall(r"\d+", expr)]
        assert len(numbers) == p.operands
        assert all(1 <= n < 10**p.digits for n in numbers)
        assert set(re.findall(r"[-+*]", expr)) <= set(p.ops)
        assert ("(" in expr) <= p.parentheses
        assert prob.level == level and expr in prob.question and "\\boxed{" in prob.question
        assert check_answer(f"so \\boxed{{{prob.answer}}}", prob.answer)


def test_higher_levels_use_parentheses_and_products():
    exprs = [generate(5, rng=s).expression for s in range(100)]
    assert sum("(" in e for e in exprs) > 20 and sum("*" in e for e in exprs) > 50
    # Some answers are negative: the generator does not only pose easy sums.
    assert any(int(generate(6, rng=s).answer) < 0 for s in range(100))


def test_rendering_uses_only_needed_parentheses():
    assert render(("-", 5, ("-", 3, 2))) == "5 - (3 - 2)"        # 4, not 0
    assert render(("-", ("-", 5, 3), 2)) == "5 - 3 - 2"
    assert render(("*", ("+", 1, 2), 3)) == "(1 + 2) * 3"
    assert render(("+", 1, ("*", 2, 3))) == "1 + 2 * 3"
    assert render(("+", 1, ("-", 2, 3))) == "1 + 2 - 3"          # same value either way
    assert render(("*", 2, ("*", 3, 4))) == "2 * 3 * 4"
    assert render(("*", 2, ("-", 3, 4))) == "2 * (3 - 4)"


def test_same_seed_same_problems():
    assert generate(4, rng=3) == generate(4, rng=np.random.default_rng(3))
    assert any(generate(4, rng=3) != generate(4, rng=s) for s in range(4, 8))
    a = make_dataset([1, 3, 6], per_level=5, seed=9)
    assert a == make_dataset([1, 3, 6], per_level=5, seed=9)
    assert [p.level for p in a] == [1] * 5 + [3] * 5 + [6] * 5


def test_custom_parameters():
    prob = generate_custom(7, 4, ops=("*",), parentheses=True, rng=1)
    numbers = [int(n) for n in re.findall(r"\d+", prob.expression)]
    assert len(numbers) == 7 and "(" not in prob.expression  # products never need parentheses
    assert int(prob.answer) == np.prod(numbers, dtype=object)
    big = generate_custom(64, 18, rng=0)
    assert eval(big.expression) == int(big.answer)  # noqa: S307


@pytest.mark.parametrize("kwargs, match", [
    ({"operands": 1, "digits": 2}, r"operands=1: expected 2 \.\. 64"),
    ({"operands": 65, "digits": 2}, r"operands=65"),
    ({"operands": 3, "digits": 0}, r"digits=0: expected 1 \.\. 18"),
    ({"operands": 3, "digits": 19}, r"digits=19"),
    ({"operands": 3.0, "digits": 2}, r"operands=3.0: expected an integer"),
    ({"operands": 3, "digits": True}, r"digits=True: expected an integer"),
    ({"operands": 3, "digits": 2, "ops": ()}, r"ops=\(\): expected a non-empty sequence"),
    ({"operands": 3, "digits": 2, "ops": ("/",)}, r"ops=\('/',\)"),
    ({"operands": 3, "digits": 2, "ops": "+-"}, r"ops='\+-'"),
])
def test_impossible_parameters_raise_a_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_custom(**kwargs, rng=0)
    with pytest.raises(ValueError, match=match):
        check_params(kwargs["operands"], kwargs["digits"], kwargs.get("ops", OPS))


@pytest.mark.parametrize("level", [0, 7, "1", None, True])
def test_unknown_levels_raise(level):
    with pytest.raises(ValueError, match=r"level=.*: expected one of \[1, 2, 3, 4, 5, 6\]"):
        generate(level, rng=0)
    with pytest.raises(ValueError, match="level="):
        make_dataset([1, level], per_level=1)


# ----- answers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, answer, ok", [
    ("\\boxed{42}", "42", True),
    ("first \\boxed{41}, then \\boxed{ 42 }", "42", True),     # the last box counts
    ("\\boxed{42} and finally \\boxed{41}", "42", False),
    ("\\boxed{42.0}", "42", True),
    ("\\boxed{\\frac{84}{2}}", "42", True),
    ("\\boxed{\\text{42}}", "42", True),
    ("\\boxed{$-17$}", "-17", True),
    ("\\boxed{\u221217}", "-17", True),                       # unicode minus
    ("\\boxed{1,234}", "1234", True),
    ("\\boxed{1{,}234}", "1234", True),
    ("\\boxed{42.}", "42", True),
    ("\\boxed{\\boxed{42}}", "42", True),
    ("\\boxed {42}", 42, True),                               # an int reference works too
    ("\\boxed{17}", "-17", False),
    ("\\boxed{42.5}", "42", False),
    ("\\boxed{1,23}", "123", False),
    ("\\boxed{4e1}", "40", False),                            # no exponents
    ("\\boxed{1e999999999}", "1", False),
    ("\\boxed{1/0}", "1", False),
    ("\\boxed{x}", "42", False),
    ("\\boxed{}", "42", False),
    ("42", "42", False),                                      # no box, no answer
    ("\\boxed{42", "42", False),                              # cut off
    ("\\boxed{42} then \\boxed{4", "42", False),              # the last box is cut off
    ("\\boxed{" + "9" * 5000 + "}", "9", False),
    (None, "42", False),
    (b"\\boxed{42}", "42", False),
])
def test_check_answer(text, answer, ok):
    assert check_answer(text, answer) is ok


def test_check_answer_never_raises_on_odd_text():
    rng = np.random.default_rng(0)
    alphabet = list("\\boxed{}0123456789-.,/$ frac") + ["\\boxed{", "\\frac{"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 40))))
        assert check_answer(text, "12") in (True, False)
    assert check_answer("\\boxed{" * 100_000, "1") is False
    assert check_answer("{" * 100_000 + "\\boxed{7}" + "}" * 100_000, "7") is True


def test_bad_reference_raises():
    with pytest.raises(ValueError, match="answer='seven': expected a number"):
        check_answer("\\boxed{7}", "seven")


def test_helpers():
    assert last_boxed("a \\boxed{x^{2}} b") == "x^{2}"
    assert last_boxed("none") is None
    assert parse_number("\\dfrac{3}{4}") == parse_number("0.75") == parse_number("3/4")
    assert parse_number("-\\frac{3}{4}") == -parse_number("0.75")
