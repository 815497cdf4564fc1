"""The episode runner: plays many episodes concurrently against one engine.

A plain async class, no Ray. Each episode is a coroutine; every policy turn awaits
``engine.generate``, so the turns of all running episodes reach the engine as they arrive and
are batched together there (continuous batching): no game waits for the slowest game.

Limits keep a run healthy and never crash the runner:

* ``max_turns``: an episode still running after this many turns (all seats) ends *truncated*;
* ``max_prompt_tokens``: a turn whose prompt would be longer ends the episode *truncated*;
* ``timeout_s``: an episode running longer ends as *timeout*.

Truncated and timed-out episodes give every seat ``truncated_return`` (0 by default, which keeps
zero-sum games zero-sum); their policy samples keep that return.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the environment ids)
from actors.engine import Engine, SamplingSettings
from actors.prompting import prompt_ids
from envs.opponents import make_opponent
from selfplay.types import Episode, Sample


@dataclass(frozen=True)
class EpisodeLimits:
    """Per-episode limits (see the module docstring)."""

    max_turns: int = 32
    max_prompt_tokens: int = 1536
    timeout_s: float = 600.0
    truncated_return: float = 0.0


@dataclass
class EpisodeSpec:
    """What to play: the game, its seed, which seats the policy plays and who plays the others.

    ``opponent`` is ``"self"`` when the policy plays every seat, else a fixed opponent's name or
    the name of a frozen snapshot whose engine the runner holds.
    """

    env_id: str
    seed: int
    episode_id: str
    policy_roles: list[int]
    opponent: str = "self"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] | None = None
    sampling: SamplingSettings = field(default_factory=SamplingSettings)


@dataclass
class _Progress:
    """What an episode has produced so far; survives a timeout."""

    samples: list[Sample] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    turns: int = 0
    tokens: int = 0
    invalid_counts: list[int] = field(default_factory=list)
    num_players: int = 2


class EpisodeRunner:
    """Plays episodes with ``engine`` for the policy's seats and fixed opponents elsewhere."""

    def __init__(self, engine: Engine, tokenizer: Any, limits: EpisodeLimits,
                 opponent_engines: dict[str, Engine] | None = None) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.limits = limits
        #: Engines of frozen snapshots, by opponent name (shared with the owner, who adds to it).
        self.opponent_engines = opponent_engines if opponent_engines is not None else {}

    async def run_many(self, specs: list[EpisodeSpec]) -> list[Episode]:
        """Play all episodes concurrently; results in the order of ``specs``."""
        return list(await asyncio.gather(*(self.run(spec) for spec in specs)))

    async def run(self, spec: EpisodeSpec) -> Episode:
        """Play one episode to its end, truncation or timeout."""
        progress = _Progress()
        try:
            return await asyncio.wait_for(self._play(spec, progress), self.limits.timeout_s)
        except asyncio.TimeoutError:
            return self._cut_short(spec, progress, "timeout")

    async def _play(self, spec: EpisodeSpec, progress: _Progress) -> Episode:
        env = gym.make(spec.env_id, **spec.env_kwargs).unwrapped
        obs, info = env.reset(seed=spec.seed, options=spec.options)
        progress.num_players = env.num_players
        rng = np.random.default_rng(spec.seed + 1)
        snapshot = self.opponent_engines.get(spec.opponent)
        fixed = None if spec.opponent == "self" or snapshot is not None else make_opponent(spec.env_id, spec.opponent)
        while True:
            if progress.turns >= self.limits.max_turns:
                return self._cut_short(spec, progress, "truncated")
            player = info["player"]
            mine = player in spec.policy_roles
            if mine or snapshot is not None:
                ids = prompt_ids(self.tokenizer, obs)
                if len(ids) + spec.sampling.max_new_tokens > self.limits.max_prompt_tokens:
                    return self._cut_short(spec, progress, "truncated")
                gen = await (self.engine if mine else snapshot).generate(ids, spec.sampling)
                action = gen.text
                progress.tokens += len(gen.token_ids) if mine else 0
                if mine and gen.token_ids:
                    progress.samples.append(Sample(
                        prompt_ids=ids, response_ids=list(gen.token_ids), logprobs=list(gen.logprobs),
                        loss_mask=[1] * len(gen.token_ids), env_id=spec.env_id, role=player, ret=0.0,
                        episode_id=spec.episode_id, turn=progress.turns))
            else:
                action = fixed.act(env, rng)
            obs, _, terminated, truncated, info = env.step(action)
            progress.turns += 1
            progress.invalid_counts = info["invalid_counts"]
            shown = info.get("action", "INVALID")
            progress.transcript.append(f"[player {player}] {action.strip()!r} -> {shown}")
            if terminated or truncated:
                rewards = {int(p): float(r) for p, r in info["rewards"].items()}
                outcome = "invalid" if info["invalid"] and env.invalid_action == "lose" else "finished"
                return self._finish(spec, progress, rewards, outcome)

    def _cut_short(self, spec: EpisodeSpec, progress: _Progress, outcome: str) -> Episode:
        rewards = {p: self.limits.truncated_return for p in range(progress.num_players)}
        return self._finish(spec, progress, rewards, outcome)

    @staticmethod
    def _finish(spec: EpisodeSpec, progress: _Progress, rewards: dict[int, float],
                outcome: str) -> Episode:
        for sample in progress.samples:
            sample.ret = rewards[sample.role]
        return Episode(
            env_id=spec.env_id, episode_id=spec.episode_id, samples=progress.samples,
            rewards=rewards, policy_roles=list(spec.policy_roles), opponent=spec.opponent,
            outcome=outcome, num_turns=progress.turns, invalid_counts=list(progress.invalid_counts),
            transcript="\n".join(progress.transcript), generated_tokens=progress.tokens)
