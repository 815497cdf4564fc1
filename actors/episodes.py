"""The episode loop: one loop for training, evaluation and ``selfplay play``.

Every role of a game is played by a :class:`Player`: the policy's engine (whose turns become
training samples), a frozen snapshot's engine, a fixed opponent (``random``, ``strong``), or, in
``selfplay play``, a person at the terminal. :func:`play_episode` runs one game with whatever
players it is given; :class:`EpisodeRunner` builds the players for training and evaluation specs
and plays many episodes concurrently against one engine. Every engine turn awaits
``engine.generate``, so the turns of all running episodes reach the engine as they arrive and are
batched together there (continuous batching): no game waits for the slowest game.

Limits keep a run healthy and never crash the loop:

* ``max_turns``: an episode still running after this many turns (all roles) ends *truncated*;
* ``max_prompt_tokens``: a turn whose prompt is longer ends the episode *truncated*;
* ``timeout_s``: an episode running longer ends as *timeout*.

Truncated and timed-out episodes give every role ``truncated_return`` (0 by default, which keeps
zero-sum games zero-sum).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the environment ids)
from actors.engine import Engine, SamplingSettings
from actors.leap_episodes import play_leap_episode
from actors.prompting import prompt_ids
from envs.leap_env import LeaPEnv
from envs.opponents import make_opponent
from selfplay.core.samples import SELF, Episode, Sample


@dataclass(frozen=True)
class EpisodeLimits:
    """Per-episode limits (see the module docstring)."""

    max_turns: int = 32
    max_prompt_tokens: int = 1536
    timeout_s: float = 600.0
    truncated_return: float = 0.0


@dataclass
class EpisodeSpec:
    """What to play: the game, its seed, which roles the policy plays and who plays the others.

    ``opponent`` is ``"self"`` when the policy plays every role, else a fixed opponent's name or
    the name of a frozen snapshot whose engine the runner holds.
    """

    env_id: str
    seed: int
    episode_id: str
    policy_roles: list[int]
    opponent: str = SELF
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] | None = None
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    #: Episodes on the same problem share it; their samples form one advantage group.
    group_id: str | None = None


class PromptTooLong(Exception):
    """A turn's prompt exceeds ``max_prompt_tokens``: the episode ends truncated."""


@dataclass
class Turn:
    """What a player wrote: the text the environment parses, and, for the policy, the sample."""

    text: str
    sample: Sample | None = None
    tokens: int = 0


class Player(Protocol):
    """Writes the actions of one or more roles."""

    async def act(self, env: Any, observation: str, role: int) -> Turn: ...


class FixedPlayer:
    """A fixed opponent from :mod:`envs.opponents` (``random``, ``strong``), seeded."""

    def __init__(self, env_id: str, name: str, seed: int) -> None:
        self.opponent = make_opponent(env_id, name)
        self.rng = np.random.default_rng(seed)

    async def act(self, env: Any, observation: str, role: int) -> Turn:
        return Turn(self.opponent.act(env, self.rng))


class EnginePlayer:
    """An engine answering the observation through the chat template. With ``record`` (the
    policy being trained) every turn becomes a :class:`Sample`; a snapshot records nothing."""

    def __init__(self, engine: Engine, tokenizer: Any, sampling: SamplingSettings,
                 max_prompt_tokens: int, spec: EpisodeSpec | None = None, record: bool = False) -> None:
        self.engine, self.tokenizer, self.sampling = engine, tokenizer, sampling
        self.max_prompt_tokens, self.spec, self.record = max_prompt_tokens, spec, record
        self.turn = 0

    async def act(self, env: Any, observation: str, role: int) -> Turn:
        ids = prompt_ids(self.tokenizer, observation)
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLong(f"prompt of {len(ids)} tokens > max_prompt_tokens={self.max_prompt_tokens}")
        gen = await self.engine.generate(ids, self.sampling)
        self.turn += 1
        if not (self.record and gen.token_ids and self.spec is not None):
            return Turn(gen.text)
        sample = Sample(prompt_ids=ids, response_ids=list(gen.token_ids), logprobs=list(gen.logprobs),
                        loss_mask=[1] * len(gen.token_ids), env_id=self.spec.env_id, role=role,
                        ret=0.0, episode_id=self.spec.episode_id, turn=self.turn - 1,
                        opponent=self.spec.opponent, group_id=self.spec.group_id)
        return Turn(gen.text, sample, len(gen.token_ids))


