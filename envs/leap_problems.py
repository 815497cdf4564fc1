"""Verifiable problems for LeaP episodes, from three offline sources (pure: no model, no I/O
beyond reading a JSONL file once):

* ``arithmetic``: generated integer arithmetic at a difficulty level (:mod:`envs.arithmetic`);
* ``sat``: a planted-solution SAT formula at a level ``(n, k, l)``, or rows of a SAT JSONL file,
  as ``selfplay/SAT-v0`` builds them (:mod:`envs.sat_env`); any satisfying assignment is right;
* ``jsonl``: question/answer rows (MATH- or AIME-style) from any source ``selfplay eval --bench``
  reads (:func:`envs.qa_data.read_source`: a JSONL file, a ``datasets`` folder or a cached dataset
  id, with its own column names), answers checked with Hugging Face's ``math-verify``.

A :class:`Problem` is a question, a check of a path's text, and :meth:`Problem.answer` (the final
answer a text commits to, normalised) for majority votes and for telling whether a path changed
its answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from envs import arithmetic, qa_data, sat, sat_env
from envs.actions import last_boxed

SOURCES = ("arithmetic", "sat", "jsonl")
#: Appended to every question by default: where the final answer goes (LeaP's ``MATH_cot``, the
#: instruction of its independent-path baseline and of its LeaP-T models).
ANSWER_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Problem:
    """One problem: ``question`` (the user message), ``reference`` (an answer, as text) and what
    is needed to check an answer."""

    source: str
    question: str
    reference: str
    clauses: tuple[tuple[int, ...], ...] = ()
    num_vars: int = 0

    def answer(self, text: str) -> str | None:
        """The final answer ``text`` commits to (its last ``\\boxed{}``), whitespace removed, or
        None when it has none."""
        if self.source == "sat":
            return sat.extract_bits(text, self.num_vars)
        boxed = last_boxed(text)
        return None if boxed is None else "".join(boxed.split()) or None

    def check(self, text: str) -> bool:
        """Whether ``text``'s final answer is right. Never raises on a model's text."""
        if self.source == "sat":
            bits = sat.extract_bits(text, self.num_vars)
            return bits is not None and sat.satisfies(self.clauses, bits)
        if self.source == "arithmetic":
            return arithmetic.check_answer(text, self.reference)
        return qa_data.check_answer(text, self.reference)


class ProblemSource:
    """Draws problems of one source; ``draw(rng)`` is deterministic in the generator's state.

    ``level``: an arithmetic level (1-6, default 2) or a SAT level ``(n, k, l)`` (default
    ``(3, 5, 5)``); ``dataset``: for ``jsonl`` (required) a JSONL file, a ``datasets`` folder or a
    cached dataset id, read by :func:`envs.qa_data.read_source` with ``question``/``answer`` (the
    column names) and ``split``, the same reader as the benchmarks'; for ``sat``, a SAT-v0 dataset
    instead of a level; ``instruction``: what follows the problem in the question
    (:data:`ANSWER_INSTRUCTION`, or LeaP's instructions for its protocol). SAT-v0's own prompt
    already asks for ``\\boxed{BITS}``, so it takes an instruction only when that is not
    :data:`ANSWER_INSTRUCTION`.
    """

    def __init__(self, source: str, level: Any = None, dataset: str | os.PathLike | None = None,
                 instruction: str = ANSWER_INSTRUCTION, *, question: str = "question",
                 answer: str = "answer", split: str | None = None) -> None:
        if source not in SOURCES:
            raise ValueError(f"source={source!r}: expected one of {SOURCES}")
        if source != "jsonl" and (question, answer, split) != ("question", "answer", None):
            raise ValueError(f"question=, answer= and split= name a dataset's columns: source='jsonl' only")
        self.source, self.instruction = source, instruction
        self.dataset = None if dataset is None else os.fspath(dataset)
        self.items: Sequence[Any] = ()
        if source == "arithmetic":
            if dataset is not None:
                raise ValueError("source='arithmetic' generates its problems: it takes level=, not dataset=")
            self.level = 2 if level is None else level
            if isinstance(self.level, bool) or self.level not in arithmetic.LEVELS:
                raise ValueError(f"level={level!r}: arithmetic levels are {sorted(arithmetic.LEVELS)}")
        elif source == "sat":
            if dataset is not None and level is not None:
                raise ValueError("level and dataset given: pass one of them for source='sat'")
            self.level = sat_env.as_level(level, "level") if level is not None else sat_env.DEFAULT_LEVEL
            if dataset is not None:
                self.items = sat_env.load_dataset(self.dataset)
        else:
            if dataset is None:
                raise ValueError("source='jsonl' needs dataset= (a file of {\"question\", \"answer\"} rows)")
            if level is not None:
                raise ValueError("source='jsonl' has no levels: drop level=")
            self.level = None
            if self.dataset.endswith((".jsonl", ".json")) and not os.path.exists(self.dataset):
                raise FileNotFoundError(f"dataset={self.dataset!r}: no such file")
            self.items = qa_data.read_source(self.dataset, question, answer, split)
        if dataset is not None and not self.items:
            raise ValueError(f"dataset={self.dataset!r}: the file has no rows")

    def draw(self, rng: np.random.Generator, index: int | None = None) -> Problem:
        """A problem: row ``index`` of the dataset if given, else a random row or a fresh one."""
        if self.items:
            if index is None:
                index = int(rng.integers(len(self.items)))
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.items):
                raise ValueError(f"index={index!r}: expected an integer in [0, {len(self.items)})")
            item = self.items[int(index)]
        elif index is not None:
            raise ValueError(f"reset option 'index' needs a dataset (source={self.source!r} has none)")
        elif self.source == "arithmetic":
            item = arithmetic.generate(self.level, rng)
        else:
            item = sat.generate(*self.level, rng=rng)
        return self._problem(item)

    def _problem(self, item: Any) -> Problem:
        if self.source == "sat":
            # SAT-v0's own prompt, which already asks for \boxed{BITS}.
            extra = "" if self.instruction == ANSWER_INSTRUCTION else f" {self.instruction}"
            return Problem("sat", sat_env.sat_prompt(item) + extra, item.solution or "",
                           tuple(tuple(c) for c in item.clauses), item.num_vars)
        question = item.question if self.source == "jsonl" else item.question.split(" Give your final")[0]
        return Problem(self.source, f"{question.strip()} {self.instruction}", str(item.answer))


__all__ = ["SOURCES", "ANSWER_INSTRUCTION", "Problem", "ProblemSource"]
