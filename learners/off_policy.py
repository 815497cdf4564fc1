"""Off-policy corrections of the PPO loss (``trainer.off_policy``): pure torch functions.

With a stale rollout (the engine's weights behind the learner's, or an engine whose numerics
differ from the learner's) the behaviour log-probs ``mu`` that PPO's ratio is taken against are
not the learner's policy. Both corrections take the ratio against ``prox`` instead, the learner's
own log-probs of the loss tokens computed without gradient at the start of the update (before
its first optimiser step; every epoch reuses them), and weight each token's policy-gradient term
by the constant importance weight ``w = exp(prox - mu)``:

* ``none``: ``ratio = exp(new - mu)``, no weight (plain PPO);
* ``tis``: ``w`` truncated at ``cap`` (verl's truncated importance sampling, "Your efficient RL
  framework secretly brings you off-policy RL training");
* ``decoupled``: ``w`` untruncated, but tokens with ``w > cap`` weigh 0 (``cap`` 0: none do)
  (AReaL's decoupled PPO, ``behav_imp_weight``; the dropped tokens still count in the loss
  aggregation's denominator, as in AReaL).

Both cost one extra forward pass without gradient per step (the learners compute ``prox``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from selfplay.core import metric_names as names

__all__ = ["OFF_POLICY", "MEAN_STATS", "MAX_STAT", "importance_weights", "importance_stats"]

#: ``trainer.off_policy`` values.
OFF_POLICY = ("none", "tis", "decoupled")

#: Statistics of the importance weight that a step averages over loss tokens, by their key in
#: the loss's stats, and the metric each becomes.
MEAN_STATS = {"importance_weight_mean": names.IMPORTANCE_WEIGHT_MEAN,
              "importance_capped": names.IMPORTANCE_WEIGHT_CAPPED}
#: The statistic a step takes the maximum of (:data:`names.IMPORTANCE_WEIGHT_MAX`).
MAX_STAT = "importance_weight_max"


def importance_weights(prox: Tensor, behaviour: Tensor, mode: str, cap: float
                       ) -> tuple[Tensor, Tensor]:
    """``(raw, applied)`` per token, no gradient: ``raw = exp(prox - behaviour)``, the weight
    before truncation (for the stats), and ``applied``, what multiplies the token's policy-gradient
    term under ``mode`` (``tis``: ``min(raw, cap)``; ``decoupled``: ``raw``, or 0 where
    ``raw > cap`` when ``cap > 0``). Callers pass neutral values at masked positions."""
    if mode not in ("tis", "decoupled"):
        raise ValueError(f"off_policy={mode!r}: expected tis or decoupled")
    with torch.no_grad():
        raw = torch.exp(prox.detach() - behaviour.detach())
        if mode == "tis":
            return raw, raw.clamp(max=cap)
        if cap > 0:
            # torch.where, not a product: a dropped weight may be inf (0 * inf is NaN).
            return raw, torch.where(raw > cap, torch.zeros_like(raw), raw)
        return raw, raw


@torch.no_grad()
def importance_stats(raw: Tensor, mask: Tensor, cap: float) -> dict[str, float]:
    """Over the unmasked tokens: the mean and max of ``raw`` (before truncation) and the share
    of tokens with ``raw > cap`` (truncated by tis, dropped by decoupled; none when ``cap`` is 0,
    decoupled's "no cap"). Zeros when no token is unmasked."""
    mask = mask.bool()
    n = mask.sum()
    if not bool(n):
        return {"importance_weight_mean": 0.0, MAX_STAT: 0.0, "importance_capped": 0.0}
    kept = raw[mask]
    capped = (kept > cap).sum() if cap > 0 else torch.zeros((), device=raw.device)
    return {"importance_weight_mean": float(kept.mean()), MAX_STAT: float(kept.max()),
            "importance_capped": float(capped / n)}
