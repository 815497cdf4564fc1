"""The learner's loss: pure torch functions, no model, no I/O.

PPO-clip policy gradient on per-sample advantages, against the behaviour log-probs the rollout
engine reported, with an optional k3 KL penalty to a frozen reference, summed over tokens with
the weights of the loss aggregation (:mod:`learners.loss_agg`; :func:`token_weights`). Masked
tokens (padding, tokens the policy did not write) contribute exactly nothing to loss or gradient.
With ``trainer.off_policy`` tis or decoupled the ratio is taken against the learner's own
log-probs at the start of the update and weighted by an importance weight
(:mod:`learners.off_policy`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from learners.loss_agg import sequence_token_weight, step_count
from learners.off_policy import importance_stats, importance_weights

__all__ = ["token_logprobs", "logprobs_and_entropy", "entropy_from_logits", "entropy_of",
           "token_weights", "policy_loss"]


def entropy_of(probs: Tensor, log_probs: Tensor) -> Tensor:
    """``-sum p log p`` over the last dimension, a token of probability 0 adding 0 (its log-prob
    may be -inf: a token a constrained answer could not sample)."""
    terms = probs * log_probs
    return -terms.masked_fill_(probs == 0, 0.0).sum(-1)


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
        entropy = entropy_of(logp.exp(), logp)
    return picked, entropy


@torch.no_grad()
def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of the softmax distribution at each position: ``[..., V] -> [...]`` (no grad:
    it is a statistic, not part of the loss)."""
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    return entropy_of(logp.exp(), logp)


def token_weights(mask: Tensor, mode: str, length: int = 0) -> Tensor:
    """The weight of each token of a ``[B, T]`` batch of sequences (one per row) under the loss
    aggregation ``mode`` (:mod:`learners.loss_agg`), so that ``(weights * per_token).sum()`` is the
    aggregate: ``mask`` marks the loss tokens; masked positions weigh 0."""
    mask = mask.bool()
    per_row = mask.sum(-1).tolist()
    count = max(step_count(mode, per_row), 1)
    scale = torch.tensor([sequence_token_weight(mode, n, length) / count for n in per_row],
                         dtype=torch.float64, device=mask.device)
    return torch.where(mask, scale.unsqueeze(-1), torch.zeros((), dtype=scale.dtype, device=mask.device))


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
    weights: Tensor | None = None,
    prox_logprobs: Tensor | None = None,
    off_policy: str = "none",
    importance_cap: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip loss summed over tokens. Shapes: ``[B, T]`` for log-probs, mask and ``weights``,
    ``[B]`` or ``[B, T]`` for advantages.

    Per token ``t`` with ``ratio = exp(new - old)``::

        pg_t = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)
        kl_t = exp(ref - new) - (ref - new) - 1                    # k3, >= 0, unbiased for KL
        loss = sum_t mask_t * w_t * (pg_t + kl_coef * kl_t)

    With ``off_policy`` tis or decoupled (:mod:`learners.off_policy`), ``prox_logprobs`` (the
    learner's own log-probs at the start of the update, no gradient) replace ``old`` in the
    ratio, and ``pg_t`` is multiplied by the constant importance weight of
    :func:`learners.off_policy.importance_weights` (``exp(prox - old)`` truncated at, or dropped
    above, ``importance_cap``); the KL term is not weighted (it is a penalty on the current
    policy, not an estimate under the behaviour policy's samples).

    ``weights`` (``w_t``) carry the loss aggregation (:func:`token_weights`; the learners pass the
    step's weights, :mod:`learners.loss_agg`). Without them every token weighs ``1 / num_tokens``
    (the token mean), ``num_tokens`` defaulting to the number of unmasked tokens in this call;
    for gradient accumulation the caller passes the step's total, so that micro-batch losses add
    up to the loss of one big batch.

    Masked positions are replaced by neutral values *before* any arithmetic (not multiplied by 0
    after): ``0 * inf`` is NaN, and garbage there (padding log-probs) must not leak into the
    gradient. The stats are means over unmasked tokens, whatever the weights are:
    ``pg_loss``, ``kl`` (k3 to the reference, 0 without one), ``clip_fraction`` (tokens whose
    gradient the clip removed), ``approx_kl`` (``0.5 * (new - old)^2``, vs the behaviour
    policy; both vs ``prox`` when off-policy), ``importance_weight_mean``,
    ``importance_weight_max`` and ``importance_capped`` when off-policy
    (:func:`learners.off_policy.importance_stats`), ``tokens`` (the unmasked count, to weight means across calls), and ``entropy`` when
    per-token ``entropy`` (``[B, T]``, e.g. from ``logprobs_and_entropy``) or ``logits``
    (``[B, T, V]``) are given.
    """
    off = off_policy != "none"
    if off and prox_logprobs is None:
        raise ValueError(f"policy_loss: off_policy={off_policy!r} needs prox_logprobs")
    mask = mask.bool()
    if advantages.dim() == new_logprobs.dim() - 1:
        advantages = advantages.unsqueeze(-1)
    advantages = advantages.expand_as(new_logprobs)
    zero = torch.zeros((), dtype=new_logprobs.dtype, device=new_logprobs.device)
    new = torch.where(mask, new_logprobs, zero)
    old = torch.where(mask, old_logprobs.to(new.dtype), zero)
    adv = torch.where(mask, advantages.to(new.dtype), zero)

    # Off-policy: the trust region is around the learner's policy at the start of the update.
    base = torch.where(mask, prox_logprobs.detach().to(new.dtype), zero) if off else old
    log_ratio = new - base
    ratio = torch.exp(log_ratio)
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    pg = -torch.minimum(ratio * adv, clipped_ratio * adv)
    if off:
        raw_weight, weight = importance_weights(base, old, off_policy, importance_cap)
        pg = pg * weight
    per_token = pg
    kl = torch.zeros_like(new)
    if ref_logprobs is not None:
        delta = torch.where(mask, ref_logprobs.to(new.dtype), zero) - new
        kl = torch.exp(delta) - delta - 1.0
        if kl_coef:
            per_token = per_token + kl_coef * kl
    per_token = torch.where(mask, per_token, zero)

    n_masked = mask.sum()
    if weights is not None:
        if num_tokens is not None:
            raise ValueError("policy_loss: pass weights or num_tokens, not both")
        loss = (per_token * torch.where(mask, weights.to(new.dtype), zero)).sum()
    else:
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
        if off:
            stats.update(importance_stats(raw_weight, mask, importance_cap))
        ent = entropy if entropy is not None else (
            entropy_from_logits(logits) if logits is not None else None)
        if ent is not None:
            stats["entropy"] = float(torch.where(mask, ent, torch.zeros_like(ent)).sum() / n)
    return loss, stats
