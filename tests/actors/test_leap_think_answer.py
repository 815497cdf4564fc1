"""A LeaP path that closes its thinking writes its answer after ``</think>``, in the same context,
through the one episode loop (a scripted engine in the R1 style; the tiny model's tokenizer)."""

from __future__ import annotations

import asyncio

import gymnasium as gym
import pytest

import envs  # noqa: F401
from actors.engine import Generation, SamplingSettings
from actors.episodes import EpisodeLimits, EpisodeRunner, EpisodeSpec
from envs.leap_env import THINK_STOP

LEAP = "selfplay/LeaP-v0"
KWARGS = {"num_paths": 2, "segment_tokens": 24, "summary_tokens": 8, "answer_tokens": 4}


class R1Style:
    """Thinks, closes its thinking, and gives the boxed answer only after ``</think>``: reasoning
    requests (which stop at ``</think>``) get the thinking, any other request the answer."""

    def __init__(self, tokenizer, answer: str) -> None:
        self.tokenizer, self.answer, self.requests = tokenizer, answer, []

    async def generate(self, prompt_ids: list[int], sampling: SamplingSettings) -> Generation:
        self.requests.append(sampling)
        thinking = THINK_STOP in sampling.stop
        text = f"Adding them gives {self.answer}.\n{THINK_STOP}" if thinking else \
            f"\n\nThe answer is \\boxed{{{self.answer}}}."
        ids = self.tokenizer.encode(text, add_special_tokens=False)[:sampling.max_new_tokens]
        return Generation(ids, [-0.5] * len(ids), self.tokenizer.decode(ids), "stop")


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_the_answer_after_think_is_written_in_the_same_context_and_trained(tokenizer) -> None:
    env = gym.make(LEAP, **KWARGS).unwrapped
    env.reset(seed=2)
    engine = R1Style(tokenizer, env.problem.reference)
    spec = EpisodeSpec(LEAP, seed=2, episode_id="e", policy_roles=[0, 1], env_kwargs=KWARGS,
                       sampling=SamplingSettings(max_new_tokens=64, temperature=1.0))
    runner = EpisodeRunner(engine, tokenizer, EpisodeLimits(max_prompt_tokens=512))
    episode = asyncio.run(runner.play(env, spec))
    assert episode.rewards == {0: 1.0, 1: 1.0}
    assert episode.extra["leap/finished"] == 1.0 and episode.extra["leap/seg0/finished"] == 1.0
    # Two requests a path: its thinking, then its answer, which may use what it kept back (more
    # than answer_tokens) and stops only at the end of sequence.
    assert len(engine.requests) == 4 and all(r.stop == () for r in engine.requests[2:])
    assert all(r.max_new_tokens > KWARGS["answer_tokens"] for r in engine.requests[2:])
    for sample in episode.samples:  # one context a path; nothing inserted, all of it trained
        text = tokenizer.decode(sample.response_ids)
        assert THINK_STOP in text and text.index(THINK_STOP) < text.index("\\boxed{")
        assert "**Final Answer**" not in text and all(m == 1 for m in sample.loss_mask)
