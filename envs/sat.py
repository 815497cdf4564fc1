"""SAT instances after SATURN (arXiv 2505.16368): planted generation, verification, the difficulty
estimate, SATURN's formula notation and answer extraction. Pure Python and numpy; nothing here
raises on a model's answer text.

* An instance at level ``(n, k, l)`` has ``k`` variables and ``l`` distinct clauses of ``n``
  literals on ``n`` distinct variables; :func:`generate` builds it around a random planted
  assignment, so it is satisfiable (any satisfying assignment counts, not only the planted one).
* Clauses are DIMACS-style: variable ``i`` (1-based) is the literal ``i``, its negation ``-i``.
* Assignments are bit strings, ``"1"`` for true, variable 1 first (SATURN's answer format).
* Variable names: ``A`` .. ``Z`` (variable 1 is ``A``) when ``k <= 26``, as in SATURN; for
  ``k > 26`` every variable is ``x1`` .. ``xk`` instead. A clause is its literals written side by
  side (``!`` negates: ``A!BC``, or ``x1!x2x30``), clauses are joined by ``" & "``.
"""

from __future__ import annotations

import itertools
import math
import re
import string
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from envs.actions import boxed_answers, unwrap_formatting
from envs.jsonl_rows import as_int

Clause = tuple[int, ...]
LETTERS = string.ascii_uppercase
#: The answer shape shared by every verdict below.
OUTCOMES = ("satisfied", "unsatisfied", "malformed")

_BITS = re.compile(r"[01]+")
_BARE_BITS = re.compile(r"\b[01]+\b")
_SPACES = re.compile(r"\s+")
_LITERAL = re.compile(r"(!?)([A-Z]|x[1-9][0-9]*)")


@dataclass(frozen=True)
class SatInstance:
    """A CNF formula over ``num_vars`` variables, optionally with a known satisfying assignment.

    ``meta`` keeps a dataset row's other keys so that writing the row back loses nothing.
    Construction validates: literals are non-zero integers within ``num_vars``, and a given
    ``solution`` is a bit string of length ``num_vars`` that satisfies every clause.
    """

    num_vars: int
    clauses: tuple[Clause, ...]
    solution: str | None = None
    id: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = as_int(self.num_vars, "num_vars")
        if k < 1:
            raise ValueError(f"num_vars={k}: expected at least 1 variable")
        if isinstance(self.clauses, (str, bytes)) or not isinstance(self.clauses, (Sequence, np.ndarray)):
            raise ValueError(f"clauses={self.clauses!r}: expected a list of lists of non-zero integers")
        clauses = []
        for c, clause in enumerate(self.clauses):
            if (isinstance(clause, (str, bytes)) or not isinstance(clause, (Sequence, np.ndarray))
                    or len(clause) == 0):
                raise ValueError(f"clauses[{c}]={clause!r}: expected a non-empty list of non-zero integers")
            lits = tuple(as_int(lit, f"clauses[{c}] literal") for lit in clause)
            bad = [lit for lit in lits if lit == 0 or abs(lit) > k]
            if bad:
                raise ValueError(f"clauses[{c}] has literal {bad[0]}: literals are +-1 .. +-{k} "
                                 f"(num_vars={k})")
            clauses.append(lits)
        if not clauses:
            raise ValueError("clauses=[]: expected at least one clause")
        object.__setattr__(self, "num_vars", k)
        object.__setattr__(self, "clauses", tuple(clauses))
        if self.solution is not None:
            sol = self.solution
            if not (isinstance(sol, str) and len(sol) == k and _BITS.fullmatch(sol)):
                raise ValueError(f"solution={self.solution!r}: expected {k} characters, each 0 or 1")
            if not satisfies(self.clauses, self.solution):
                raise ValueError(f"solution={self.solution!r} does not satisfy the clauses")

    @property
    def n(self) -> int:
        """Literals per clause (the longest clause's, should they differ)."""
        return max(len(c) for c in self.clauses)

    @property
    def level(self) -> tuple[int, int, int]:
        """``(n, k, l)``: literals per clause, variables, clauses."""
        return self.n, self.num_vars, len(self.clauses)


# ----- levels ------------------------------------------------------------------------------------
def difficulty(n: int, k: int, l: int) -> float:
    """SATURN's difficulty estimate D(n, k, l) = log2(k) + 2 log2(l) - n + k/n."""
    return math.log2(k) + 2 * math.log2(l) - n + k / n


def max_clauses(n: int, k: int) -> int:
    """Distinct clauses on ``n`` distinct variables out of ``k`` that a fixed assignment satisfies:
    C(k, n) variable sets times the 2^n - 1 sign patterns that are not all false under it."""
    return math.comb(k, n) * (2**n - 1)


def check_level(n: Any, k: Any, l: Any) -> tuple[int, int, int]:
    """Validate a level; returns it as ints or raises ValueError naming the parameter and bound."""
    n, k, l = as_int(n, "n"), as_int(k, "k"), as_int(l, "l")
    if n < 1:
        raise ValueError(f"n={n}: literals per clause must be at least 1")
    if k < n:
        raise ValueError(f"n={n} > k={k}: a clause needs n distinct variables, so n must be <= k")
    if l < 1:
        raise ValueError(f"l={l}: the number of clauses must be at least 1")
    most = max_clauses(n, k)
    if l > most:
        raise ValueError(f"l={l} > {most}: only C(k, n) * (2^n - 1) = {most} distinct clauses of "
                         f"n={n} variables out of k={k} agree with a planted assignment")
    return n, k, l


