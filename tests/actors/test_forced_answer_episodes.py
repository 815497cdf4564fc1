"""Forced-answer episodes (``answer_prefix``) on both real engines, with the built-in SmolLM2
(real weights, so it closes the box): the prefix sits between the chat prompt and the generated
tokens with loss mask 0, generation stops at the closing brace, answers are a few tokens, and the
behaviour log-probs are exactly the generated tokens' (recomputed by a float32 transformers
forward pass over prompt + prefix + answer).

Constrained answers (``answer_choices``) on the same engines: one token among the legal actions'
tokens, never invalid, and the behaviour log-prob is that of the distribution renormalised over
them, which the learner's own scoring (``collate`` + ``gathered_logprobs``) reproduces."""

from __future__ import annotations

import asyncio

import pytest
import torch
from engine_helpers import load_hf, recompute_logprobs, vllm_engine

from actors.engine import EngineSettings, SamplingSettings
from actors.episodes import EpisodeLimits, EpisodeRunner, EpisodeSpec

pytestmark = pytest.mark.slow
KUHN = "selfplay/KuhnPoker-v0"
BOX = "\\boxed{"
GAMES = 4
#: |engine - float32 reference| per token: both sides compute in float32.
TOLERANCE = {"transformers": 1e-3, "vllm": 2e-2}


class Recording:
    """The engine, with every request's prompt, answer and settings kept."""

    def __init__(self, engine):
        self.engine, self.tokenizer, self.calls = engine, engine.tokenizer, []

    async def generate(self, prompt_ids, sampling):
        gen = await self.engine.generate(prompt_ids, sampling)
        self.calls.append((list(prompt_ids), gen, sampling))
        return gen


@pytest.fixture(scope="module", params=["transformers", "vllm"])
def engine(request, smollm2):
    if request.param == "vllm":
        for eng in vllm_engine(smollm2, dtype="float32", seed=0, max_model_len=1024, kv_cache_gib=1):
            eng.backend = "vllm"
            yield eng
        return
    from actors.hf_engine import TransformersEngine

    eng = asyncio.run(TransformersEngine(smollm2, EngineSettings(dtype="float32", seed=0)).init())
    eng.backend = "transformers"
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def reference(smollm2):
    return load_hf(smollm2)


@pytest.fixture(scope="module")
def played(engine):
    recording = Recording(engine)
    # invalid_action="random": an invalid answer does not end the hand, so turns after the first
    # are played too; rollout's own max_new_tokens (64) is not what limits a forced answer.
    specs = [EpisodeSpec(KUHN, seed=k, episode_id=f"fa{k}", policy_roles=[0, 1],
                         env_kwargs={"answer_prefix": BOX, "invalid_action": "random"},
                         sampling=SamplingSettings(max_new_tokens=64, temperature=1.0, seed=k))
             for k in range(GAMES)]
    runner = EpisodeRunner(recording, engine.tokenizer, EpisodeLimits())
    return asyncio.run(runner.run_many(specs)), recording


def test_prefix_ids_sit_between_prompt_and_answer_masked_out_of_the_loss(engine, played):
    episodes, recording = played
    prefix = engine.tokenizer.encode(BOX, add_special_tokens=False)
    samples = [s for ep in episodes for s in ep.samples]
    assert len(samples) == len(recording.calls) >= GAMES
    for s in samples:
        answer = s.response_ids[len(prefix):]
        assert s.response_ids[:len(prefix)] == prefix
        assert s.loss_mask == [0] * len(prefix) + [1] * len(answer)
        assert s.logprobs[:len(prefix)] == [0.0] * len(prefix)
        assert len(s.logprobs) == len(s.response_ids) and all(lp <= 0 for lp in s.logprobs[len(prefix):])
        # The engine was asked to continue prompt + prefix and wrote exactly the answer.
        calls = [c for c in recording.calls if c[1].token_ids == answer and c[0] == s.prompt_ids + prefix]
        assert calls and all(c[2].stop[0] == "}" and c[2].max_new_tokens == 8 for c in calls)


