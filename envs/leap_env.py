"""``selfplay/LeaP-v0``: N reasoning paths of one policy on one verifiable problem, sharing
summaries with their peers as they go (after LeaP, arXiv 2505.07787). Pure Python.

An episode runs in rounds. In segment ``r`` every path still in the pool reasons for up to
``segment_tokens`` tokens; a path that finishes (end of sequence, or ``</think>``) leaves the pool.
Between segments each pooled path is cut back to its last paragraph boundary, asked to summarise
(a recap sentence and a summary opening drawn at random from LeaP's, e.g. ``Wait, let me quickly
recap what I've concluded so far. <summarize> In short, my current conclusions are that`` ...
``</summarize>``, at most ``summary_tokens``), and a router (:func:`envs.leap.route`) hands it the
summaries of ``peers`` other pooled paths, inserted in place as a ``<comment>`` block. After
``num_segments`` segments (or when a path's token budget runs out) an unfinished path is made to
answer (``**Final Answer** \\boxed{``, at most ``answer_tokens``). A path that stopped at
``</think>`` has finished thinking but not answered (an R1-style model writes its answer after its
thinking): in the answering phase it goes on after ``</think>``, with nothing inserted, for what is
left of its budget (at least ``answer_tokens``, which every path keeps back), until the end of
sequence. With ``share=False`` the same paths reason independently: one segment as long as the
budget allows, then the answer, so the two modes spend the same token budget.

``prompt`` is what surrounds the problem: ``"cot"`` (default) appends LeaP's chain-of-thought
instruction (``Please reason step by step, and put your final answer within \\boxed{}.``, its
``MATH_cot``: its independent baseline and its LeaP-T models); ``"leap"`` appends LeaP's
instructions for its protocol (``leap_prefix_MATH``) and opens every path's answer with the model
restating them (``leap_subfix_MATH``, inserted before the first segment), as LeaP does for models
not trained for it (the R1-distilled ones).

Each path is a player: ``info["player"]`` is the acting path's index, ``num_players`` the number
of paths. ``info`` also says what that turn is:

* ``phase``: ``reasoning``, ``summarising`` or ``answering``; ``max_tokens``: its token limit;
* ``insert``: text the environment adds to the path before the policy writes (summary trigger,
  peers' comments, answer template), and ``trim_chars``: characters of the path's last reasoning
  segment dropped first (the partial paragraph); ``stop``: strings that end the turn;
* ``pending``: the paths whose turns come next in this phase, in order. Their turns do not depend
  on each other, so a runner may generate them all at once and step them in that order
  (:meth:`LeaPEnv.request` gives each one's fields).

An action is the text the policy wrote, or a mapping ``{"text": ..., "finished": bool, "tokens":
int}`` from a runner that knows whether the engine stopped at the end of sequence and how many
tokens it wrote (text alone counts as ``max_tokens`` tokens, an upper bound, and finishes a path
only at ``</think>``). The budget of ``token_budget`` generated tokens over all paths is split
evenly between them and never exceeded: every turn's limit fits what its path has left, with
``answer_tokens`` kept back for the answer.

Rewards, per path, at the end: ``correct_reward`` if the path's own final answer (what it wrote,
never its peers' words) is right, ``no_answer_reward`` if it gave none, else ``wrong_reward``.

## Version History
* v0: initial version.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from gymnasium import spaces

from envs.base import CHARSET, MAX_ACTION_CHARS, MAX_OBS_CHARS, TextEpisodeEnv, TurnRequest
from envs.leap import (LEAP_PREFIX_MATH, LEAP_SUFFIX_MATH, ROUTERS, SUMMARY_STOP, comment_block, route,
                       similarity, summary_prompt, trim_partial_paragraph)
from envs.leap_problems import ANSWER_INSTRUCTION, Problem, ProblemSource

PHASES = ("reasoning", "summarising", "answering")
#: Ends a reasoning turn early: the path has finished thinking (LeaP stops there too).
THINK_STOP = "</think>"
#: LeaP's forced answer for paths still reasoning after the last segment.
ANSWER_PROMPT = "\n\nOh, I think I have found the final answer.\n\n**Final Answer** \\boxed{"
_OPTION_KEYS = {"index", "level"}
#: ``prompt`` styles: (instruction after the problem, text opening every path's answer).
PROMPTS = {"cot": (ANSWER_INSTRUCTION, ""), "leap": (LEAP_PREFIX_MATH, LEAP_SUFFIX_MATH)}


@dataclass
class _Path:
    """One path's state. ``own`` is what the policy wrote (and the answer template that opens its
    forced answer); ``pending`` what is inserted before its next turn. ``finished``: the path ended
    its reasoning itself (``</think>`` or end of sequence) rather than being stopped; ``done``: its
    final text is written (a path that stopped at ``</think>`` is finished, not yet done)."""

    own: str = ""
    segment: str = ""
    tokens: int = 0
    pooled: bool = True
    finished: bool = False
    done: bool = False
    pending: str = ""
    summary_prompt: str = ""
    summary: str = ""
    before_peers: str | None = None
    read_peers: bool = False
    segment_answers: list[str | None] = field(default_factory=list)


def _stops_at_think(text: str) -> bool:
    """Whether ``text`` ends at ``</think>`` with nothing after it: the thinking is over and the
    answer, which an R1-style model writes after it, is still to come."""
    return text.rstrip().endswith(THINK_STOP)


def _close_summary(text: str) -> tuple[str, str]:
    """(summary, closing text to insert): the summary ends at ``</summarize>``; one cut short is
    closed by hand, completing a partial tag (as LeaP's ``normlize_summary``)."""
    if SUMMARY_STOP in text:
        return text.split(SUMMARY_STOP)[0].replace(THINK_STOP, "").strip(), ""
    for k in range(len(SUMMARY_STOP) - 1, 1, -1):
        if text.endswith(SUMMARY_STOP[:k]):
            return text[:-k].replace(THINK_STOP, "").strip(), SUMMARY_STOP[k:]
    return text.replace(THINK_STOP, "").strip(), "... " + SUMMARY_STOP


class LeaPEnv(TextEpisodeEnv):
    """See the module docstring."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    title = "LeaP"
    #: Paths at the registered defaults (``envs.num_players``); an instance has ``num_paths``.
    num_players = 4
    #: The policy answers the question itself: no game system prompt.
    system_prompt: str | None = None
    #: Episodes end by construction (segments, then the forced answer): no runner turn limit.
    bounded = True
    stats_prefix = "leap"

    def __init__(self, source: str = "arithmetic", level: Any = None, dataset: str | None = None,
                 num_paths: int = 4, segment_tokens: int = 64, num_segments: int = 2, peers: int = 4,
                 router: str = "dispersed", summary_tokens: int = 32, answer_tokens: int = 16,
                 token_budget: int | None = None, share: bool = True, correct_reward: float = 1.0,
                 wrong_reward: float = 0.0, no_answer_reward: float = 0.0, prompt: str = "cot",
                 render_mode: str | None = None, question: str = "question", answer: str = "answer",
                 split: str | None = None) -> None:
        for name, value, low in (("num_paths", num_paths, 1), ("segment_tokens", segment_tokens, 1),
                                 ("num_segments", num_segments, 1), ("peers", peers, 0),
                                 ("summary_tokens", summary_tokens, 1), ("answer_tokens", answer_tokens, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name}={value!r}: expected an integer >= {low}")
        if router not in ROUTERS:
            raise ValueError(f"router={router!r}: expected one of {ROUTERS}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode={render_mode!r}: expected None or 'ansi'")
        if prompt not in PROMPTS:
            raise ValueError(f"prompt={prompt!r}: expected one of {tuple(PROMPTS)}")
        self.prompt = prompt
        self.instruction, self.opening = PROMPTS[prompt]
        self.source = ProblemSource(source, level, dataset, self.instruction, question=question,
                                    answer=answer, split=split)
        self.num_players = self.num_paths = int(num_paths)
        self.segment_tokens, self.num_segments = int(segment_tokens), int(num_segments)
        self.peers, self.router, self.share = int(peers), router, bool(share)
        self.summary_tokens, self.answer_tokens = int(summary_tokens), int(answer_tokens)
        full = self.num_segments * self.segment_tokens + (self.num_segments - 1) * self.summary_tokens
        self.path_budget = full + self.answer_tokens
        if token_budget is not None:
            if isinstance(token_budget, bool) or not isinstance(token_budget, (int, np.integer)) \
                    or token_budget < self.num_paths * (1 + self.answer_tokens):
                raise ValueError(f"token_budget={token_budget!r}: expected an integer >= num_paths * "
                                 f"(answer_tokens + 1) = {self.num_paths * (1 + self.answer_tokens)}")
            self.path_budget = int(token_budget) // self.num_paths
        self.token_budget = self.path_budget * self.num_paths
        self.rewards = {"correct": float(correct_reward), "wrong": float(wrong_reward),
                        "no_answer": float(no_answer_reward)}
        self.render_mode = render_mode
        self.observation_space = spaces.Text(max_length=MAX_OBS_CHARS, charset=CHARSET)
        self.action_space = spaces.Text(max_length=MAX_ACTION_CHARS, charset=CHARSET)
        self.problem: Problem | None = None
        self.paths: list[_Path] = []
        self.phase, self.segment, self.queue, self.turn = "reasoning", 0, [], 0
        self.stats: dict[str, float] = {}
        self._rewards: dict[int, float] = {}
        #: Each path's final answer (None: none), set when the episode ends.
        self.answers: list[str | None] = []

    # ----- Gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - _OPTION_KEYS, key=str)
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}: expected some of {sorted(_OPTION_KEYS)}")
        source = self.source
        if "level" in options:
            source = ProblemSource(self.source.source, options["level"], None, self.instruction)
        self.problem = source.draw(self.np_random, options.get("index"))
        self.paths = [_Path(pending=self.opening) for _ in range(self.num_paths)]
        self.phase, self.segment, self.turn = "reasoning", 0, 0
        self.stats, self._rewards, self.answers = {}, {}, []
        self.queue = [p for p in range(self.num_paths) if self._can_act(p)] or self._pending_or_advance()
        return self.problem.question, self._info()

    def step(self, action: str | Mapping[str, Any]):
        if not self.queue:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        p, req = self.queue[0], self.request(self.queue[0])
        text, finished, tokens = self._read_action(action, req["max_tokens"])
        path = self.paths[p]
        path.tokens += tokens
        self.turn += 1
        if self.phase == "reasoning":
            path.pending, path.segment = "", text
            path.own += text
            if finished or THINK_STOP in text:
                # Out of the pool either way; a path stopped at </think> still answers (phase
                # "answering"), one that ended its response or wrote past </think> has answered.
                path.pooled, path.finished, path.done = False, True, not _stops_at_think(text)
        elif self.phase == "summarising":
            kept = path.segment[:len(path.segment) - req["trim_chars"]]
            path.own = path.own[:len(path.own) - len(path.segment)] + kept + text
            path.segment = ""
            path.summary, path.pending = _close_summary(text)
        else:
            if not path.finished:  # the forced answer's template is part of the answer read
                path.own += req["insert"][req["insert"].rfind("**Final Answer**"):]
            path.own += text
            path.pooled, path.done, path.pending = False, True, ""
        self.queue.pop(0)
        if not self.queue:
            self.queue = self._pending_or_advance()
        if self.queue:
            return self.problem.question, 0.0, False, False, self._info()
        return self._final_observation(), self._rewards.get(p, 0.0), True, False, self._info()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return "\n\n".join(f"[path {i}] {p.own}" for i, p in enumerate(self.paths))

    # ----- turns -------------------------------------------------------------------------------
    def remaining(self, p: int) -> int:
        """Tokens path ``p`` may still generate."""
        return self.path_budget - self.paths[p].tokens

    def request(self, p: int) -> dict[str, Any]:
        """What path ``p``'s turn in the current phase is (the per-turn ``info`` fields)."""
        path, left = self.paths[p], self.remaining(p)
        if self.phase == "reasoning":
            length = self.segment_tokens if self.share else self.path_budget - self.answer_tokens
            limit, insert, trim, stop = min(length, left - self.answer_tokens), path.pending, 0, [THINK_STOP]
        elif self.phase == "summarising":
            limit = min(self.summary_tokens, left - self.answer_tokens)
            trim = len(path.segment) - len(trim_partial_paragraph(path.segment))
            insert, stop = "\n\n" + path.summary_prompt, [SUMMARY_STOP]
        elif path.finished:  # it answers after its </think>, in its own words, up to its budget
            limit, insert, trim, stop = left, path.pending, 0, []
        else:
            limit, insert, trim, stop = min(self.answer_tokens, left), path.pending + ANSWER_PROMPT, 0, []
        return {"player": p, "phase": self.phase, "max_tokens": max(limit, 0), "insert": insert,
                "trim_chars": trim, "stop": stop, "segment": self.segment}

    def turn_requests(self, observation: str, info: dict[str, Any]) -> list[TurnRequest]:
        """Every pending path's turn: each continues its own answer to the question, token by
        token (the runner splices the inserted text in); they may be generated at once."""
        out = []
        for p in info.get("pending", []):
            r = self.request(p)
            out.append(TurnRequest(player=p, observation=self.problem.question, extends=True,
                                   insert=r["insert"], trim_chars=r["trim_chars"],
                                   max_tokens=r["max_tokens"], stop=tuple(r["stop"])))
        return out

    def _read_action(self, action: Any, limit: int) -> tuple[str, bool, int]:
        if isinstance(action, str):
            return action, False, limit
        if not isinstance(action, Mapping) or not isinstance(action.get("text"), str):
            raise ValueError(f"action={action!r}: expected text or {{'text', 'finished', 'tokens'}}")
        tokens = action.get("tokens", limit)
        if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or not 0 <= tokens <= limit:
            raise ValueError(f"tokens={tokens!r}: expected an integer in [0, {limit}] (this turn's max_tokens)")
        return action["text"], bool(action.get("finished", False)), int(tokens)

    def _pending_or_advance(self) -> list[int]:
        """The next phase's paths, skipping phases no path can take; [] once all are done."""
        while True:
            queue = self._advance()
            if queue is None:
                return []
            queue = [p for p in queue if self._can_act(p)]
            if queue:
                return queue

    def _can_act(self, p: int) -> bool:
        if self.phase == "answering" or self.request(p)["max_tokens"] > 0:
            return True
        self.paths[p].pooled = False  # its budget is spent before the answer: it answers next
        return False

    def _advance(self) -> list[int] | None:
        """Move to the phase after the current one; the paths it concerns, or None at the end."""
        if self.phase == "reasoning":
            self._record_segment()
            last = not self.share or self.segment >= self.num_segments - 1
            pooled = [i for i, p in enumerate(self.paths) if p.pooled]
            if last or not pooled:
                self.phase = "answering"
                return [i for i, p in enumerate(self.paths) if not p.done]
            self.phase = "summarising"
            for i in pooled:  # drawn once per summary: every request() of the turn must agree
                self.paths[i].summary_prompt = summary_prompt(self.np_random)
            return pooled
        if self.phase == "summarising":
            self._route([i for i, p in enumerate(self.paths) if p.pooled])
            self.phase, self.segment = "reasoning", self.segment + 1
            return [i for i, p in enumerate(self.paths) if p.pooled]
        self._finish()
        return None

    def _route(self, pool: list[int]) -> None:
        summaries = [self.paths[i].summary for i in pool]
        routes = route(summaries, self.peers, self.router, seed=int(self.np_random.integers(2**31)))
        sims = []
        for i, chosen in zip(pool, routes):
            path = self.paths[i]
            if not path.read_peers:
                path.before_peers, path.read_peers = self.problem.answer(path.own), True
            peers = [summaries[j] for j in chosen]
            sims += [similarity(path.summary, s) for s in peers]
            path.pending = path.pending + " " + comment_block(peers) + "\n\n"
        seg = f"seg{self.segment}"
        self.stats[f"{seg}/similarity"] = float(np.mean(sims)) if sims else 0.0
        self.stats[f"{seg}/summary_chars"] = float(np.mean([len(s) for s in summaries])) if summaries else 0.0
        self.stats[f"{seg}/routed_paths"] = float(len(pool))

    def _record_segment(self) -> None:
        answers = [self.problem.answer(p.own) for p in self.paths]
        right = [a is not None and self.problem.check(f"\\boxed{{{a}}}") for a in answers]
        self.stats[f"seg{self.segment}/accuracy"] = float(np.mean(right))
        self.stats[f"seg{self.segment}/finished"] = float(np.mean([p.finished for p in self.paths]))

    def _finish(self) -> None:
        problem = self.problem
        self.answers = final = [problem.answer(p.own) for p in self.paths]
        correct = [a is not None and problem.check(p.own) for p, a in zip(self.paths, final)]
        self._rewards = {i: self.rewards["no_answer" if a is None else "correct" if ok else "wrong"]
                         for i, (a, ok) in enumerate(zip(final, correct))}
        votes = Counter(a for a in final if a is not None)
        majority = votes.most_common(1)[0][0] if votes else None
        changed = better = worse = readers = 0
        for path, answer, ok in zip(self.paths, final, correct):
            if not path.read_peers:
                continue
            readers += 1
            before = path.before_peers
            if before is not None and answer is not None and answer != before:
                changed += 1
                was = problem.check(f"\\boxed{{{before}}}")
                better += int(ok and not was)
                worse += int(was and not ok)
        self.stats.update({
            "pass_at_1": float(np.mean(correct)),
            "cons_at_n": float(majority is not None and problem.check(f"\\boxed{{{majority}}}")),
            "answered": float(np.mean([a is not None for a in final])),
            "finished": float(np.mean([p.finished for p in self.paths])),
            "tokens": float(sum(p.tokens for p in self.paths)),
            "read_peers": float(readers), "answer_changes": float(changed),
            "changes_better": float(better), "changes_worse": float(worse)})

    # ----- info --------------------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"turn": self.turn, "invalid": False, "invalid_counts": [0] * self.num_paths}
        if self.queue:
            info.update(self.request(self.queue[0]))
            info["pending"] = list(self.queue)
        else:
            info.update(player=-1, rewards=dict(self._rewards), stats=dict(self.stats),
                        answers=list(self.answers))
        return info

    def _final_observation(self) -> str:
        right = sum(r == self.rewards["correct"] for r in self._rewards.values())
        return (f"The LeaP episode is over: {right} of {self.num_paths} paths answered correctly "
                f"(reference answer: {self.problem.reference or 'any satisfying assignment'}).")


__all__ = ["LeaPEnv", "PHASES", "PROMPTS", "THINK_STOP", "ANSWER_PROMPT"]
