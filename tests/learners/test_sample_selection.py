"""Which samples a step trains on: timeouts never, zero advantages optionally, a fixed number
drawn without replacement (SPIRAL's subsampling)."""

from __future__ import annotations

import numpy as np
import pytest

from learners.advantages import RAE
from learners.learner_worker import select_samples
from selfplay.core.config_schema import TrainerConfig
from selfplay.core.samples import Episode, Sample


def _episode(name: str, ret0: float, outcome: str = "finished", turns: int = 1) -> Episode:
    samples = [Sample(prompt_ids=[1], response_ids=[2], logprobs=[0.0], loss_mask=[1],
                      env_id="g", role=role, ret=ret0 if role == 0 else -ret0, episode_id=name, turn=t)
               for t in range(turns) for role in (0, 1)]
    return Episode(env_id="g", episode_id=name, samples=samples, rewards={0: ret0, 1: -ret0},
                   policy_roles=[0, 1], outcome=outcome)


def test_timed_out_episodes_are_not_trained_on_nor_credited():
    rae = RAE(decay=0.5)
    episodes = [_episode("a", 1.0), _episode("slow", 0.0, outcome="timeout", turns=3)]
    samples, stats = select_samples(episodes, rae, TrainerConfig(), np.random.default_rng(0))
    assert {s.episode_id for s in samples} == {"a"}
    assert stats["learner/dropped/timeout"] == 6 and stats["learner/samples_collected"] == 8
    assert stats["learner/samples"] == 2
    # Only episode a moved the baselines: 0.5 * 0 + 0.5 * (+-1).
    assert rae.baselines() == pytest.approx({("g", "self", 0): 0.5, ("g", "self", 1): -0.5})


def test_a_turn_limit_truncation_is_still_trained_as_a_draw():
    episodes = [_episode("long", 0.0, outcome="truncated")]
    samples, stats = select_samples(episodes, RAE(), TrainerConfig(), np.random.default_rng(0))
    assert len(samples) == 2 and all(s.advantage == 0.0 for s in samples)
    assert stats["learner/dropped/timeout"] == 0


def test_zero_advantage_samples_are_dropped_when_asked():
    # Baselines start at 0: the draw's samples have advantage 0, the win's +-1.
    episodes = [_episode("draw", 0.0), _episode("win", 1.0)]
    cfg = TrainerConfig(filter_zero_advantage=True)
    samples, stats = select_samples(episodes, RAE(), cfg, np.random.default_rng(0))
    assert {s.episode_id for s in samples} == {"win"}
    assert stats["learner/dropped/zero_advantage"] == 2


def test_samples_per_step_draws_that_many_distinct_samples_reproducibly():
    episodes = [_episode(f"e{i}", 1.0 if i % 2 else -1.0, turns=2) for i in range(10)]  # 40 samples
    cfg = TrainerConfig(samples_per_step=16)
    first, stats = select_samples(episodes, RAE(), cfg, np.random.default_rng(7))
    again, _ = select_samples(episodes, RAE(), cfg, np.random.default_rng(7))
    assert len(first) == 16 == stats["learner/samples"]
    assert len({id(s) for s in first}) == 16
    assert [(s.episode_id, s.turn, s.role) for s in first] == [(s.episode_id, s.turn, s.role) for s in again]
    few, _ = select_samples(episodes[:2], RAE(), cfg, np.random.default_rng(7))
    assert len(few) == 8  # fewer than asked: all of them


def test_grpo_groups_with_one_return_carry_no_signal_and_are_counted():
    from learners.advantages import GroupNorm

    def solo(name: str, group: str, ret: float) -> Episode:
        s = Sample(prompt_ids=[1], response_ids=[2], logprobs=[0.0], loss_mask=[1], env_id="sat",
                   role=0, ret=ret, episode_id=name, group_id=group)
        return Episode(env_id="sat", episode_id=name, samples=[s], rewards={0: ret}, policy_roles=[0])

    # Problem a: every sample solved it; problem b: one of two did.
    episodes = [solo("a1", "a", 1.0), solo("a2", "a", 1.0), solo("b1", "b", 1.0), solo("b2", "b", 0.0)]
    cfg = TrainerConfig(filter_zero_advantage=True)
    samples, stats = select_samples(episodes, GroupNorm(), cfg, np.random.default_rng(0))
    assert {s.episode_id for s in samples} == {"b1", "b2"}
    assert stats["learner/groups"] == 2 and stats["learner/uniform_groups"] == 1
    assert stats["learner/dropped/zero_advantage"] == 2
