"""``selfplay/QA-v0``: answer one question of a benchmark file in one turn (MATH-500, AIME, GSM8K
or the shipped arithmetic file), checked against the reference by :func:`envs.qa_data.check_answer`.

The prompt is SPIRAL's evaluation template by default (``qwen3-self-play`` in its
math-evaluation-harness, what its ``evals/benchmarks/eval.sh`` runs): "Please reason step by step,
and put your final answer within \\boxed{}.", then "Question: " and the question on the next line,
as the one user message of the model's chat template (no system prompt). Any template with
``{question}`` can replace it.
"""

from __future__ import annotations

import os
import operator
from functools import lru_cache
from typing import Any

from envs.actions import last_boxed
from envs.base import TurnBasedTextEnv, TurnRequest
from envs.qa_data import QAItem, check_answer, read_source

QUESTION = "{question}"
#: SPIRAL's evaluation prompt for its Qwen3 models (its harness's ``qwen3-self-play``; LeaP appends the
#: same sentence after the question instead).
DEFAULT_TEMPLATE = "Please reason step by step, and put your final answer within \\boxed{}.\nQuestion: " + QUESTION


def check_template(template: Any) -> str:
    """``template`` if it is a string holding ``{question}`` once; ValueError otherwise."""
    if not isinstance(template, str) or template.count(QUESTION) != 1:
        raise ValueError(f"template={template!r}: expected a string holding {QUESTION} exactly once")
    return template


def render_prompt(template: str, question: str) -> str:
    """The user message: ``template`` with the question in place of ``{question}``. A plain
    replacement, not ``str.format``: templates hold ``\\boxed{}`` and questions hold braces."""
    return check_template(template).replace(QUESTION, question)


@lru_cache(maxsize=16)
def _load(source: str, question: str, answer: str, split: str | None, stamp: tuple[int, int] | None
          ) -> tuple[QAItem, ...]:
    return tuple(read_source(source, question, answer, split))


def load_items(source: str | os.PathLike, question: str = "question", answer: str = "answer",
               split: str | None = None) -> tuple[QAItem, ...]:
    """The rows of ``source``, read once per file version (every episode builds a fresh env)."""
    path = os.fspath(source)
    stamp = None
    if os.path.exists(path):
        st = os.stat(path)
        path, stamp = os.path.abspath(path), (st.st_mtime_ns, st.st_size)
    items = _load(path, question, answer, split, stamp)
    if not items:
        raise ValueError(f"{path}: no rows")
    return items


class QAEnv(TurnBasedTextEnv):
    """One question, one answer: a benchmark problem for a single language-model player.

    ## Arguments
    ``dataset`` (a JSONL file, a ``datasets`` folder or a cached dataset id: :mod:`envs.qa_data`;
    default: the shipped arithmetic benchmark, ``envs/benchmarks/arith.jsonl``),
    ``question`` and ``answer`` (its column names), ``split``, ``template`` (with ``{question}``;
    default :data:`DEFAULT_TEMPLATE`), ``max_new_tokens`` (this benchmark's answer budget; None:
    the runner's), ``correct_reward`` / ``wrong_reward``.

    ## Starting State
    ``reset(options={"index": i})`` serves row ``i``; without options a seeded random row.

    ## Rewards and stats
    ``correct_reward`` (1) when math-verify finds the reference in the reply, else
    ``wrong_reward`` (0). Every reply is a valid action (there is nothing to forfeit).
    ``info["stats"]`` at the end: ``correct`` and ``answered`` (the reply holds a ``\\boxed{}``).
    """

    title = "QA"
    num_players = 1
    system_prompt = None
    stats_prefix = "qa"

    def __init__(self, dataset: str | os.PathLike | None = None, question: str = "question", answer: str = "answer",
                 split: str | None = None, template: str = DEFAULT_TEMPLATE,
                 max_new_tokens: int | None = None, correct_reward: float = 1.0,
                 wrong_reward: float = 0.0, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self.template = check_template(template)
        if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int)
                                           or max_new_tokens < 1):
            raise ValueError(f"max_new_tokens={max_new_tokens!r}: expected an integer >= 1 or None")
        self.max_new_tokens = max_new_tokens
        self.rewards = {True: float(correct_reward), False: float(wrong_reward)}
        self.min_return = min(self.rewards.values())
        if dataset is None:  # the shipped arithmetic benchmark: the env builds without arguments
            from envs.benchmarks import ARITH
            dataset = ARITH
        self.items = load_items(dataset, question, answer, split)
        self.item = self.items[0]
        self.index = 0
        self.correct: bool | None = None
        self.answered = False

    def __len__(self) -> int:
        return len(self.items)

    def _new_game(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - {"index"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}: QA-v0 takes only 'index'")
        if "index" in options:
            raw = options["index"]
            i = -1 if isinstance(raw, bool) else operator.index(raw)
            if not 0 <= i < len(self.items):
                raise ValueError(f"index={raw!r}: expected an integer in [0, {len(self.items)})")
        else:
            i = int(self.np_random.integers(len(self.items)))
        self.index, self.item = i, self.items[i]
        self.correct, self.answered = None, False

    def current_player(self) -> int:
        return 0

    def legal_actions(self) -> None:
        return None

    def parse_action(self, text: str) -> str:
        return text if isinstance(text, str) else ""  # any reply is an answer, right or wrong

    def turn_requests(self, observation: str, info: dict[str, Any]) -> list[TurnRequest]:
        return [TurnRequest(player=0, observation=observation, max_tokens=self.max_new_tokens)]

    def _apply(self, action: str) -> None:
        self.answered = last_boxed(action) is not None
        self.correct = check_answer(action, self.item.answer)

    def _is_over(self) -> bool:
        return self.correct is not None

    def _returns(self) -> dict[int, float]:
        return {0: self.rewards[bool(self.correct)]}

    def observation(self, player: int) -> str:
        return render_prompt(self.template, self.item.question)

    def final_observation(self) -> str:
        verdict = "right" if self.correct else "wrong"
        return f"The answer is {verdict} (reference: {self.item.answer})."

    def _info(self, invalid: bool, action: str | None = None) -> dict[str, Any]:
        info = super()._info(invalid, None)
        info["index"] = self.index
        if self._done:
            info["stats"] = {"correct": float(bool(self.correct)), "answered": float(self.answered)}
        return info


__all__ = ["QAEnv", "DEFAULT_TEMPLATE", "QUESTION", "check_template", "render_prompt", "load_items"]
