"""The generation-engine interface shared by the vLLM engine and the transformers fallback.

An engine takes prompt token ids and sampling settings and returns the sampled tokens, their
text and their log-probs under the sampling distribution. ``generate`` is a coroutine: the
episode runner awaits many of them at once and the engine batches whatever is in flight
(continuous batching), so no game waits for the slowest game of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol

import torch


@dataclass(frozen=True)
class SamplingSettings:
    """How to sample one response."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class Generation:
    """One sampled response. ``logprobs[i]`` is the log-prob of ``token_ids[i]`` under the
    distribution it was sampled from (temperature applied); ``finish_reason`` is ``"stop"``
    (end of sequence) or ``"length"`` (hit ``max_new_tokens``)."""

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str


class Engine(Protocol):
    """What a rollout worker needs from a generation engine."""

    tokenizer: Any
    dtype: str
    """The resolved dtype the engine computes in (never ``auto``)."""
    dtype_reason: str
    """Why that dtype (e.g. ``auto: the CPU has no native bf16``), for the start-up log."""

    async def generate(self, prompt_ids: list[int], sampling: SamplingSettings) -> Generation: ...

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, float]:
        """Load new policy weights (Hugging Face names); returns timing figures in seconds."""
        ...

    def shutdown(self) -> None: ...
