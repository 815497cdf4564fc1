"""Advantage estimators: RAE role baselines and group-normalised advantages, by hand."""

from __future__ import annotations

import json

import pytest

from learners.advantages import RAE, GroupNorm, make_estimator
from selfplay.core.config_schema import AdvantageConfig
from selfplay.core.samples import Sample


def sample(env: str, episode: str, role: int, ret: float, turn: int = 0,
           group: str | None = None, opponent: str = "self") -> Sample:
    return Sample(prompt_ids=[1], response_ids=[2], logprobs=[0.0], loss_mask=[1], env_id=env,
                  role=role, ret=ret, episode_id=episode, turn=turn, group_id=group, opponent=opponent)


def advantages(samples: list[Sample]) -> list[float]:
    return [s.advantage for s in samples]


def test_rae_subtracts_the_baseline_before_updating_it_over_steps_roles_and_envs():
    rae = RAE(decay=0.5)
    step1 = [sample("A", "e1", 0, 1.0, turn=0), sample("A", "e1", 1, -1.0, turn=1),
             sample("A", "e1", 0, 1.0, turn=2), sample("B", "f1", 0, 0.0), sample("B", "f1", 1, 0.0)]
    rae.compute(step1)
    # Every baseline starts at 0, so step 1's advantages are the returns themselves;
    # then A/0: b = 0.5*0 + 0.5*1 = 0.5 (once, although role 0 has two turns), A/1: b = -0.5.
    assert advantages(step1) == pytest.approx([1.0, -1.0, 1.0, 0.0, 0.0])
    assert rae.baselines() == pytest.approx({("A", "self", 0): 0.5, ("A", "self", 1): -0.5,
                                             ("B", "self", 0): 0.0, ("B", "self", 1): 0.0})
    step2 = [sample("A", "e2", 0, -1.0), sample("A", "e2", 1, 1.0), sample("A", "e3", 0, 1.0)]
    rae.compute(step2)
    # e2, A/0: A = -1 - 0.5 = -1.5, then b = 0.5*0.5 + 0.5*(-1) = -0.25
    # e2, A/1: A = 1 + 0.5 = 1.5, then b = 0.5*(-0.5) + 0.5*1 = 0.25
    # e3, A/0 (same batch, after e2): A = 1 - (-0.25) = 1.25, then b = 0.375
    assert advantages(step2) == pytest.approx([-1.5, 1.5, 1.25])
    assert rae.baselines()[("A", "self", 0)] == pytest.approx(0.375)
    assert rae.baselines()[("B", "self", 0)] == 0.0  # untouched by env A's episodes


def test_rae_first_advantage_is_the_return_itself_from_a_zero_baseline():
    rae = RAE()  # decay 0.95, baseline starts at 0
    s = [sample("A", "e", 0, 1.0)]
    rae.compute(s)
    assert s[0].advantage == 1.0  # R - b_old = 1 - 0: the baseline has not seen R yet
    assert rae.baselines()[("A", "self", 0)] == pytest.approx(0.05)  # 0.95*0 + 0.05*1


def test_rae_first_batch_init_starts_each_baseline_at_its_first_batch_mean():
    rae = RAE(decay=0.5, init="first_batch")
    step1 = [sample("A", "e1", 0, -2.0), sample("A", "e2", 0, -2.0), sample("A", "e3", 0, 1.0),
             sample("A", "e3", 0, 1.0, turn=2), sample("A", "e1", 1, 2.0)]
    rae.compute(step1)
    # A/0 starts at the mean of its three episodes' returns, (-2 - 2 + 1) / 3 = -1 (e3 counted
    # once), then updates as usual: e1: A = -1, b = -1.5; e2: A = -0.5, b = -1.75; e3: A = 2.75.
    # A/1 has one episode: it starts at its return, so its first advantage is 0.
    assert advantages(step1) == pytest.approx([-1.0, -0.5, 2.75, 2.75, 0.0])
    assert rae.baselines() == pytest.approx({("A", "self", 0): -0.375, ("A", "self", 1): 2.0})
    # A key met later starts at its own first batch; a known key keeps its baseline.
    step2 = [sample("A", "r1", 0, 1.0, opponent="random"), sample("A", "r2", 0, 3.0, opponent="random"),
             sample("A", "e4", 0, 0.625)]
    rae.compute(step2)
    assert advantages(step2) == pytest.approx([-1.0, 1.5, 1.0])
    state = json.loads(json.dumps(rae.state_dict()))
    restored = RAE()
    restored.load_state_dict(state)
    assert (restored.init, restored.decay) == ("first_batch", 0.5)


