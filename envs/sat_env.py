"""``selfplay/SAT-v0``: find a satisfying assignment of a CNF formula (SATURN's task, one turn).

The instances and their checks are the pure functions of :mod:`envs.sat` and the datasets those
of :mod:`envs.sat_data`; this module is the single-agent text adapter over them.
"""

from __future__ import annotations

import math
import operator
import os
from functools import lru_cache
from typing import Any, Sequence

from envs.base import MAX_OBS_CHARS, TurnBasedTextEnv
from envs.sat import (LETTERS, SatInstance, check_level, difficulty, extract_bits, format_formula,
                      generate, unsatisfied, variable_name)
from envs.sat_data import read_jsonl

DEFAULT_LEVEL = (3, 5, 5)  # SATURN's first training level
_OPTION_KEYS = {"n", "k", "l", "level", "clauses", "num_vars", "solution", "index"}


def as_level(value: Any, name: str) -> tuple[int, int, int]:
    """``value`` as a checked level ``(n, k, l)``; ValueError naming ``name`` otherwise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
        raise ValueError(f"{name}={value!r}: expected (n, k, l), e.g. (3, 5, 5)")
    return check_level(*value)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> tuple[SatInstance, ...]:
    """A dataset's rows, read once per file version (every episode builds a fresh env)."""
    return tuple(read_jsonl(path))


def load_dataset(path: str | os.PathLike) -> tuple[SatInstance, ...]:
    path = os.path.abspath(os.fspath(path))
    stat = os.stat(path)
    return _load(path, stat.st_mtime_ns, stat.st_size)