def test_answers_stop_at_the_closing_brace_in_a_few_tokens(engine, played):
    episodes, recording = played
    closed = 0
    for _, gen, _ in recording.calls:
        assert 1 <= len(gen.token_ids) <= 8
        if "}" in engine.tokenizer.decode(gen.token_ids, skip_special_tokens=True):
            closed += 1  # stopped at the token that closed the box, and said so
            assert gen.finish_reason == "stop"
            assert "}" not in engine.tokenizer.decode(gen.token_ids[:-1], skip_special_tokens=True)
    print(f"{engine.backend}: {closed}/{len(recording.calls)} answers closed:",
          sorted({gen.text for _, gen, _ in recording.calls}))
    assert closed >= len(recording.calls) // 2  # SmolLM2 closes the box it was handed
    # Read strictly: a reply whose box holds no Kuhn action is invalid (played at random here).
    not_actions = sum(gen.text.split("}")[0].strip().lower() not in ("check", "bet", "call", "fold")
                      or "}" not in gen.text for _, gen, _ in recording.calls)
    assert sum(sum(ep.invalid_counts) for ep in episodes) >= not_actions
    assert all(ep.outcome == "finished" for ep in episodes)


def test_behaviour_logprobs_are_the_generated_tokens_own(engine, played, reference):
    episodes, _ = played
    prefix = engine.tokenizer.encode(BOX, add_special_tokens=False)
    worst = 0.0
    for s in (s for ep in episodes for s in ep.samples):
        answer = s.response_ids[len(prefix):]
        expected = recompute_logprobs(reference, s.prompt_ids + prefix, answer, temperature=1.0)
        worst = max(worst, max(abs(a - b) for a, b in zip(s.logprobs[len(prefix):], expected)))
    assert worst < TOLERANCE[engine.backend], worst


CHOICE_T = 0.7  # not 1, so that the learner's tempering is checked too


@pytest.fixture(scope="module")
def chosen(engine):
    recording = Recording(engine)
    specs = [EpisodeSpec(KUHN, seed=k, episode_id=f"ch{k}", policy_roles=[0, 1],
                         env_kwargs={"answer_prefix": BOX, "answer_choices": True},
                         sampling=SamplingSettings(max_new_tokens=64, temperature=CHOICE_T, seed=k))
             for k in range(2 * GAMES)]
    runner = EpisodeRunner(recording, engine.tokenizer, EpisodeLimits())
    return asyncio.run(runner.run_many(specs)), recording


def test_constrained_answers_are_one_legal_token_and_never_invalid(engine, chosen):
    episodes, recording = chosen
    tok = engine.tokenizer
    legal_ids = {tuple(tok.encode(BOX + a, add_special_tokens=False)[-1:]): a
                 for a in ("check", "bet", "call", "fold")}
    assert all(ep.outcome == "finished" and sum(ep.invalid_counts) == 0 for ep in episodes)
    for _, gen, sampling in recording.calls:
        assert sampling.max_new_tokens == 1 and len(sampling.allowed_token_ids) == 2
        assert len(gen.token_ids) == 1 and gen.token_ids[0] in sampling.allowed_token_ids
        assert legal_ids[tuple(gen.token_ids)] == gen.text
    samples = [s for ep in episodes for s in ep.samples]
    assert samples and all(s.response_ids[-1] in s.allowed_ids and sum(s.loss_mask) == 1 for s in samples)


def test_learner_scores_the_renormalised_choice_the_engine_sampled(engine, chosen, reference):
    from learners.step_parts import collate, gathered_logprobs

    episodes, _ = chosen
    samples = [s for ep in episodes for s in ep.samples]
    with torch.no_grad():
        new, entropy = gathered_logprobs(reference, collate(samples, torch.device("cpu")), True,
                                         CHOICE_T, chunk=3)
        full = recompute_logprobs(reference, samples[0].prompt_ids + samples[0].response_ids[:-1],
                                  samples[0].response_ids[-1:], temperature=CHOICE_T)
    behaviour = torch.tensor([s.logprobs[-1] for s in samples])
    assert (new - behaviour).abs().max() < TOLERANCE[engine.backend]
    # Over two actions the entropy is at most log 2; unrenormalised, the vocabulary's would show.
    assert float(entropy.max()) <= 0.6932
    assert new[0] > full[0] + 1.0  # the legal actions hold little of the unconstrained mass
