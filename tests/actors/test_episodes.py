"""The episode runner with the real vLLM engine on the tiny model (random weights: its output is
garbage, which is exactly what the invalid-action and limit paths must survive)."""

from __future__ import annotations

import asyncio

import pytest
from engine_helpers import vllm_engine

import envs
from actors.engine import SamplingSettings
from actors.episodes import EpisodeLimits, EpisodeRunner, EpisodeSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tiny_model):
    yield from vllm_engine(tiny_model, dtype="float32", seed=0, max_model_len=2048, kv_cache_gib=1)


def _run(engine, specs, **limits):
    runner = EpisodeRunner(engine, engine.tokenizer, EpisodeLimits(**limits))
    return asyncio.run(runner.run_many(specs))


def _spec(env_id, k=0, roles=(0, 1), opponent="self", max_new_tokens=8, **kwargs):
    return EpisodeSpec(env_id=env_id, seed=k, episode_id=f"{env_id}-{k}", policy_roles=list(roles),
                       opponent=opponent, env_kwargs=kwargs,
                       sampling=SamplingSettings(max_new_tokens=max_new_tokens, temperature=1.0))


def test_self_play_of_every_game_runs_to_the_end_with_correct_roles_returns_and_masks(engine):
    # invalid_action="random" replaces each garbage answer by a random legal move, so games go on.
    specs = [_spec(env_id, k, invalid_action="random") for env_id in envs.GAMES for k in range(2)]
    episodes = _run(engine, specs, max_turns=200)
    for ep in episodes:
        assert ep.outcome == "finished", (ep.env_id, ep.outcome)
        assert sum(ep.rewards.values()) == pytest.approx(0.0)
        assert {s.role for s in ep.samples} == {0, 1}  # both seats written by the policy
        assert len(ep.samples) == ep.num_turns  # one sample per policy turn
        for s in ep.samples:
            assert s.ret == ep.rewards[s.role]
            assert len(s.response_ids) == len(s.logprobs) == len(s.loss_mask) and all(s.loss_mask)
            assert all(lp <= 0.0 for lp in s.logprobs)
            assert s.env_id == ep.env_id and s.episode_id == ep.episode_id
        assert sum(ep.invalid_counts) == ep.num_turns  # the tiny model never answers legally


def test_garbage_under_the_lose_rule_ends_the_game_against_its_author(engine):
    (ep,) = _run(engine, [_spec("selfplay/TicTacToe-v0", 3)])
    assert ep.outcome == "invalid" and ep.num_turns == 1 and ep.forfeit == 0
    assert ep.rewards == {0: -1.0, 1: 0.0} and ep.samples[0].ret == -1.0  # a forfeit pays nobody


def test_against_a_fixed_opponent_only_the_policy_seat_yields_samples(engine):
    (ep,) = _run(engine, [_spec("selfplay/ConnectFour-v0", 1, roles=[1], opponent="random",
                                invalid_action="random")], max_turns=200)
    assert ep.outcome == "finished" and ep.opponent == "random"
    assert ep.samples and {s.role for s in ep.samples} == {1}
    assert len(ep.samples) == ep.num_turns // 2  # the opponent moved first, then they alternate


def test_overlong_output_is_cut_at_the_token_limit_and_is_just_an_invalid_move(engine):
    (ep,) = _run(engine, [_spec("selfplay/KuhnPoker-v0", 0, max_new_tokens=300)])
    assert ep.outcome == "invalid" and len(ep.samples[0].response_ids) <= 300


def test_overlong_prompt_truncates_the_episode_with_the_documented_return(engine):
    (ep,) = _run(engine, [_spec("selfplay/LiarsDice-v0", 0)], max_prompt_tokens=64,
                 truncated_return=0.0)
    assert ep.outcome == "truncated" and ep.rewards == {0: 0.0, 1: 0.0} and ep.samples == []


def test_turn_limit_truncates_and_gives_every_sample_the_truncated_return(engine):
    (ep,) = _run(engine, [_spec("selfplay/ConnectFour-v0", 0, invalid_action="random")], max_turns=3)
    assert ep.outcome == "truncated" and ep.num_turns == 3
    assert [s.ret for s in ep.samples] == [0.0, 0.0, 0.0]


def test_timeout_ends_the_episode_and_the_engine_keeps_working(engine):
    (ep,) = _run(engine, [_spec("selfplay/TicTacToe-v0", 0, max_new_tokens=256)], timeout_s=0.01)
    assert ep.outcome == "timeout" and ep.rewards == {0: 0.0, 1: 0.0}
    (again,) = _run(engine, [_spec("selfplay/TicTacToe-v0", 1)])
    assert again.outcome == "invalid"


def test_learner_log_probs_match_the_engine_behaviour_log_probs_at_the_sampling_temperature(engine, tiny_model):
    # The PPO ratio is exp(learner - behaviour): both must describe the same tempered policy.
    from learners.learner import Learner
    from selfplay.config import TrainerConfig
    from selfplay.core.samples import Sample

    prompt = list(range(100, 140))
    gen = asyncio.run(engine.generate(prompt, SamplingSettings(max_new_tokens=16, temperature=0.7)))
    sample = Sample(prompt_ids=prompt, response_ids=gen.token_ids, logprobs=gen.logprobs,
                    loss_mask=[1] * len(gen.token_ids), env_id="x", role=0, ret=0.0, episode_id="e")
    learner = Learner(tiny_model, TrainerConfig(dtype="float32", device="cpu"), temperature=0.7)
    (recomputed,) = learner.logprobs([sample])
    diffs = [abs(a - b) for a, b in zip(recomputed, gen.logprobs)]
    assert len(diffs) == len(gen.token_ids) and max(diffs) < 1e-3, diffs
    untempered = Learner(tiny_model, TrainerConfig(dtype="float32", device="cpu")).logprobs([sample])[0]
    assert max(abs(a - b) for a, b in zip(untempered, gen.logprobs)) > 1e-3  # temperature matters
