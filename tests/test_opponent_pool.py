"""Opponent pool: ratings move the right way, snapshots evict oldest first, state round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selfplay.league.opponent_pool import OpponentPool
from selfplay.core.samples import Episode


def episode(opponent: str, rewards: dict[int, float], roles: list[int]) -> Episode:
    return Episode(env_id="selfplay/KuhnPoker-v0", episode_id="e", samples=[], rewards=rewards,
                   policy_roles=roles, opponent=opponent)


def test_new_members_start_at_the_default_rating():
    pool = OpponentPool()
    # openskill's Plackett-Luce defaults: mu = 25, sigma = 25/3; ordinal = mu - 3 sigma = 0.
    assert pool.members == ["policy", "random", "strong"]
    assert pool.rating("random") == pytest.approx((25.0, 25.0 / 3))
    assert pool.metrics()["pool/policy/ordinal"] == pytest.approx(0.0)
    assert pool.metrics()["pool/size"] == 0.0


def test_member_that_keeps_winning_rises_above_one_that_keeps_losing():
    pool = OpponentPool()
    for _ in range(10):
        pool.record("policy", "random", 1.0)
    # Both start at mu = 25; each win moves the winner's mu up and the loser's down.
    mu_policy, _ = pool.rating("policy")
    mu_random, _ = pool.rating("random")
    assert mu_policy > 25.0 > mu_random
    m = pool.metrics()
    assert m["pool/policy/ordinal"] > m["pool/random/ordinal"]
    assert pool.rating("strong") == pytest.approx((25.0, 25.0 / 3))  # not in any game


def test_negative_score_is_a_loss_for_the_first_player():
    pool = OpponentPool()
    pool.record("policy", "strong", -0.5)
    # Only the sign counts: strong won, so it is now above the policy.
    assert pool.rating("strong")[0] > pool.rating("policy")[0]


def test_draws_between_equals_leave_mu_equal():
    pool = OpponentPool()
    for _ in range(5):
        pool.record("policy", "random", 0.0)
    # Symmetric players and a tie: no reason for either mean to move; both stay at 25.
    (mu_p, sig_p), (mu_r, sig_r) = pool.rating("policy"), pool.rating("random")
    assert mu_p == pytest.approx(mu_r) == pytest.approx(25.0)
    assert sig_p == pytest.approx(sig_r)


def test_snapshot_starts_from_current_policy_rating():
    pool = OpponentPool()
    pool.record("policy", "random", 1.0)
    name = pool.add_snapshot(10, "/ckpt/step10")
    assert name == "snapshot@10"
    assert pool.rating(name) == pool.rating("policy")
    assert pool.snapshot_path(name) == "/ckpt/step10"


def test_eviction_drops_the_oldest_snapshot_and_reports_it_once():
    pool = OpponentPool(max_snapshots=2)
    for step in (10, 20):
        pool.add_snapshot(step, f"/ckpt/{step}")
    assert pool.pop_evicted() == []  # two fit
    pool.add_snapshot(30, "/ckpt/30")
    pool.add_snapshot(40, "/ckpt/40")
    # Capacity 2: adding 30 evicts 10 (oldest), adding 40 evicts 20.
    assert pool.snapshots == ["snapshot@30", "snapshot@40"]
    assert pool.pop_evicted() == ["snapshot@10", "snapshot@20"]
    assert pool.pop_evicted() == []  # handed over once
    m = pool.metrics()
    assert "pool/snapshot@10/mu" not in m and "pool/snapshot@40/mu" in m
    assert m["pool/size"] == 2.0
    with pytest.raises(ValueError, match="name"):
        pool.snapshot_path("snapshot@10")


def test_sampling_is_deterministic_under_a_seed_and_only_returns_pool_members():
    pool = OpponentPool(max_snapshots=3)
    assert pool.sample_snapshot(np.random.default_rng(0)) is None  # empty pool
    for step in (1, 2, 3, 4):
        pool.add_snapshot(step, f"/ckpt/{step}")
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    draws_a = [pool.sample_snapshot(rng_a) for _ in range(50)]
    draws_b = [pool.sample_snapshot(rng_b) for _ in range(50)]
    assert draws_a == draws_b
    # snapshot@1 was evicted; 50 uniform draws over 3 miss one with prob 3*(2/3)^50 ~ 5e-9.
    assert set(draws_a) == {"snapshot@2", "snapshot@3", "snapshot@4"}


def test_record_episodes_ignores_self_play_and_counts_each_policy_role():
    pool = OpponentPool()
    games = pool.record_episodes([
        episode("self", {0: 1.0, 1: -1.0}, [0, 1]),       # self-play: ignored
        episode("random", {0: 1.0, 1: -1.0}, [0]),        # policy seat 0 won
        episode("random", {0: -1.0, 1: 1.0}, [1]),        # policy seat 1 won
        episode("random", {0: 1.0, 1: 1.0}, [0, 1]),      # two games, both won
    ])
    assert games == 4
    # The same four wins recorded by hand give identical ratings.
    ref = OpponentPool()
    for _ in range(4):
        ref.record("policy", "random", 1.0)
    assert pool.metrics() == pytest.approx(ref.metrics())


def test_record_episodes_skips_episodes_against_an_evicted_snapshot():
    pool = OpponentPool(max_snapshots=1)
    pool.add_snapshot(1, "/ckpt/1")
    pool.add_snapshot(2, "/ckpt/2")  # evicts snapshot@1 while its episodes were in flight
    before = pool.metrics()
    assert pool.record_episodes([episode("snapshot@1", {0: 1.0, 1: -1.0}, [0])]) == 0
    assert pool.metrics() == before
    with pytest.raises(ValueError, match="not a pool member"):
        pool.record_episodes([episode("greedy", {0: 1.0, 1: -1.0}, [0])])


def test_state_round_trip_through_json_gives_identical_metrics():
    pool = OpponentPool(max_snapshots=2)
    pool.record("policy", "random", 1.0)
    pool.add_snapshot(5, "/ckpt/5")
    pool.record("policy", "snapshot@5", 0.0)
    pool.add_snapshot(9, "/ckpt/9")
    pool.record("strong", "snapshot@9", -1.0)
    pool.add_snapshot(12, "/ckpt/12")  # evicts snapshot@5, not yet popped
    state = json.loads(json.dumps(pool.state_dict()))
    restored = OpponentPool(max_snapshots=2)
    restored.load_state_dict(state)
    assert restored.metrics() == pool.metrics()  # exact: JSON floats round-trip
    assert restored.members == pool.members
    assert restored.snapshot_path("snapshot@9") == "/ckpt/9"
    assert restored.state_dict() == pool.state_dict()
    assert restored.pop_evicted() == pool.pop_evicted() == ["snapshot@5"]


def test_load_rejects_state_with_other_fixed_opponents():
    state = OpponentPool(fixed=("random",)).state_dict()
    with pytest.raises(ValueError, match="expects"):
        OpponentPool(fixed=("random", "strong")).load_state_dict(state)


@pytest.mark.parametrize("kwargs, argument", [
    ({"max_snapshots": 0}, "max_snapshots"),
    ({"max_snapshots": 2.5}, "max_snapshots"),
    ({"fixed": "random"}, "fixed"),
    ({"fixed": ("random", "random")}, "fixed"),
    ({"fixed": ("policy",)}, "fixed"),
    ({"fixed": ("snapshot@3",)}, "fixed"),
    ({"fixed": ("a/b",)}, "fixed"),
])
def test_invalid_constructor_arguments_raise_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        OpponentPool(**kwargs)


@pytest.mark.parametrize("call, argument", [
    (lambda p: p.add_snapshot(-1, "/x"), "step"),
    (lambda p: p.add_snapshot(1, ""), "path"),
    (lambda p: p.record("policy", "nobody", 1.0), "b"),
    (lambda p: p.record("ghost", "random", 1.0), "a"),
    (lambda p: p.record("policy", "policy", 1.0), "a and b"),
    (lambda p: p.record("policy", "random", float("nan")), "score_a"),
])
def test_invalid_call_arguments_raise_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call(OpponentPool())


def test_duplicate_snapshot_step_is_rejected():
    pool = OpponentPool()
    pool.add_snapshot(3, "/ckpt/3")
    with pytest.raises(ValueError, match="step 3"):
        pool.add_snapshot(3, "/ckpt/3b")


def test_a_saved_pool_state_lists_its_snapshot_folders():
    pool = OpponentPool(max_snapshots=2)
    pool.add_snapshot(4, "/run/snapshots/step-4")
    pool.add_snapshot(8, "/run/snapshots/step-8")
    state = json.loads(json.dumps(pool.state_dict()))  # as a checkpoint's state.json holds it
    assert OpponentPool.folders_in(state) == {"/run/snapshots/step-4", "/run/snapshots/step-8"}
    assert OpponentPool.folders_in(None) == set()
