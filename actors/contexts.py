"""One chat prompt and the assistant response growing after it, token by token.

A turn that starts fresh (a game's move) is one context: the chat prompt, then what the policy
wrote. A turn that *extends* the player's answer (LeaP's paths: reasoning, then a summary, then
more reasoning, all in one assistant message) appends to the same context: the ids of whatever
the environment inserts (summary trigger, peers' comments, answer template), then the ids the
policy generated. Inserted text is tokenized on its own and appended; the context's text is never
re-tokenized as a whole. So every generation's prompt extends the previous one token for token
(the engine's prefix cache hits), and the behaviour log-probs belong to exactly the tokens the
learner will score. Trimming drops the last generated ids (the longest prefix whose text fits
what the environment keeps).

Each context becomes one :class:`selfplay.core.samples.Sample`: ``loss_mask`` 1 on what the
policy wrote (each run generated in the context that precedes it) and 0 on every inserted token,
whose log-prob is a 0.0 placeholder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Context:
    """A prompt and its response so far (``ids``, with ``logprobs`` and ``mask`` alongside)."""

    prompt: list[int] = field(default_factory=list)
    #: The role whose turns these are, and the context's index among its player's contexts.
    role: int = 0
    index: int = 0
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    #: Where the last generated run starts (what a trim may shorten), and its text.
    last_start: int = 0
    last_text: str = ""
    #: The token ids a constrained answer was sampled among (``Sample.allowed_ids``); () for none.
    allowed: tuple[int, ...] = ()
    #: The oldest weight version that wrote any of it (``Sample.weight_version``); None before
    #: the first generation.
    version: int | None = None
    #: The policy (LoRA adapter) writing it (``Sample.policy``).
    policy: str = "default"

    def insert(self, ids: list[int]) -> None:
        """Append text the policy did not write (masked out of the loss)."""
        self.ids += ids
        self.logprobs += [0.0] * len(ids)
        self.mask += [0] * len(ids)

    def generated(self, ids: list[int], logprobs: list[float], text: str = "", version: int = 0) -> None:
        """Append what the policy wrote, with its behaviour log-probs; ``version``: the weights'
        version when this generation started (the oldest that wrote any of it)."""
        self.version = version if self.version is None else min(self.version, version)
        self.last_start, self.last_text = len(self.ids), text
        self.ids += ids
        self.logprobs += logprobs
        self.mask += [1] * len(ids)

    def trim(self, tokenizer: Any, text: str, drop_chars: int) -> None:
        """Drop the end of the last generated run ``text`` (``drop_chars`` characters): keep the
        longest token prefix whose decoded text is no longer than what is kept."""
        keep = len(text) - drop_chars
        run = self.ids[self.last_start:]
        lo, hi = 0, len(run)  # largest c with len(decode(run[:c])) <= keep, by bisection
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(tokenizer.decode(run[:mid], skip_special_tokens=True)) <= keep:
                lo = mid
            else:
                hi = mid - 1
        cut = self.last_start + lo
        del self.ids[cut:], self.logprobs[cut:], self.mask[cut:]

    @property
    def written(self) -> bool:
        """Whether the policy wrote any of it (a context with nothing written trains nothing)."""
        return any(self.mask)


__all__ = ["Context"]
