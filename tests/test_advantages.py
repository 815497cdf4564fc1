"""Advantage estimators: RAE role baselines and group-normalised advantages, by hand."""

from __future__ import annotations

import json

import pytest

from selfplay.advantages import RAE, GroupNorm, make_estimator
from selfplay.config_schema import AdvantageConfig
from selfplay.types import Sample


def sample(env: str, episode: str, role: int, ret: float, turn: int = 0,
           group: str | None = None) -> Sample:
    return Sample(prompt_ids=[1], response_ids=[2], logprobs=[0.0], loss_mask=[1], env_id=env,
                  role=role, ret=ret, episode_id=episode, turn=turn, group_id=group)


def advantages(samples: list[Sample]) -> list[float]:
    return [s.advantage for s in samples]


def test_rae_subtracts_updated_role_baseline_over_steps_roles_and_envs():
    rae = RAE(decay=0.5)
    step1 = [sample("A", "e1", 0, 1.0, turn=0), sample("A", "e1", 1, -1.0, turn=1),
             sample("A", "e1", 0, 1.0, turn=2), sample("B", "f1", 0, 0.0), sample("B", "f1", 1, 0.0)]
    rae.compute(step1)
    # A/0: b = 0.5*0 + 0.5*1 = 0.5 (once, although role 0 has two turns) -> A = 1 - 0.5 = 0.5
    # A/1: b = 0.5*0 + 0.5*(-1) = -0.5 -> A = -1 + 0.5 = -0.5;  B/0, B/1: b = 0, A = 0
    assert advantages(step1) == pytest.approx([0.5, -0.5, 0.5, 0.0, 0.0])
    assert rae.baselines() == pytest.approx({("A", 0): 0.5, ("A", 1): -0.5, ("B", 0): 0.0,
                                             ("B", 1): 0.0})
    step2 = [sample("A", "e2", 0, -1.0), sample("A", "e2", 1, 1.0), sample("A", "e3", 0, 1.0)]
    rae.compute(step2)
    # e2, A/0: b = 0.5*0.5 + 0.5*(-1) = -0.25 -> A = -1 + 0.25 = -0.75
    # e2, A/1: b = 0.5*(-0.5) + 0.5*1 = 0.25 -> A = 1 - 0.25 = 0.75
    # e3, A/0 (same batch, after e2): b = 0.5*(-0.25) + 0.5*1 = 0.375 -> A = 1 - 0.375 = 0.625
    assert advantages(step2) == pytest.approx([-0.75, 0.75, 0.625])
    assert rae.baselines()[("B", 0)] == 0.0  # untouched by env A's episodes


def test_rae_first_advantage_is_decay_times_return_from_zero_baseline():
    rae = RAE()  # decay 0.95, baseline starts at 0
    s = [sample("A", "e", 0, 1.0)]
    rae.compute(s)
    # b = 0.95*0 + 0.05*1 = 0.05 -> A = 1 - 0.05 = 0.95 = decay * (R - b_old)
    assert s[0].advantage == pytest.approx(0.95)


def test_rae_state_round_trips_through_json_and_continues_identically():
    rae = RAE(decay=0.9)
    rae.compute([sample("selfplay/KuhnPoker-v0", "e1", 0, 2.0), sample("selfplay/KuhnPoker-v0", "e1", 1, -2.0)])
    state = json.loads(json.dumps(rae.state_dict()))
    assert set(state["baselines"]) == {"selfplay/KuhnPoker-v0|0", "selfplay/KuhnPoker-v0|1"}
    restored = RAE(decay=0.5)
    restored.load_state_dict(state)
    assert restored.decay == 0.9 and restored.baselines() == rae.baselines()
    a, b = [sample("selfplay/KuhnPoker-v0", "e2", 0, 1.0)], [sample("selfplay/KuhnPoker-v0", "e2", 0, 1.0)]
    rae.compute(a)
    restored.compute(b)
    assert advantages(a) == advantages(b)


def test_grpo_normalises_within_group_counting_each_episode_once():
    gn = GroupNorm()
    # Episode a has three turns but one return; group returns are [1, 0, 1, 0]: mean 0.5, std 0.5.
    s = [sample("sat", "a", 0, 1.0, turn=t, group="g") for t in range(3)]
    s += [sample("sat", "b", 0, 0.0, group="g"), sample("sat", "c", 0, 1.0, group="g"),
          sample("sat", "d", 0, 0.0, group="g")]
    gn.compute(s)
    # (1 - 0.5) / 0.5 = 1 and (0 - 0.5) / 0.5 = -1
    assert advantages(s) == pytest.approx([1, 1, 1, -1, 1, -1], abs=1e-5)


def test_grpo_without_std_normalisation_only_centres():
    gn = make_estimator(AdvantageConfig(type="grpo", normalize_std=False))
    s = [sample("sat", "a", 0, 3.0, group="g"), sample("sat", "b", 0, 1.0, group="g")]
    gn.compute(s)
    assert advantages(s) == pytest.approx([1.0, -1.0])  # mean 2


def test_grpo_singleton_group_is_zero():
    s = [sample("sat", "a", 0, 5.0, group="alone"), sample("sat", "b", 0, 1.0, group="g2"),
         sample("sat", "c", 0, 1.0, group="g2")]
    GroupNorm().compute(s)
    assert advantages(s) == [0.0, 0.0, 0.0]  # alone; then equal returns (std 0) give 0 as well


def test_make_estimator_picks_by_type_and_rejects_unknown():
    rae = make_estimator(AdvantageConfig(type="rae", decay=0.8))
    assert isinstance(rae, RAE) and rae.decay == 0.8
    assert isinstance(make_estimator(AdvantageConfig(type="grpo")), GroupNorm)
    with pytest.raises(ValueError, match="known types"):
        make_estimator(AdvantageConfig(type="ppo"))