class SatEnv(TurnBasedTextEnv):
    """Boolean satisfiability for one language-model player, after SATURN (arXiv 2505.16368).

    ## Description
    The player is shown a CNF formula with a planted satisfying assignment and answers with an
    assignment in one turn. Level ``(n, k, l)``: ``l`` distinct clauses of ``n`` literals on
    ``n`` distinct variables out of ``k``. SATURN's difficulty estimate is
    ``envs.sat.difficulty`` = log2(k) + 2 log2(l) - n + k/n.

    ## Action Space
    ``Text``: any string. The answer is the last (innermost) ``\\boxed{...}``: exactly ``k``
    characters 0/1 once whitespace is removed (``\\boxed{\\text{..}}`` is unwrapped).

    ## Observation Space
    ``Text`` (ASCII): the formula, what satisfies it and the answer format; after the step, the
    verdict.

    ## Rewards
    On the single step: ``satisfied_reward`` (default +1) if the assignment satisfies every
    clause (any satisfying assignment, not only the planted one), ``unsatisfied_reward``
    (default 0) if a clause fails, ``malformed_reward`` (default -1) if there is no box or its
    content is not ``k`` digits 0/1 (SATURN pads short answers with zeros; here they are
    malformed). A malformed answer is invalid: ``info["invalid"]`` and ``invalid_counts == [1]``.

    ## Starting State
    ``reset(seed=, options=)`` picks the instance; options, one kind at a time:
    ``{"n": 3, "k": 5, "l": 5}`` (or ``{"level": (3, 5, 5)}``) generates one at that level;
    ``{"clauses": [[1, -2], ...], "num_vars": 2}`` (optionally ``"solution"``) fixes one;
    ``{"index": i}`` serves row ``i`` of the dataset. Without options: a seeded random row of
    the dataset, else an instance at one of the configured levels (uniformly drawn). After reset
    ``info`` holds ``clauses`` (DIMACS-style lists, A = 1), ``num_vars``, ``level`` (n, k, l),
    ``difficulty`` and, for a dataset row, ``index``. Unknown option keys are a ValueError.

    ## Episode End
    Terminates after the one step; ``info["outcome"]`` is ``satisfied``, ``unsatisfied`` or
    ``malformed`` and ``info["rewards"] == {0: reward}``. Never truncates.

    ## Arguments
    ``level`` (default (3, 5, 5)) or ``levels`` (a list of levels), or ``dataset`` (a JSONL file
    in the project's or SATURN's format, see :mod:`envs.sat_data`; rows detected one by one);
    ``satisfied_reward``, ``unsatisfied_reward``, ``malformed_reward``; ``lenient`` (with no
    box, read the one distinct ``k``-digit 0/1 word of the reply, if exactly one); ``example``
    (add one line showing the answer's shape, ``\\boxed{1010...}``, the same for every formula of
    ``k`` variables: a small model copies the shape, which gives its answers a reward to learn
    from; SATURN's own prompt shows one worked example, a 4-variable formula
    with its answer ``\\boxed{1101}``); ``render_mode`` (None or "ansi"); ``invalid_action`` accepts only "lose" (there is no random
    legal answer to play instead). :meth:`largest_level_options` gives the reset options of the
    configured instance with the longest prompt.

    ## Roles
    One player, role 0 (``num_players == 1``); ``info["player"]`` is 0 until the step and -1
    after it, as in every game.

    ## Prompt and answer format
    Variables are A, B, C, ... (A is variable 1) when k <= 26, as in SATURN; for k > 26 they are
    x1, x2, ..., xk throughout (formula, prompt and answer order). The formula is in SATURN's
    notation: a clause is its literals side by side (OR), ``!`` negates, clauses are joined by
    ``" & "`` (AND), e.g. ``!A!B!C & !A!C!E & ABE`` (or ``x1!x2x30 & ...``). The answer is
    ``\\boxed{BITS}``, ``BITS`` a string of ``k`` digits, 1 for true, in variable order.

    ## Version History
    * v0: initial version.
    """

    title = "SAT"
    num_players = 1

    def __init__(self, level: Sequence[int] | None = None, levels: Sequence[Sequence[int]] | None = None,
                 dataset: str | os.PathLike | None = None, satisfied_reward: float = 1.0,
                 unsatisfied_reward: float = 0.0, malformed_reward: float = -1.0,
                 invalid_action: str = "lose", lenient: bool = False, example: bool = False,
                 render_mode: str | None = None) -> None:
        if invalid_action != "lose":
            raise ValueError(f"invalid_action={invalid_action!r}: SAT-v0 accepts only 'lose' (a malformed "
                             "answer ends the episode with malformed_reward; there is no random answer "
                             "to play)")
        super().__init__(invalid_action=invalid_action, lenient=lenient, render_mode=render_mode)
        self.example = bool(example)
        self.rewards = {"satisfied": float(satisfied_reward), "unsatisfied": float(unsatisfied_reward),
                        "malformed": float(malformed_reward)}
        for outcome, value in self.rewards.items():
            if not math.isfinite(value):
                raise ValueError(f"{outcome}_reward={value!r}: expected a finite number")
        self.min_return = min(self.rewards.values())
        given = [name for name, value in (("level", level), ("levels", levels), ("dataset", dataset))
                 if value is not None]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} given: pass one of level, levels or dataset")
        if levels is not None:
            if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or not levels:
                raise ValueError(f"levels={levels!r}: expected a non-empty list of (n, k, l)")
            self.levels = [as_level(lv, f"levels[{i}]") for i, lv in enumerate(levels)]
        else:
            self.levels = [as_level(DEFAULT_LEVEL if level is None else level, "level")]
        for lv in self.levels:
            if _prompt_chars_bound(*lv) > MAX_OBS_CHARS:
                raise ValueError(f"level={lv}: its prompt can exceed MAX_OBS_CHARS={MAX_OBS_CHARS} "
                                 "characters")
        self.dataset = None if dataset is None else os.fspath(dataset)
        self.rows = load_dataset(self.dataset) if self.dataset is not None else ()
        if self.dataset is not None and not self.rows:
            raise ValueError(f"dataset={self.dataset!r}: the file has no rows")
        self.instance = SatInstance(1, ((1,),))  # replaced at every reset
        self.index: int | None = None
        self.answer: str | None = None
        self.outcome: str | None = None

    # ----- levels --------------------------------------------------------------------------------
    def largest_level_options(self) -> dict[str, Any]:
        """Reset options of the configured instance with the longest prompt: for a dataset the
        index of its longest row; else the level with the longest worst-case prompt (ties by
        the difficulty D). The prompt length, not D, is what a token budget has to fit:
        (6, 7, 40) has a lower D than (3, 7, 40) but twice the literals."""
        if self.rows:
            lengths = [len(sat_prompt(row)) for row in self.rows]
            return {"index": lengths.index(max(lengths))}
        n, k, l = max(self.levels, key=lambda lv: (_prompt_chars_bound(*lv), difficulty(*lv)))
        return {"n": n, "k": k, "l": l}

    # ----- hooks ---------------------------------------------------------------------------------
    def _new_game(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - _OPTION_KEYS, key=str)
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}: expected some of {sorted(_OPTION_KEYS)}")
        kinds = [kind for kind, keys in (("level", {"n", "k", "l", "level"}),
                                         ("clauses", {"clauses", "num_vars", "solution"}),
                                         ("index", {"index"})) if keys & set(options)]
        if len(kinds) > 1:
            raise ValueError(f"reset options {sorted(options)} mix {' and '.join(kinds)}: pass one kind")
        self.index, self.answer, self.outcome = None, None, None
        if "index" in options:
            self.instance = self._row(options["index"])
        elif kinds == ["clauses"]:
            if "clauses" not in options or "num_vars" not in options:
                raise ValueError("reset options need both 'clauses' and 'num_vars' to fix an instance")
            self.instance = SatInstance(options["num_vars"], options["clauses"], options.get("solution"))
        elif kinds:
            if "level" in options:
                if {"n", "k", "l"} & set(options):
                    raise ValueError("pass either 'level' or 'n', 'k', 'l' in reset options, not both")
                level = as_level(options["level"], "level")
            else:
                missing = [key for key in "nkl" if key not in options]
                if missing:
                    raise ValueError(f"reset options lack {missing}: a level needs n, k and l")
                level = check_level(options["n"], options["k"], options["l"])
            self.instance = generate(*level, rng=self.np_random)
        elif self.rows:
            self.instance = self._row(int(self.np_random.integers(len(self.rows))))
        else:
            # One level draws nothing, so reset(seed=s) builds generate(*level, rng=s)'s instance.
            many = len(self.levels) > 1
            level = self.levels[int(self.np_random.integers(len(self.levels)))] if many else self.levels[0]
            self.instance = generate(*level, rng=self.np_random)
        if len(sat_prompt(self.instance)) > MAX_OBS_CHARS:
            raise ValueError(f"level={self.instance.level}: the prompt exceeds "
                             f"MAX_OBS_CHARS={MAX_OBS_CHARS} characters")

    def _row(self, index: Any) -> SatInstance:
        if not self.rows:
            raise ValueError("reset option 'index' needs a dataset (SAT-v0 was built without dataset=)")
        try:
            i = operator.index(index) if not isinstance(index, bool) else -1
        except TypeError:
            i = -1
        if not 0 <= i < len(self.rows):
            raise ValueError(f"index={index!r}: expected an integer in [0, {len(self.rows)})")
        self.index = i
        return self.rows[i]

    def current_player(self) -> int:
        return 0

    def legal_actions(self) -> None:
        return None

    def parse_action(self, text: str) -> str | None:
        return extract_bits(text, self.instance.num_vars, self.lenient)

    def _apply(self, action: str) -> None:
        self.answer = action
        self.outcome = "unsatisfied" if unsatisfied(self.instance.clauses, action) else "satisfied"

    def _is_over(self) -> bool:
        return self.outcome is not None

    def _returns(self) -> dict[int, float]:
        return {0: self.rewards[self.outcome]}

    def _forfeit(self, offender: int) -> dict[int, float]:
        self.outcome = "malformed"
        return {0: self.rewards["malformed"]}

    def observation(self, player: int) -> str:
        return sat_prompt(self.instance, self.example)

    def final_observation(self) -> str:
        k = self.instance.num_vars
        if self.outcome == "malformed":
            verdict = f"No valid answer: expected \\boxed{{}} holding exactly {k} digits, each 0 or 1."
        else:
            failed = unsatisfied(self.instance.clauses, self.answer)
            verdict = (f"The assignment {self.answer} satisfies the formula." if not failed else
                       f"The assignment {self.answer} leaves {len(failed)} of {len(self.instance.clauses)} "
                       f"clauses false (the first is clause {failed[0] + 1}).")
        return f"{verdict} Reward: {self._rewards.get(0, 0.0):+g}."

    def _info(self, invalid: bool, action: str | None = None) -> dict[str, Any]:
        info = super()._info(invalid, action)
        inst = self.instance
        info.update(clauses=[list(c) for c in inst.clauses], num_vars=inst.num_vars, level=inst.level,
                    difficulty=difficulty(*inst.level))
        if self.index is not None:
            info["index"] = self.index
        if self._done:
            info["outcome"] = self.outcome
        return info


