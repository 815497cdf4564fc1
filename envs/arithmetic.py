"""Integer arithmetic problems with exact answers, on difficulty levels, and their answer check.
Pure Python and numpy; nothing here raises on a model's answer text.

A problem is an expression of ``operands`` positive integers of at most ``digits`` digits joined
by ``+``, ``-`` and (from level 3) ``*``; from level 4 the expression is a random binary tree,
written with the parentheses its order of operations needs. Operands are never 0 and there is no
division, so every answer is an exact integer (possibly negative), computed from the tree with
Python integers, never by ``eval``. Generation draws only from the given numpy generator or seed,
so the same seed gives the same problems.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Sequence, Union

import numpy as np

from envs.actions import last_boxed, unwrap_formatting
from envs.jsonl_rows import as_int

OPS = ("+", "-", "*")
_PREC = {"+": 1, "-": 1, "*": 2}
_APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul}
# numpy draws operands as int64: 18 digits is the most that always fits.
MAX_DIGITS = 18
# The tree is built and evaluated recursively; far beyond a problem worth posing anyway.
MAX_OPERANDS = 64


@dataclass(frozen=True)
class Level:
    """How a level's problems are drawn."""

    operands: int
    digits: int
    ops: tuple[str, ...]
    parentheses: bool


#: Level -> parameters; harder levels have more operands, longer numbers, ``*``, parentheses.
LEVELS: dict[int, Level] = {
    1: Level(2, 1, ("+", "-"), False),
    2: Level(3, 1, ("+", "-"), False),
    3: Level(3, 2, OPS, False),
    4: Level(4, 2, OPS, True),
    5: Level(5, 2, OPS, True),
    6: Level(6, 3, OPS, True),
}

# A tree is an int leaf or (op, left, right).
Node = Union[int, tuple[str, "Node", "Node"]]


@dataclass(frozen=True)
class ArithmeticProblem:
    """``question`` asks for the answer in ``\\boxed{}``; ``answer`` is the exact integer as text."""

    question: str
    answer: str
    expression: str
    level: int | None = None


def check_params(operands: Any, digits: Any, ops: Sequence[str]) -> tuple[int, int, tuple[str, ...]]:
    """Validate generation parameters; ValueError names the parameter and its bounds."""
    operands, digits = as_int(operands, "operands"), as_int(digits, "digits")
    if not 2 <= operands <= MAX_OPERANDS:
        raise ValueError(f"operands={operands}: expected 2 .. {MAX_OPERANDS} "
                         "(a problem needs at least one operation)")
    if not 1 <= digits <= MAX_DIGITS:
        raise ValueError(f"digits={digits}: expected 1 .. {MAX_DIGITS}")
    if isinstance(ops, str) or not ops or any(op not in OPS for op in ops):
        raise ValueError(f"ops={ops!r}: expected a non-empty sequence drawn from {OPS}")
    return operands, digits, tuple(ops)


def evaluate(node: Node) -> int:
    """The exact value of a tree."""
    if isinstance(node, int):
        return node
    op, left, right = node
    return _APPLY[op](evaluate(left), evaluate(right))


def render(node: Node) -> str:
    """The tree as text with only the parentheses its evaluation order needs: a child of lower
    precedence than its parent, or a ``+``/``-`` right operand of ``-``."""
    if isinstance(node, int):
        return str(node)
    op, left, right = node
    text_l, text_r = render(left), render(right)
    if not isinstance(left, int) and _PREC[left[0]] < _PREC[op]:
        text_l = f"({text_l})"
    if not isinstance(right, int) and (_PREC[right[0]] < _PREC[op]
                                       or (_PREC[right[0]] == _PREC[op] and op == "-")):
        text_r = f"({text_r})"
    return f"{text_l} {op} {text_r}"


def _flat(values: list[int], ops: list[str]) -> Node:
    """``v0 op0 v1 op1 ...`` parsed the usual way: ``*`` first, then left to right."""
    terms: list[Node] = [values[0]]
    signs: list[str] = []
    for op, value in zip(ops, values[1:]):
        if op == "*":
            terms[-1] = ("*", terms[-1], value)
        else:
            signs.append(op)
            terms.append(value)
    tree = terms[0]
    for sign, term in zip(signs, terms[1:]):
        tree = (sign, tree, term)
    return tree