@dataclass
class _Progress:
    """What an episode has produced so far; survives a timeout."""

    samples: list[Sample] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    turns: int = 0
    tokens: int = 0
    invalid_counts: list[int] = field(default_factory=list)
    num_players: int = 2


async def play_episode(env: Any, players: dict[int, Player], limits: EpisodeLimits,
                       spec: EpisodeSpec) -> Episode:
    """Play one game of ``env`` (a :class:`envs.base.TurnBasedTextEnv`, reset here with the
    spec's seed and options) to its end, truncation or timeout; ``players[role]`` plays ``role``."""
    progress = _Progress()
    try:
        return await asyncio.wait_for(_play(env, players, limits, spec, progress), limits.timeout_s)
    except asyncio.TimeoutError:
        return _cut_short(spec, progress, limits, "timeout")


async def _play(env: Any, players: dict[int, Player], limits: EpisodeLimits, spec: EpisodeSpec,
                progress: _Progress) -> Episode:
    obs, info = env.reset(seed=spec.seed, options=spec.options)
    progress.num_players = env.num_players
    while True:
        if progress.turns >= limits.max_turns:
            return _cut_short(spec, progress, limits, "truncated")
        role = info["player"]
        try:
            turn = await players[role].act(env, obs, role)
        except PromptTooLong:
            return _cut_short(spec, progress, limits, "truncated")
        if turn.sample is not None:
            progress.samples.append(turn.sample)
        progress.tokens += turn.tokens
        obs, _, terminated, truncated, info = env.step(turn.text)
        progress.turns += 1
        progress.invalid_counts = info["invalid_counts"]
        progress.transcript.append(f"[player {role}] {turn.text.strip()!r} -> {info.get('action', 'INVALID')}")
        if terminated or truncated:
            rewards = {int(p): float(r) for p, r in info["rewards"].items()}
            outcome = "invalid" if info["invalid"] and env.invalid_action == "lose" else "finished"
            return _finish(spec, progress, rewards, outcome)


def _cut_short(spec: EpisodeSpec, progress: _Progress, limits: EpisodeLimits, outcome: str) -> Episode:
    rewards = {p: limits.truncated_return for p in range(progress.num_players)}
    return _finish(spec, progress, rewards, outcome)


def _finish(spec: EpisodeSpec, progress: _Progress, rewards: dict[int, float], outcome: str) -> Episode:
    for sample in progress.samples:
        sample.ret = rewards[sample.role]
    return Episode(
        env_id=spec.env_id, episode_id=spec.episode_id, samples=progress.samples,
        rewards=rewards, policy_roles=list(spec.policy_roles), opponent=spec.opponent,
        outcome=outcome, num_turns=progress.turns, invalid_counts=list(progress.invalid_counts),
        transcript="\n".join(progress.transcript), generated_tokens=progress.tokens)


class EpisodeRunner:
    """Plays episodes with ``engine`` for the policy's roles, and snapshots or fixed opponents in
    the others."""

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
        env = gym.make(spec.env_id, **spec.env_kwargs).unwrapped
        if isinstance(env, LeaPEnv):  # all paths at once, spliced within one assistant turn
            return await play_leap_episode(env, self.engine, self.tokenizer, spec, self.limits)
        policy = EnginePlayer(self.engine, self.tokenizer, spec.sampling, self.limits.max_prompt_tokens,
                              spec, record=True)
        snapshot = self.opponent_engines.get(spec.opponent)
        other: Player
        if snapshot is not None:
            other = EnginePlayer(snapshot, snapshot.tokenizer, spec.sampling, self.limits.max_prompt_tokens)
        elif spec.opponent != SELF:
            other = FixedPlayer(spec.env_id, spec.opponent, spec.seed + 1)
        else:
            other = policy
        players = {role: policy if role in spec.policy_roles else other for role in range(env.num_players)}
        return await play_episode(env, players, self.limits, spec)
