"""The learner's log-probs against the behaviour log-probs vLLM reports, on the real SmolLM2
weights in bf16, and after a real update published to the engine.

PPO's ratio ``exp(new - old)`` compares the learner's log-prob of each sampled token with the one
the engine reported while sampling (vLLM's ``processed_logprobs``: after temperature). At
temperature 1 the two differ only by kernels (bf16 logits have an ulp of 0.125 above 16, and the
two sides round differently), so that gap is the baseline; at another temperature, or after a
published update, the gap must stay within ``TOLERANCE`` of it. One engine serves every test of
this module (starting one takes ~35 s on the 2-core CPU).

The kernel gap (~0.045 nats a token) is large next to what dividing bf16 logits by the temperature
added (~0.007 on the same sampled tokens), and the gap of one set of ~110 sampled tokens varies by
about as much from one set to another, so the temperature test here bounds end-to-end agreement
rather than pinning that defect: ``test_tempered_logprobs_are_float32_logits_divided`` in
tests/learners/test_learner.py checks the learner's tempered log-probs exactly.

At temperature T the kernels' logit differences are divided by T with the logits, so the gap
there is bounded by the baseline over T (:func:`bound`). On a CPU without native bf16 (AVX2:
bf16 emulated) the baseline is ~0.043 and the gap at T=0.7 was 0.053, above baseline + 0.005 but
within baseline / 0.7; a learner that forgot the temperature is off by far more (~0.3 nats).
"""

from __future__ import annotations

import asyncio
import os

import pytest
from engine_helpers import vllm_engine
import torch

from actors.engine import SamplingSettings
from actors.prompting import prompt_ids
from envs.base import GAME_SYSTEM_PROMPT
from learners.learner import Learner
from selfplay.core.config_schema import TrainerConfig
from selfplay.core.samples import Sample

pytestmark = pytest.mark.slow

#: Short game-like observations, one response each.
TEXTS = [
    "You are X in TicTacToe. The board is empty. Choose a cell from 0 to 8.",
    "Kuhn Poker: you hold the King. Your opponent bet. Do you call or fold?",
    "Connect Four: columns 3 and 4 hold your discs. Which column do you play?",
    "Liar's Dice: you rolled 2, 2, 5. The last bid was three 2s. Bid or call liar?",
    "Negotiation: split 10 coins. Your opponent offers you 3. Accept or counter?",
    "TicTacToe: O holds cells 0 and 4, you hold 8. Which cell blocks O?",
]
NEW_TOKENS = 24
ROLLOUT_T = 0.7
#: How far above the temperature-1 kernel gap a mean |learner - engine| log-prob gap may be.
TOLERANCE = 0.005


@pytest.fixture(scope="module")
def engine(smollm2):
    yield from vllm_engine(smollm2, dtype="bfloat16", seed=0, max_model_len=512, kv_cache_gib=1)


@pytest.fixture(scope="module")
def prompts(engine) -> list[list[int]]:
    return [prompt_ids(engine.tokenizer, text, GAME_SYSTEM_PROMPT) for text in TEXTS]


@pytest.fixture(scope="module")
def learners(smollm2) -> dict[float, Learner]:
    """The initial policy at the rollout temperature and at 1 (never stepped)."""
    cfg = TrainerConfig(dtype="bfloat16", device="cpu")
    return {t: Learner(smollm2, cfg, temperature=t) for t in (ROLLOUT_T, 1.0)}


@pytest.fixture(scope="module")
def kernel_gap(engine, prompts, learners) -> float:
    """Mean |learner - engine| log-prob at temperature 1: kernel differences alone."""
    gaps = gap(learners[1.0], generate(engine, prompts, 1.0, seed=100))
    report("T=1.0 (kernel baseline)", gaps)
    return float(gaps.mean())


def generate(engine, prompts: list[list[int]], temperature: float, seed: int) -> list[Sample]:
    """One sampled response per prompt (all in flight at once), as samples carrying the engine's
    behaviour log-probs."""
    async def run():
        return await asyncio.gather(*(
            engine.generate(p, SamplingSettings(max_new_tokens=NEW_TOKENS, temperature=temperature,
                                                seed=seed + i))
            for i, p in enumerate(prompts)))

    return [Sample(prompt_ids=p, response_ids=g.token_ids, logprobs=g.logprobs,
                   loss_mask=[1] * len(g.token_ids), env_id="test", role=0, ret=0.0,
                   episode_id=f"p{i}")
            for i, (p, g) in enumerate(zip(prompts, asyncio.run(run())))]


def gap(learner: Learner, samples: list[Sample]) -> torch.Tensor:
    """|learner log-prob - engine log-prob| of every sampled token."""
    ours = learner.logprobs(samples)
    return torch.tensor([abs(a - b) for s, lp in zip(samples, ours)
                         for a, b in zip(lp, s.logprobs)])


def report(label: str, gaps: torch.Tensor) -> None:
    print(f"\n{label}: mean |diff| {float(gaps.mean()):.5f}, max {float(gaps.max()):.5f} "
          f"nats over {gaps.numel()} tokens")


def publish(engine, learner: Learner) -> None:
    """The learner's weights to the engine through the RAM-file transport, as training does."""
    from selfplay.core.weight_format import shm_path, write_safetensors

    path = shm_path()
    try:
        write_safetensors(path, learner.named_weights(copy=False), dtype=torch.bfloat16)
        engine.update_weights_from_file(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def bound(kernel_gap: float) -> float:
    """The largest mean gap allowed at ``ROLLOUT_T``: the kernel gap scaled as the logits are."""
    return kernel_gap / ROLLOUT_T + TOLERANCE


def test_learner_matches_engine_at_the_sampling_temperature(engine, prompts, learners, kernel_gap):
    # Tempering must add nothing to the kernel gap: both sides upcast to float32, then divide.
    gaps = gap(learners[ROLLOUT_T], generate(engine, prompts, ROLLOUT_T, seed=0))
    report(f"T={ROLLOUT_T}", gaps)
    assert float(gaps.mean()) <= bound(kernel_gap)


def test_engine_serves_the_updated_policy_after_publishing(engine, smollm2, prompts, learners,
                                                           kernel_gap):
    # lr 3e-4: one AdamW step moves every weight by ~lr, enough to move the log-probs of the
    # engine's new samples under the initial policy by ~0.8 nats (1e-4: only ~0.1).
    trained = Learner(smollm2, TrainerConfig(dtype="bfloat16", device="cpu", lr=3e-4),
                      temperature=ROLLOUT_T)
    batch = generate(engine, prompts, ROLLOUT_T, seed=200)
    for i, s in enumerate(batch):
        s.advantage = 1.0 if i % 2 == 0 else -1.0
    trained.train_step(batch)
    try:
        publish(engine, trained)
        after = generate(engine, prompts, ROLLOUT_T, seed=300)
        new_gap, old_gap = gap(trained, after), gap(learners[ROLLOUT_T], after)
        report(f"after the update, T={ROLLOUT_T}, vs the updated learner", new_gap)
        report(f"after the update, T={ROLLOUT_T}, vs the initial learner", old_gap)
        assert float(new_gap.mean()) <= bound(kernel_gap)
        # The update really landed: the engine has left the initial policy far behind.
        assert float(old_gap.mean()) > 4 * bound(kernel_gap)
    finally:
        publish(engine, learners[ROLLOUT_T])  # the initial weights back, for any later test
