"""Which episodes to play: a pure, seeded plan from the config (no engine, no Ray)."""

from __future__ import annotations

import numpy as np

from actors.engine import SamplingSettings
from actors.episodes import EpisodeSpec
from envs import num_players
from selfplay.config import Config


def train_sampling(cfg: Config) -> SamplingSettings:
    r = cfg.rollout
    return SamplingSettings(max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p)


def plan_training(cfg: Config, count: int, step: int, worker: int) -> list[EpisodeSpec]:
    """``count`` training episodes for ``worker`` at ``step``: environments drawn by weight,
    self-play with probability ``self_play_fraction``, otherwise the policy takes a random seat
    against an opponent drawn from ``rollout.opponents``. Same inputs, same plan."""
    rng = np.random.default_rng([cfg.seed, step, worker])
    weights = np.array([e.weight for e in cfg.envs], dtype=float)
    specs = []
    for k in range(count):
        env_cfg = cfg.envs[int(rng.choice(len(cfg.envs), p=weights / weights.sum()))]
        seats = list(range(num_players(env_cfg.id)))
        if rng.random() < cfg.rollout.self_play_fraction:
            roles, opponent = seats, "self"
        else:
            roles = [int(rng.choice(seats))]
            opponent = str(rng.choice(cfg.rollout.opponents))
        specs.append(EpisodeSpec(
            env_id=env_cfg.id, seed=int(rng.integers(2**31)), episode_id=f"s{step}-w{worker}-e{k}",
            policy_roles=roles, opponent=opponent, env_kwargs=dict(env_cfg.kwargs),
            sampling=train_sampling(cfg)))
    return specs


def plan_evaluation(cfg: Config, env_ids: list[str], opponents: list[str], games: int,
                    seed: int) -> list[EpisodeSpec]:
    """``games`` episodes per (environment, opponent, policy seat), with evaluation sampling."""
    sampling = SamplingSettings(max_new_tokens=cfg.rollout.max_new_tokens,
                                temperature=cfg.eval.temperature, top_p=1.0 if cfg.eval.temperature == 0 else cfg.rollout.top_p)
    kwargs = {e.id: dict(e.kwargs) for e in cfg.envs}
    specs = []
    for env_id in env_ids:
        for opponent in opponents:
            for seat in range(num_players(env_id)):
                for g in range(games):
                    specs.append(EpisodeSpec(
                        env_id=env_id, seed=seed * 100_003 + g, episode_id=f"eval-{env_id}-{opponent}-p{seat}-g{g}",
                        policy_roles=[seat], opponent=opponent, env_kwargs=kwargs.get(env_id, {}),
                        sampling=sampling))
    return specs