def _names(k: int) -> str:
    """The variables in answer order, e.g. ``A, B, C`` or ``x1, x2, ..., x30``."""
    if k <= len(LETTERS):
        return ", ".join(LETTERS[:k])
    return f"x1, x2, ..., x{k}"


def sat_prompt(inst: SatInstance, example: bool = False) -> str:
    """The prompt of ``inst`` (also LeaP's SAT questions); ``example`` shows the answer's shape."""
    k = inst.num_vars
    first, second, third = (variable_name(i, k) for i in (1, 2, 3))
    # An answer of the right shape, the same for every instance of k variables (so it says
    # nothing about this formula): a small model copies the shape, not a solution.
    shape = [f"For example, \\boxed{{{('10' * k)[:k]}}} sets {first} true and {second} false."] if example else []
    return "\n".join([
        f"Find a satisfying assignment for this Boolean formula over the {k} variables {_names(k)}:",
        format_formula(inst.clauses, k),
        "Clauses are joined by \" & \" (AND): every clause must be true. A clause lists its literals "
        "side by side (OR): it is true when at least one literal is true. \"!\" means NOT, so "
        f"{first}!{second}{third} means ({first} or not {second} or {third}). "
        "Any satisfying assignment is accepted.",
        f"Give your final answer as \\boxed{{BITS}}, where BITS is exactly {k} digits, each 0 or 1 "
        f"(1 = true), for {_names(k)} in that order.",
        *shape,
    ])


def _prompt_chars_bound(n: int, k: int, l: int) -> int:
    """An upper bound on the prompt's length at a level: every literal negated, longest names."""
    one = SatInstance(k, ((1,),))
    fixed = len(sat_prompt(one, example=True)) - len(format_formula(one.clauses, k))
    return fixed + l * n * (1 + len(variable_name(k, k))) + 3 * (l - 1)
