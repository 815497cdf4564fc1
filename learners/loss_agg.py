"""How a step's per-token losses add up to one number: the loss aggregation (``trainer.loss_agg``).

Pure Python (no torch), so configuration checks can import it. Every mode is a weighted sum of the
per-token losses ``l[i, t]`` of the step's sequences ``i`` (a sequence is one ``Sample``: one
policy turn) over their loss tokens ``t``; with ``T_i`` the loss tokens of sequence ``i``, ``N``
their total over the step and ``S`` the number of sequences with at least one loss token:

* ``token_mean``: ``sum_i sum_t l[i, t] / N``. Every token weighs the same, whatever the length
  of its sequence (DAPO; this project's default).
* ``seq_mean_token_mean``: ``sum_i (sum_t l[i, t] / T_i) / S``. Every sequence weighs the same, so
  a token of a short answer weighs more than one of a long answer (OpenRLHF's ``PolicyLoss``,
  which SATURN trains with).
* ``seq_mean_token_sum``: ``sum_i sum_t l[i, t] / S``.
* ``seq_mean_token_sum_norm``: ``sum_i sum_t l[i, t] / (S * L)`` for a fixed length ``L``
  (``trainer.loss_agg_length``), the same for every sequence (Dr. GRPO: ``L`` is the generation
  budget; OAT's ``drgrpo`` aggregator, which SPIRAL trains with).

The names are verl's ``loss_agg_mode`` values with underscores. Each mode factors as a weight per
token that depends on its own sequence only (:func:`sequence_token_weight`) divided by one count
over the whole step (:func:`step_count`): so micro-batches and ranks each weigh their own tokens
and only the count is summed across them, which makes the sum over micro-batches and ranks equal
to the aggregate of the whole batch.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["LOSS_AGGS", "NEEDS_LENGTH", "sequence_token_weight", "step_count"]

LOSS_AGGS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm")
#: Modes that divide by ``trainer.loss_agg_length``.
NEEDS_LENGTH = ("seq_mean_token_sum_norm",)


def _check_mode(mode: str) -> None:
    if mode not in LOSS_AGGS:
        raise ValueError(f"trainer.loss_agg={mode!r}: expected one of {LOSS_AGGS}")


def sequence_token_weight(mode: str, loss_tokens: int, length: int = 0) -> float:
    """The weight of each loss token of a sequence with ``loss_tokens`` of them, before the
    division by :func:`step_count`: 1, ``1 / T_i``, 1 or ``1 / L`` (0 for a sequence without loss
    tokens: it has no token to weigh)."""
    _check_mode(mode)
    if loss_tokens <= 0:
        return 0.0
    if mode == "seq_mean_token_mean":
        return 1.0 / loss_tokens
    if mode in NEEDS_LENGTH:
        if length < 1:
            raise ValueError(f"trainer.loss_agg_length={length}: expected >= 1 for {mode}")
        return 1.0 / length
    return 1.0


def step_count(mode: str, loss_tokens: Iterable[int]) -> int:
    """What the step divides by, from each sequence's loss-token count: the loss tokens ``N`` for
    ``token_mean``, else the sequences ``S`` that have any. Additive: a sharded learner sums each
    rank's count, then (as every caller does) divides by at least 1."""
    _check_mode(mode)
    counts = list(loss_tokens)
    return sum(counts) if mode == "token_mean" else sum(1 for n in counts if n > 0)
