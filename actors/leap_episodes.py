"""Playing ``selfplay/LeaP-v0`` episodes on an engine: every path of a problem generates at once,
and a path grows inside one assistant turn by splicing token ids.

A path is its chat prompt (the question, through the chat template) followed by one growing
response: the ids the policy generated, then the ids of whatever the environment inserts (summary
trigger, peers' comments, the answer template), then more generated ids, and so on. Inserted text
is tokenized on its own and appended; the path's text is never re-tokenized as a whole. So every
generation's prompt extends the previous one token for token (the engine's prefix cache hits),
and the behaviour log-probs belong to exactly the tokens the learner will score. Trimming a
partial paragraph before a summary drops the last generated ids (the longest prefix whose text
fits what the environment keeps).

Each path becomes one :class:`Sample`: ``response_ids`` is the whole spliced response, with
``loss_mask`` 1 on what the policy wrote (reasoning, summaries, answer: each generated in the
context that precedes it in the sample) and 0 on every inserted token, whose log-prob is a 0.0
placeholder. The paths of one problem share a ``group_id`` (the group for ``advantage.type:
grpo``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from actors.engine import Engine
from actors.prompting import prompt_ids
from selfplay.core.samples import Episode, Sample


@dataclass
class PathTokens:
    """One path's response so far, token by token."""

    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    #: Where the last generated run starts (what a trim may shorten).
    last_start: int = 0

    def insert(self, ids: list[int]) -> None:
        """Append text the policy did not write (masked out of the loss)."""
        self.ids += ids
        self.logprobs += [0.0] * len(ids)
        self.mask += [0] * len(ids)

    def generated(self, ids: list[int], logprobs: list[float]) -> None:
        """Append what the policy wrote, with its behaviour log-probs."""
        self.last_start = len(self.ids)
        self.ids += ids
        self.logprobs += logprobs
        self.mask += [1] * len(ids)

    def trim(self, tokenizer: Any, text: str, drop_chars: int) -> None:
        """Drop the end of the last generated run ``text`` (``drop_chars`` characters): keep the
        longest token prefix whose decoded text is no longer than what is kept."""
        keep = len(text) - drop_chars
        run = self.ids[self.last_start:]
        lo, hi = 0, len(run)  # largest c with len(decode(run[:c])) <= keep, by bisection
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(tokenizer.decode(run[:mid], skip_special_tokens=True)) <= keep:
                lo = mid
            else:
                hi = mid - 1
        cut = self.last_start + lo
        del self.ids[cut:], self.logprobs[cut:], self.mask[cut:]


async def play_leap_episode(env: Any, engine: Engine, tokenizer: Any, spec: Any, limits: Any,
                            record: bool = True) -> Episode:
    """Play one LeaP episode of ``env`` (a :class:`envs.leap_env.LeaPEnv`) for ``spec`` (an
    :class:`actors.episodes.EpisodeSpec`) under ``limits`` (an ``EpisodeLimits``). The engine's
    context is ``limits.max_prompt_tokens + spec.sampling.max_new_tokens``: a turn that would not
    fit is shortened (to nothing, if need be). With ``record``, each path becomes a sample."""
    state: dict[str, Any] = {"tokens": 0}
    try:
        return await asyncio.wait_for(_play(env, engine, tokenizer, spec, limits, record, state),
                                      limits.timeout_s)
    except asyncio.TimeoutError:
        return _cut_short(env, spec, limits, "timeout", state["tokens"])


def _cut_short(env: Any, spec: Any, limits: Any, outcome: str, tokens: int = 0) -> Episode:
    """An episode that did not finish: no samples, every path ``truncated_return``."""
    n = env.num_paths
    return Episode(env_id=spec.env_id, episode_id=spec.episode_id, samples=[],
                   rewards={p: limits.truncated_return for p in range(n)}, policy_roles=list(range(n)),
                   outcome=outcome, num_turns=env.turn, invalid_counts=[0] * n, generated_tokens=tokens)


async def _play(env: Any, engine: Engine, tokenizer: Any, spec: Any, limits: Any, record: bool,
                state: dict[str, Any]) -> Episode:
    question, info = env.reset(seed=spec.seed, options=spec.options)
    prompt = prompt_ids(tokenizer, question, system=env.system_prompt)
    n = env.num_paths
    if len(prompt) > limits.max_prompt_tokens:  # nothing generated: every path truncated
        return _cut_short(env, spec, limits, "truncated")
    context = limits.max_prompt_tokens + spec.sampling.max_new_tokens
    paths = [PathTokens() for _ in range(n)]
    last_text = [""] * n

    async def turn(request: dict[str, Any]) -> dict[str, Any]:
        p, path = request["player"], paths[request["player"]]
        if request["trim_chars"]:
            path.trim(tokenizer, last_text[p], request["trim_chars"])
        if request["insert"]:
            path.insert(tokenizer.encode(request["insert"], add_special_tokens=False))
        ids = prompt + path.ids
        budget = min(request["max_tokens"], context - len(ids))
        if budget <= 0:
            return {"text": "", "finished": False, "tokens": 0}
        sampling = replace(spec.sampling, max_new_tokens=budget, stop=tuple(request["stop"]))
        gen = await engine.generate(ids, sampling)
        path.generated(list(gen.token_ids), list(gen.logprobs))
        last_text[p] = gen.text
        state["tokens"] += len(gen.token_ids)
        return {"text": gen.text, "finished": gen.finish_reason == "stop", "tokens": len(gen.token_ids)}

    while True:
        requests = [env.request(p) for p in info["pending"]]
        actions = await asyncio.gather(*(turn(r) for r in requests))
        for action in actions:
            _, _, terminated, _, info = env.step(action)
        if terminated:
            break
    rewards = {int(p): float(r) for p, r in info["rewards"].items()}
    samples = []
    if record:
        group = spec.group_id or spec.episode_id  # the N paths of one problem: one group
        samples = [Sample(prompt_ids=list(prompt), response_ids=path.ids, logprobs=path.logprobs,
                          loss_mask=path.mask, env_id=spec.env_id, role=p, ret=rewards[p],
                          episode_id=spec.episode_id, group_id=group, opponent=spec.opponent)
                   for p, path in enumerate(paths) if any(path.mask)]
    transcript = "\n\n".join(f"[path {p}, return {rewards[p]:+g}] "
                             + tokenizer.decode(path.ids, skip_special_tokens=True)
                             for p, path in enumerate(paths))
    return Episode(env_id=spec.env_id, episode_id=spec.episode_id, samples=samples, rewards=rewards,
                   policy_roles=list(range(n)), opponent=spec.opponent, outcome="finished",
                   num_turns=env.turn, invalid_counts=[0] * n, transcript=transcript,
                   generated_tokens=state["tokens"],
                   extra={f"leap/{k}": v for k, v in info["stats"].items()})


__all__ = ["PathTokens", "play_leap_episode"]
