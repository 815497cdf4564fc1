"""The learner's loss: pure torch functions, no model, no I/O.

Token-level PPO-clip policy gradient on per-sample advantages, against the behaviour log-probs
the rollout engine reported, with an optional k3 KL penalty to a frozen reference. Masked tokens
(padding, tokens the policy did not write) contribute exactly nothing to loss or gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["token_logprobs", "logprobs_and_entropy", "entropy_from_logits", "policy_loss"]


def token_logprobs(logits: Tensor, target_ids: Tensor) -> Tensor:
    """``log softmax(logits)[target]`` per position, in float32: ``[..., V], [...] -> [...]``.

    Computed as ``logit[target] - logsumexp(logits)`` so no second ``[..., V]`` tensor of
    log-probs is kept for the backward pass (the vocabulary is the largest dimension).
    """
    logits = logits.float()
    picked = logits.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def logprobs_and_entropy(logits: Tensor, target_ids: Tensor) -> tuple[Tensor, Tensor]:
    """``token_logprobs`` and the per-position entropy (no grad) from one float32 log-softmax.

    Cheaper than calling both functions: the ``[..., V]`` float32 copy and the normalisation,
    the costly part at a 49k vocabulary, are done once.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)
    return picked, entropy


@torch.no_grad()
def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of the softmax distribution at each position: ``[..., V] -> [...]`` (no grad:
    it is a statistic, not part of the loss)."""
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def policy_loss(
    new_logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
    num_tokens: float | None = None,
    logits: Tensor | None = None,
    entropy: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Token-level PPO-clip loss. Shapes: ``[B, T]`` for log-probs and mask, ``[B]`` or
    ``[B, T]`` for advantages.

    Per token ``t`` with ``ratio = exp(new - old)``::

        pg_t = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)
        kl_t = exp(ref - new) - (ref - new) - 1                    # k3, >= 0, unbiased for KL
        loss = sum_t mask_t * (pg_t + kl_coef * kl_t) / num_tokens

    The normaliser is token-level (DAPO, SPIRAL): ``num_tokens`` defaults to the number of
    unmasked tokens in this call; for gradient accumulation the caller passes the step's total,
    so that micro-batch losses add up to the loss of one big batch. Each token then weighs the
    same whatever the length of its sequence (a per-sequence mean would up-weight short answers).

    Masked positions are replaced by neutral values *before* any arithmetic (not multiplied by 0
    after): ``0 * inf`` is NaN, and garbage there (padding log-probs) must not leak into the
    gradient. The stats are means over unmasked tokens, whatever ``num_tokens`` is:
    ``pg_loss``, ``kl`` (k3 to the reference, 0 without one), ``clip_fraction`` (tokens whose
    gradient the clip removed), ``approx_kl`` (``0.5 * (new - old)^2``, vs the behaviour
    policy), ``tokens`` (the unmasked count, to weight means across calls), and ``entropy`` when
    per-token ``entropy`` (``[B, T]``, e.g. from ``logprobs_and_entropy``) or ``logits``
    (``[B, T, V]``) are given.
    """
    mask = mask.bool()
    if advantages.dim() == new_logprobs.dim() - 1:
        advantages = advantages.unsqueeze(-1)
    advantages = advantages.expand_as(new_logprobs)
    zero = torch.zeros((), dtype=new_logprobs.dtype, device=new_logprobs.device)
    new = torch.where(mask, new_logprobs, zero)
    old = torch.where(mask, old_logprobs.to(new.dtype), zero)
    adv = torch.where(mask, advantages.to(new.dtype), zero)

    log_ratio = new - old
    ratio = torch.exp(log_ratio)
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    pg = -torch.minimum(ratio * adv, clipped_ratio * adv)
    per_token = pg
    kl = torch.zeros_like(new)
    if ref_logprobs is not None:
        delta = torch.where(mask, ref_logprobs.to(new.dtype), zero) - new
        kl = torch.exp(delta) - delta - 1.0
        if kl_coef:
            per_token = per_token + kl_coef * kl
    per_token = torch.where(mask, per_token, zero)

    n_masked = mask.sum()
    denom = float(num_tokens) if num_tokens is not None else n_masked.clamp(min=1).to(new.dtype)
    loss = per_token.sum() / denom

    with torch.no_grad():
        n = n_masked.clamp(min=1).float()
        # The clip removed a token's gradient where the clipped term is the smaller objective.
        clipped = ((adv > 0) & (ratio > 1.0 + clip_eps)) | ((adv < 0) & (ratio < 1.0 - clip_eps))
        stats = {
            "pg_loss": float(torch.where(mask, pg, zero).sum() / n),
            "kl": float(torch.where(mask, kl, zero).sum() / n),
            "clip_fraction": float((clipped & mask).sum() / n),
            "approx_kl": float(torch.where(mask, 0.5 * log_ratio**2, zero).sum() / n),
            "tokens": float(n_masked),
        }
        ent = entropy if entropy is not None else (
            entropy_from_logits(logits) if logits is not None else None)
        if ent is not None:
            stats["entropy"] = float(torch.where(mask, ent, torch.zeros_like(ent)).sum() / n)
    return loss, stats
