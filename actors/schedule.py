"""Which episodes to play: a pure, seeded plan from the config sections (no engine, no Ray)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from actors.engine import SamplingSettings
from actors.episodes import EpisodeSpec
from envs import TASKS, num_players
from selfplay.core.config_schema import EnvConfig, EvalConfig, PolicyConfig, RolloutConfig
from selfplay.core.policies import opponent_policy, role_adapters
from selfplay.core.samples import SELF


def train_sampling(rollout: RolloutConfig) -> SamplingSettings:
    """How training turns are sampled (the behaviour policy the learner scores)."""
    return SamplingSettings(max_new_tokens=rollout.max_new_tokens, temperature=rollout.temperature,
                            top_p=rollout.top_p, min_p=rollout.min_p, top_k=rollout.top_k)


def eval_sampling(rollout: RolloutConfig, evaluation: EvalConfig) -> SamplingSettings:
    """How evaluation turns are sampled (greedy at temperature 0, without truncation)."""
    greedy = evaluation.temperature == 0
    return SamplingSettings(max_new_tokens=rollout.max_new_tokens, temperature=evaluation.temperature,
                            top_p=1.0 if greedy else evaluation.top_p,
                            min_p=0.0 if greedy else evaluation.min_p,
                            top_k=0 if greedy else evaluation.top_k)


def plan_training(envs: list[EnvConfig], rollout: RolloutConfig, seed: int, count: int, step: int,
                  worker: int, level_options: dict[str, dict[str, Any]] | None = None,
                  policies: Sequence[PolicyConfig] = ()) -> list[EpisodeSpec]:
    """``count`` training episodes for ``worker`` at ``step``: environments drawn by weight;
    self-play with probability ``self_play_fraction`` (always, for the single-agent tasks of
    ``envs.TASKS``: SAT's one seat, LeaP's paths),
    otherwise the policy takes a random role against an opponent drawn from
    ``rollout.opponents``. An environment with ``group_size`` G is played G times on each problem
    (same seed, same level: one advantage group). ``level_options`` gives the curriculum's reset
    options per environment id. With several ``policies``, each role the policy side plays gets
    its adapter (:func:`selfplay.core.policies.role_adapters`). Same inputs, same plan."""
    rng = np.random.default_rng([seed, step, worker])
    weights = np.array([e.weight for e in envs], dtype=float)
    level_options = level_options or {}
    specs: list[EpisodeSpec] = []
    while len(specs) < count:
        env_cfg = envs[int(rng.choice(len(envs), p=weights / weights.sum()))]
        problem_seed, problem = int(rng.integers(2**31)), len(specs)
        roles = list(range(num_players(env_cfg.id)))
        opponent = SELF
        if env_cfg.id not in TASKS and rng.random() >= rollout.self_play_fraction:
            roles = [int(rng.choice(roles))]
            opponent = str(rng.choice(rollout.opponents))
        group = f"s{step}-w{worker}-p{problem}" if env_cfg.group_size > 1 else None
        for _ in range(min(env_cfg.group_size, count - len(specs))):
            specs.append(EpisodeSpec(
                env_id=env_cfg.id, seed=problem_seed, episode_id=f"s{step}-w{worker}-e{len(specs)}",
                policy_roles=list(roles), opponent=opponent, env_kwargs=dict(env_cfg.kwargs),
                options=level_options.get(env_cfg.id), sampling=train_sampling(rollout), group_id=group,
                adapters=role_adapters(policies, roles, opponent)))
    return specs


def plan_evaluation(envs: list[EnvConfig], env_ids: list[str], opponents: list[str], games: int,
                    seed: int, sampling: SamplingSettings, options: dict[str, Any] | None = None,
                    repeats: int = 1, policies: Sequence[PolicyConfig] = ()) -> list[EpisodeSpec]:
    """``games`` problems per (environment, opponent, policy role), each played ``repeats`` times
    (samples for pass@k); environments configured in ``envs`` keep their keyword arguments. A
    single-agent task (``envs.TASKS``) has no opponent: the policy plays all its seats, once per
    problem, whatever ``opponents`` lists. ``options`` are reset options for every episode (a curriculum level).
    An opponent ``policy@<name>`` is another of several ``policies``: that adapter plays the other
    roles, the role's own adapter (the one it plays in self-play) the policy's."""
    kwargs = {e.id: dict(e.kwargs) for e in envs}
    specs = []
    for env_id in env_ids:
        solo = env_id in TASKS  # the policy plays every seat (SAT's one, LeaP's paths)
        seats = [list(range(num_players(env_id)))] if solo else [[r] for r in range(num_players(env_id))]
        for opponent in [SELF] if solo else opponents:
            for roles in seats:
                role, adapters = roles[0], role_adapters(policies, roles, opponent)
                if opponent_policy(opponent) in adapters.values():
                    continue  # an adapter against itself: self-play, not a head-to-head
                for g in range(games):
                    for r in range(repeats):
                        specs.append(EpisodeSpec(
                            env_id=env_id, seed=seed * 100_003 + g,
                            episode_id=f"eval-{env_id}-{opponent}-p{role}-g{g}-r{r}",
                            policy_roles=list(roles), opponent=opponent, env_kwargs=kwargs.get(env_id, {}),
                            options=options, sampling=sampling, group_id=f"eval-{env_id}-g{g}",
                            adapters=adapters))
    return specs