def test_rae_keeps_one_baseline_per_opponent_kind():
    rae = RAE(decay=0.5)
    batch = [sample("A", "r1", 0, 2.0, opponent="random"), sample("A", "s1", 0, -2.0),
             sample("A", "n1", 0, 1.0, opponent="snapshot@4"),
             sample("A", "n2", 0, 1.0, opponent="snapshot@8")]
    rae.compute(batch)
    # Keys (A, random, 0), (A, self, 0), (A, snapshot, 0): each starts at 0. Both snapshots are one
    # kind: n2 sees the baseline n1 left, 0.5*0 + 0.5*1 = 0.5.
    assert advantages(batch) == pytest.approx([2.0, -2.0, 1.0, 0.5])
    assert rae.baselines() == pytest.approx({("A", "random", 0): 1.0, ("A", "self", 0): -1.0,
                                             ("A", "snapshot", 0): 0.75})
    # A second game against random: credited against random's own baseline (1.0), not self-play's.
    again = [sample("A", "r2", 0, 2.0, opponent="random")]
    rae.compute(again)
    assert again[0].advantage == pytest.approx(1.0)


def test_rae_state_round_trips_through_json_and_continues_identically():
    rae = RAE(decay=0.9)
    rae.compute([sample("selfplay/KuhnPoker-v0", "e1", 0, 2.0), sample("selfplay/KuhnPoker-v0", "e1", 1, -2.0),
                 sample("selfplay/KuhnPoker-v0", "e2", 0, 1.0, opponent="random")])
    state = json.loads(json.dumps(rae.state_dict()))
    assert set(state["baselines"]) == {"selfplay/KuhnPoker-v0|self|0", "selfplay/KuhnPoker-v0|self|1",
                                       "selfplay/KuhnPoker-v0|random|0"}
    restored = RAE(decay=0.5)
    restored.load_state_dict(state)
    assert restored.decay == 0.9 and restored.baselines() == rae.baselines()
    a, b = [sample("selfplay/KuhnPoker-v0", "e3", 0, 1.0)], [sample("selfplay/KuhnPoker-v0", "e3", 0, 1.0)]
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


def test_grpo_on_a_game_never_mixes_roles_in_a_group():
    # Three self-play episodes of one deal (group "g"): role 0 wins 2, loses 1, wins 1; role 1
    # the negation. Mixing roles would give mean 0 and baseline nothing; per role the means are
    # 2/3 and -2/3.
    game = "selfplay/KuhnPoker-v0"
    s = []
    for e, r in zip("abc", (2.0, -1.0, 1.0)):
        s += [sample(game, e, 0, r, group="g"), sample(game, e, 1, -r, turn=1, group="g")]
    GroupNorm(normalize_std=False).compute(s)
    assert advantages(s) == pytest.approx([4 / 3, -4 / 3, -5 / 3, 5 / 3, 1 / 3, -1 / 3])
    # A sample's group holds its own role only: each role's advantages sum to zero on their own.
    for role in (0, 1):
        assert sum(x.advantage for x in s if x.role == role) == pytest.approx(0.0)


def test_grpo_keeps_a_tasks_interchangeable_players_in_one_group():
    # LeaP's paths are players of one episode; they are compared with one another.
    s = [sample("selfplay/LeaP-v0", "a", p, r, group="q") for p, r in enumerate((1.0, 0.0, 1.0, 0.0))]
    GroupNorm().compute(s)
    assert advantages(s) == pytest.approx([1, -1, 1, -1], abs=1e-5)


def test_make_estimator_picks_by_type_and_rejects_unknown():
    rae = make_estimator(AdvantageConfig(type="rae", decay=0.8))
    assert isinstance(rae, RAE) and rae.decay == 0.8
    assert isinstance(make_estimator(AdvantageConfig(type="grpo")), GroupNorm)
    with pytest.raises(ValueError, match=r"advantage.type='ppo': expected one of \['grpo', 'rae'\]"):
        make_estimator(AdvantageConfig(type="ppo"))
    with pytest.raises(ValueError, match=r"advantage.decay=1.0: expected in \[0, 1\)"):
        make_estimator(AdvantageConfig(type="rae", decay=1.0))
    assert make_estimator(AdvantageConfig(type="rae", baseline_init="first_batch")).init == "first_batch"
    with pytest.raises(ValueError, match=r"advantage.baseline_init='mean': expected one of \['zero', 'first_batch'\]"):
        make_estimator(AdvantageConfig(type="rae", baseline_init="mean"))
