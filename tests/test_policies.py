"""Several policies on one base (``policies:``): who plays each role, the plans that route turns
to adapters, and the config checks. Pure: no engine."""

from __future__ import annotations

import pytest

from actors.schedule import eval_sampling, plan_evaluation, plan_training
from selfplay.config import ConfigError, load_config
from selfplay.core.config_schema import EnvConfig, EvalConfig, PolicyConfig, RolloutConfig
from selfplay.core.policies import (DEFAULT_POLICY, check_policies, opponent_policy, policy_for,
                                    policy_names, policy_opponent, role_adapters)
from selfplay.core.samples import INITIAL, SELF

KUHN = "selfplay/KuhnPoker-v0"
BY_SEAT = [PolicyConfig("first", roles=[0]), PolicyConfig("second", roles=[1])]
BY_OPPONENT = [PolicyConfig("selfplay", opponents=["self"]), PolicyConfig("vs_fixed", opponents=["random", "strong"])]


def test_one_shared_policy_is_the_default():
    assert policy_names([]) == [DEFAULT_POLICY]
    assert policy_for([], 1, "random") == DEFAULT_POLICY
    assert role_adapters([], [0, 1], SELF) == {}  # the engine's one policy plays


def test_roles_map_to_their_adapter_whoever_the_opponent_is():
    assert policy_names(BY_SEAT) == ["first", "second"]
    for opponent in (SELF, "random", "strong", INITIAL, policy_opponent("second")):
        assert role_adapters(BY_SEAT, [0, 1], opponent) == {0: "first", 1: "second"}


def test_opponent_kinds_map_to_their_adapter_and_evaluation_opponents_count_as_self_play():
    assert policy_for(BY_OPPONENT, 0, SELF) == "selfplay"
    assert policy_for(BY_OPPONENT, 1, "strong") == "vs_fixed"
    assert policy_for(BY_OPPONENT, 1, INITIAL) == "selfplay"
    assert policy_for(BY_OPPONENT, 0, policy_opponent("vs_fixed")) == "selfplay"
    assert opponent_policy(policy_opponent("vs_fixed")) == "vs_fixed"
    assert opponent_policy("random") is None


def test_a_matchup_with_no_policy_or_two_is_refused():
    with pytest.raises(ValueError, match="no policy"):
        policy_for([PolicyConfig("a", roles=[0])], 1, SELF)
    with pytest.raises(ValueError, match="a, b all match"):
        policy_for([PolicyConfig("a"), PolicyConfig("b")], 0, SELF)


def test_training_plans_give_each_policy_role_its_adapter():
    rollout = RolloutConfig(episodes_per_step=40, self_play_fraction=0.5, opponents=["random"])
    specs = plan_training([EnvConfig(id=KUHN)], rollout, seed=3, count=40, step=1, worker=0, policies=BY_SEAT)
    assert {s.opponent for s in specs} == {SELF, "random"}
    for s in specs:
        roles = [0, 1] if s.opponent == SELF else s.policy_roles
        assert s.adapters == {r: ("first", "second")[r] for r in roles}
    # Without policies the plan is what it always was.
    plain = plan_training([EnvConfig(id=KUHN)], rollout, seed=3, count=40, step=1, worker=0)
    assert [(s.seed, s.opponent, s.policy_roles, s.adapters) for s in plain] == \
        [(s.seed, s.opponent, s.policy_roles, {}) for s in specs]


def test_head_to_head_evaluation_plays_each_seat_against_the_other_adapter_only():
    sampling = eval_sampling(RolloutConfig(), EvalConfig())
    rivals = [policy_opponent("first"), policy_opponent("second")]
    specs = plan_evaluation([EnvConfig(id=KUHN)], [KUHN], rivals, games=3, seed=0, sampling=sampling,
                            policies=BY_SEAT)
    matchups = {(s.opponent, s.policy_roles[0], s.adapters[s.policy_roles[0]]) for s in specs}
    # Never an adapter against itself: seat 0 (first) meets second, seat 1 (second) meets first.
    assert matchups == {(policy_opponent("second"), 0, "first"), (policy_opponent("first"), 1, "second")}
    assert len(specs) == 2 * 3


def _checked(policies, opponents=("random",)):
    check_policies(policies, {KUHN: 2}, list(opponents), ("random", "strong"))


def test_check_refuses_gaps_overlaps_bad_names_and_unused_policies():
    _checked(BY_SEAT)
    _checked(BY_OPPONENT, ["random", "strong"])
    with pytest.raises(ConfigError, match="role 1 of selfplay/KuhnPoker-v0 against self matches no policy"):
        _checked([PolicyConfig("first", roles=[0])])
    with pytest.raises(ConfigError, match="matches a, b"):
        _checked([PolicyConfig("a"), PolicyConfig("b", roles=[0])])
    with pytest.raises(ConfigError, match=r"policies\[1\].name='first': two policies"):
        _checked([PolicyConfig("first", roles=[0]), PolicyConfig("first", roles=[1])])
    with pytest.raises(ConfigError, match=r"policies\[0\].name='a b'"):
        _checked([PolicyConfig("a b")])
    with pytest.raises(ConfigError, match=r"policies\[0\].opponents=\['randm'\]"):
        _checked([PolicyConfig("a", opponents=["randm"])])
    with pytest.raises(ConfigError, match="c never play"):
        _checked([*BY_SEAT, PolicyConfig("c", roles=[5])])


def test_the_shipped_two_policy_config_loads_and_the_wrong_settings_are_named():
    cfg = load_config("kuhn_two_policies")
    assert [p.name for p in cfg.policies] == ["first", "second"] and cfg.trainer.lora.rank > 0
    for override, field in [("trainer.lora.rank=0", "trainer.lora.rank"),
                            ("trainer.lora.publish=merged", "trainer.lora.publish"),
                            ("rollout.backend=transformers", "rollout.backend"),
                            ("pool.snapshot_every=2", "pool.snapshot_every")]:
        with pytest.raises(ConfigError, match=field):
            load_config("kuhn_two_policies", [override])


def test_dry_run_says_who_plays_what(capsys, tiny_model):
    from selfplay.commands import cli

    assert cli.main(["train", "--config", "kuhn_two_policies", "model=tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("policies: 2 LoRA adapters on one base: first (role(s) 0 against any opponent); "
            "second (role(s) 1 against any opponent)") in out
    assert "in 2 adapters" in out  # the memory plan counts both
    assert cli.main(["train", "--config", "debug", "model=tiny", "--dry-run"]) == 0
    assert "policies: one, shared by every role (self-play)" in capsys.readouterr().out
