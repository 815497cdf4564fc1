"""Which episodes to play: a pure, seeded plan from the config sections (no engine, no Ray)."""

from __future__ import annotations

import numpy as np

from actors.engine import SamplingSettings
from actors.episodes import EpisodeSpec
from envs import num_players
from selfplay.core.config_schema import EnvConfig, EvalConfig, RolloutConfig
from selfplay.core.samples import SELF


def train_sampling(rollout: RolloutConfig) -> SamplingSettings:
    """How training turns are sampled (the behaviour policy the learner scores)."""
    return SamplingSettings(max_new_tokens=rollout.max_new_tokens, temperature=rollout.temperature,
                            top_p=rollout.top_p)


def eval_sampling(rollout: RolloutConfig, evaluation: EvalConfig) -> SamplingSettings:
    """How evaluation turns are sampled (greedy at temperature 0)."""
    greedy = evaluation.temperature == 0
    return SamplingSettings(max_new_tokens=rollout.max_new_tokens, temperature=evaluation.temperature,
                            top_p=1.0 if greedy else evaluation.top_p)


def plan_training(envs: list[EnvConfig], rollout: RolloutConfig, seed: int, count: int, step: int,
                  worker: int) -> list[EpisodeSpec]:
    """``count`` training episodes for ``worker`` at ``step``: environments drawn by weight,
    self-play with probability ``self_play_fraction``, otherwise the policy takes a random role
    against an opponent drawn from ``rollout.opponents``. Same inputs, same plan."""
    rng = np.random.default_rng([seed, step, worker])
    weights = np.array([e.weight for e in envs], dtype=float)
    specs = []
    for k in range(count):
        env_cfg = envs[int(rng.choice(len(envs), p=weights / weights.sum()))]
        roles = list(range(num_players(env_cfg.id)))
        if rng.random() < rollout.self_play_fraction:
            opponent = SELF
        else:
            roles = [int(rng.choice(roles))]
            opponent = str(rng.choice(rollout.opponents))
        specs.append(EpisodeSpec(
            env_id=env_cfg.id, seed=int(rng.integers(2**31)), episode_id=f"s{step}-w{worker}-e{k}",
            policy_roles=roles, opponent=opponent, env_kwargs=dict(env_cfg.kwargs),
            sampling=train_sampling(rollout)))
    return specs


def plan_evaluation(envs: list[EnvConfig], env_ids: list[str], opponents: list[str], games: int,
                    seed: int, sampling: SamplingSettings) -> list[EpisodeSpec]:
    """``games`` episodes per (environment, opponent, policy role); environments configured in
    ``envs`` keep their keyword arguments."""
    kwargs = {e.id: dict(e.kwargs) for e in envs}
    return [EpisodeSpec(env_id=env_id, seed=seed * 100_003 + g,
                        episode_id=f"eval-{env_id}-{opponent}-p{role}-g{g}", policy_roles=[role],
                        opponent=opponent, env_kwargs=kwargs.get(env_id, {}), sampling=sampling)
            for env_id in env_ids for opponent in opponents
            for role in range(num_players(env_id)) for g in range(games)]