def _random_tree(values: list[int], ops: list[str], rng: np.random.Generator) -> Node:
    """A binary tree over ``values`` in order, split at a uniformly random point at each node."""
    if len(values) == 1:
        return values[0]
    split = int(rng.integers(1, len(values)))
    return (ops[split - 1], _random_tree(values[:split], ops[:split - 1], rng),
            _random_tree(values[split:], ops[split:], rng))


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def generate_custom(operands: int, digits: int, ops: Sequence[str] = OPS, parentheses: bool = False,
                    rng: np.random.Generator | int | None = None,
                    level: int | None = None) -> ArithmeticProblem:
    """A problem of ``operands`` integers in ``1 .. 10**digits - 1`` joined by operators drawn
    uniformly from ``ops``; with ``parentheses``, grouped as a random binary tree."""
    operands, digits, ops = check_params(operands, digits, ops)
    gen = _rng(rng)
    values = [int(v) for v in gen.integers(1, 10**digits, size=operands)]
    chosen = [ops[int(i)] for i in gen.integers(0, len(ops), size=operands - 1)]
    tree = _random_tree(values, chosen, gen) if parentheses else _flat(values, chosen)
    expression = render(tree)
    question = (f"What is {expression}? Give your final answer as \\boxed{{N}}, "
                "where N is an integer.")
    return ArithmeticProblem(question, str(evaluate(tree)), expression, level)


def generate(level: int, rng: np.random.Generator | int | None = None) -> ArithmeticProblem:
    """A problem at one of :data:`LEVELS`; ValueError for any other level."""
    if isinstance(level, bool) or level not in LEVELS:
        raise ValueError(f"level={level!r}: expected one of {sorted(LEVELS)}")
    p = LEVELS[level]
    return generate_custom(p.operands, p.digits, p.ops, p.parentheses, rng, level)


def make_dataset(levels: Sequence[int], per_level: int, seed: int = 0) -> list[ArithmeticProblem]:
    """``per_level`` problems for each level, in order, from one generator seeded by ``seed``."""
    per_level = as_int(per_level, "per_level")
    if per_level < 0:
        raise ValueError(f"per_level={per_level}: expected an integer >= 0")
    for level in levels:
        if isinstance(level, bool) or level not in LEVELS:
            raise ValueError(f"level={level!r}: expected one of {sorted(LEVELS)}")
    gen = np.random.default_rng(seed)
    return [generate(level, gen) for level in levels for _ in range(per_level)]


# ----- answers -----------------------------------------------------------------------------------
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+$")
# No exponent: Fraction("1e999999999") would build a billion-digit integer.
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$|^-?\d+/\d+$")
# Longest candidate read: a 64-operand product of 18-digit numbers has at most 1152 digits.
MAX_ANSWER_CHARS = 2_000


def parse_number(text: str) -> Fraction | None:
    """A number as written in an answer (``-12``, ``12.0``, ``1,234``, ``\\frac{3}{4}``,
    ``\\text{7}``, ``$-3$``), as an exact Fraction; None if it is not one."""
    if not isinstance(text, str) or len(text) > MAX_ANSWER_CHARS:
        return None
    text = unwrap_formatting(text)
    for junk in ("$", "\\,", "\\!", "\\ ", "{,}", " ", "\t", "\n"):
        text = text.replace(junk, "")
    text = text.replace("\u2212", "-").rstrip(".")
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    frac = _FRAC.match(text)
    if frac:
        text = f"{frac[1]}{frac[2]}/{frac[3]}"
    if not _NUMBER.match(text):
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):  # "1/0"; digits beyond int()'s string limit
        return None


def check_answer(text: Any, answer: str | int) -> bool:
    """Whether the last ``\\boxed{...}`` in ``text`` holds the number ``answer`` (compared exactly:
    ``12``, ``12.0`` and ``\\frac{24}{2}`` all match 12). A text with no box is wrong. ValueError
    only if ``answer`` itself is not a number."""
    reference = parse_number(str(answer))
    if reference is None:
        raise ValueError(f"answer={answer!r}: expected a number")
    boxed = last_boxed(text)
    return boxed is not None and parse_number(boxed) == reference


__all__ = ["LEVELS", "OPS", "Level", "ArithmeticProblem", "check_params", "generate",
           "generate_custom", "make_dataset", "evaluate", "render", "parse_number",
           "check_answer"]
