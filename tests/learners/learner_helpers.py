"""Sample and config builders for the learner and checkpoint tests."""

from __future__ import annotations

import random

from selfplay.core.config_schema import TrainerConfig
from selfplay.core.samples import Sample


def fp32_trainer(**overrides) -> TrainerConfig:
    """A float32 CPU trainer: exact comparisons need float32; big grad_clip unless told."""
    base = dict(dtype="float32", device="cpu", lr=1e-3, grad_clip=1e9)
    return TrainerConfig(**{**base, **overrides})


def random_samples(n: int, seed: int = 0, vocab: int = 1000) -> list[Sample]:
    """Samples of varied lengths, some masked tokens, mixed-sign advantages."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = [rng.randrange(vocab) for _ in range(rng.randint(4, 20))]
        resp_len = rng.randint(3, 12)
        response = [rng.randrange(vocab) for _ in range(resp_len)]
        mask = [0 if rng.random() < 0.2 else 1 for _ in range(resp_len)]
        s = Sample(prompt_ids=prompt, response_ids=response,
                   logprobs=[rng.uniform(-9.0, -8.0) for _ in range(resp_len)], loss_mask=mask,
                   env_id="test", role=i % 2, ret=1.0, episode_id=f"e{i}", turn=0)
        s.advantage = rng.uniform(-1.0, 1.0)
        out.append(s)
    return out