# ----- generation and verification ---------------------------------------------------------------
def generate(n: int, k: int, l: int, rng: np.random.Generator | int | None = None) -> SatInstance:
    """A satisfiable instance at level ``(n, k, l)``, planted around a uniformly random assignment.

    Each clause is uniform over the clauses on ``n`` distinct variables that the planted assignment
    satisfies, drawn without repetition; literals are sorted by variable, clauses come in random
    order. Deterministic given ``rng`` (a Generator, or a seed for ``np.random.default_rng``).
    """
    n, k, l = check_level(n, k, l)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    planted = [bool(b) for b in rng.integers(0, 2, size=k)]
    total = max_clauses(n, k)
    if 2 * l >= total:
        # Dense: list every admissible clause (at most 2l of them) and pick l without replacement.
        every = []
        for variables in itertools.combinations(range(k), n):
            for agree in itertools.product((True, False), repeat=n):
                if any(agree):
                    every.append(_clause(variables, agree, planted))
        chosen = [every[int(i)] for i in rng.choice(len(every), size=l, replace=False)]
    else:
        # Sparse: rejection sampling; a repeat has probability below 1/2 per draw.
        chosen, seen = [], set()
        while len(chosen) < l:
            variables = sorted(int(v) for v in rng.choice(k, size=n, replace=False))
            agree = [bool(a) for a in rng.integers(0, 2, size=n)]
            if not any(agree):
                continue
            clause = _clause(variables, agree, planted)
            if clause not in seen:
                seen.add(clause)
                chosen.append(clause)
    return SatInstance(k, tuple(chosen), "".join("1" if b else "0" for b in planted))


def _clause(variables: Sequence[int], agree: Sequence[bool], planted: Sequence[bool]) -> Clause:
    """Literals on 0-based ``variables``; literal j is true under ``planted`` iff ``agree[j]``."""
    return tuple((v + 1) if planted[v] == a else -(v + 1) for v, a in zip(variables, agree))


def satisfies(clauses: Sequence[Sequence[int]], bits: str | Sequence[bool]) -> bool:
    """Whether the assignment (bit string or booleans, variable 1 first) satisfies every clause."""
    return not unsatisfied(clauses, bits)


def unsatisfied(clauses: Sequence[Sequence[int]], bits: str | Sequence[bool]) -> list[int]:
    """0-based indices of the clauses the assignment leaves false."""
    value = [b == "1" for b in bits] if isinstance(bits, str) else [bool(b) for b in bits]
    return [c for c, clause in enumerate(clauses)
            if not any(value[abs(lit) - 1] == (lit > 0) for lit in clause)]


# ----- notation ----------------------------------------------------------------------------------
def variable_name(index: int, k: int) -> str:
    """Name of variable ``index`` (1-based): A..Z when k <= 26, else x1..xk."""
    return LETTERS[index - 1] if k <= len(LETTERS) else f"x{index}"


def format_formula(clauses: Sequence[Sequence[int]], k: int) -> str:
    """SATURN's notation: ``"!A!B!C & !A!C!E & ABE"`` (literals side by side, ``!`` negates)."""
    return " & ".join("".join(("!" if lit < 0 else "") + variable_name(abs(lit), k) for lit in clause)
                      for clause in clauses)


def parse_formula(text: str, k: int) -> tuple[Clause, ...]:
    """Inverse of :func:`format_formula` (letters for k <= 26, else x-names); ValueError otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"clause={text!r}: expected clauses such as '!A!B!C & ABE'")
    clauses = []
    for part in text.split("&"):
        part = part.strip()
        tokens = _LITERAL.findall(part)
        if not part or "".join(sign + name for sign, name in tokens) != part:
            raise ValueError(f"clause {part!r} in {text[:80]!r}: expected literals such as A, !B or x12")
        lits = []
        for sign, name in tokens:
            if (len(name) == 1) != (k <= len(LETTERS)):
                raise ValueError(f"clause {part!r}: with k={k} variables are named "
                                 + ("A..Z" if k <= len(LETTERS) else "x1..xk"))
            index = LETTERS.index(name) + 1 if len(name) == 1 else int(name[1:])
            if index > k:
                raise ValueError(f"clause {part!r}: variable {name} is beyond k={k}")
            lits.append(-index if sign else index)
        clauses.append(tuple(lits))
    return tuple(clauses)


# ----- answers -----------------------------------------------------------------------------------
def extract_bits(text: Any, k: int, lenient: bool = False) -> str | None:
    """The assignment an answer commits to: the last (innermost) ``\\boxed{...}``, whitespace
    removed, if it is exactly ``k`` characters 0/1; else None. With ``lenient``, a text with no
    box at all is read as the one distinct ``k``-digit 0/1 word it contains, if exactly one."""
    if not isinstance(text, str):
        return None
    text = unwrap_formatting(text)
    boxes = boxed_answers(text)
    if boxes:
        bits = _SPACES.sub("", boxes[-1])
        return bits if len(bits) == k and _BITS.fullmatch(bits) else None
    if lenient:
        words = {w for w in _BARE_BITS.findall(text) if len(w) == k}
        if len(words) == 1:
            return words.pop()
    return None


def grade(text: Any, clauses: Sequence[Sequence[int]], k: int,
          lenient: bool = False) -> tuple[str, str | None]:
    """``(outcome, bits)``: outcome is one of :data:`OUTCOMES`, bits what was read (or None)."""
    bits = extract_bits(text, k, lenient)
    if bits is None:
        return "malformed", None
    return ("satisfied" if satisfies(clauses, bits) else "unsatisfied"), bits
