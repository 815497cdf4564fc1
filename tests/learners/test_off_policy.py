"""``trainer.off_policy``: tis and decoupled PPO worked by hand on a few tokens, ``none`` as before,
and both through the real learners on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch
from learner_helpers import fp32_trainer, random_samples

from learners.learner import Learner
from learners.loss import policy_loss
from learners.off_policy import importance_stats, importance_weights
from selfplay.core import metric_names as names

# Four loss tokens, eps 0.2, cap 2. Per token: ratio = new/prox, A, w = prox/mu:
#   a: ratio 1.1, A +1, w 1.5   inside the clip, weight under the cap
#   b: ratio 1.1, A +2, w 3     inside the clip, weight over the cap (tis: 2; decoupled: dropped)
#   c: ratio 0.9, A -1, w 0.5   negative advantage, inside the clip
#   d: ratio 0.5, A -1, w 1     negative advantage, clipped at 1 - eps = 0.8 (no gradient)
RATIO = [1.1, 1.1, 0.9, 0.5]
ADV = [1.0, 2.0, -1.0, -1.0]
WEIGHT = [1.5, 3.0, 0.5, 1.0]
PROX = [-1.0, -2.0, -0.5, -1.5]
EPS, CAP = 0.2, 2.0


def worked_tokens() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(new, prox, mu, adv)`` in float64: ``new = prox + ln ratio``, ``mu = prox - ln w``."""
    prox = torch.tensor(PROX, dtype=torch.float64)
    new = (prox + torch.tensor(RATIO, dtype=torch.float64).log()).requires_grad_(True)
    mu = prox - torch.tensor(WEIGHT, dtype=torch.float64).log()
    return new, prox, mu, torch.tensor(ADV, dtype=torch.float64)


def summed_loss(mode: str, cap: float = CAP) -> tuple[float, list[float], dict[str, float]]:
    """The loss summed over the four tokens (``num_tokens=1``), its gradient w.r.t. ``new``."""
    new, prox, mu, adv = worked_tokens()
    loss, stats = policy_loss(new, mu, adv, torch.ones(4, dtype=torch.bool), EPS, num_tokens=1.0,
                              prox_logprobs=prox, off_policy=mode, importance_cap=cap)
    loss.backward()
    return float(loss.detach()), new.grad.tolist(), stats


def test_tis_truncates_the_weight_at_the_cap():
    # pg_t = -min(r A, clip(r) A) * min(w, 2); d/dnew = -A r min(w, 2) inside the clip, else 0.
    #   a: -(1.1 * 1) * 1.5     = -1.65   grad -1 * 1.1 * 1.5   = -1.65
    #   b: -(1.1 * 2) * 2       = -4.4    grad -2 * 1.1 * 2     = -4.4   (w 3 truncated to 2)
    #   c: -(-0.9) * 0.5        =  0.45   grad  1 * 0.9 * 0.5   =  0.45
    #   d: -min(-0.5, -0.8) * 1 =  0.8    grad  0 (clipped: the clipped term is the smaller)
    loss, grad, stats = summed_loss("tis")
    assert loss == pytest.approx(-1.65 - 4.4 + 0.45 + 0.8)  # -4.8
    assert grad == pytest.approx([-1.65, -4.4, 0.45, 0.0])
    # Raw weights [1.5, 3, 0.5, 1]: mean 1.5, max 3, one of four over the cap; d was clipped.
    assert stats["importance_weight_mean"] == pytest.approx(1.5)
    assert stats["importance_weight_max"] == pytest.approx(3.0)
    assert stats["importance_capped"] == pytest.approx(0.25)
    assert stats["clip_fraction"] == pytest.approx(0.25)
    # approx_kl against prox: 0.5 * mean of (ln ratio)^2.
    assert stats["approx_kl"] == pytest.approx(0.5 * sum(math.log(r) ** 2 for r in RATIO) / 4)
    assert stats["pg_loss"] == pytest.approx(-4.8 / 4)  # the weighted term, token mean


def test_decoupled_drops_tokens_over_the_cap_and_keeps_the_rest_untruncated():
    # Same tokens, w untruncated, b (w 3 > 2) weighs 0:
    #   a: -1.65 (grad -1.65), b: 0 (grad 0), c: 0.45 (grad 0.45), d: 0.8 (grad 0) -> -0.4
    loss, grad, stats = summed_loss("decoupled")
    assert loss == pytest.approx(-1.65 + 0.45 + 0.8)
    assert grad == pytest.approx([-1.65, 0.0, 0.45, 0.0])
    assert stats["importance_capped"] == pytest.approx(0.25)
    assert stats["importance_weight_max"] == pytest.approx(3.0)  # before dropping
    # cap 0: no cap, b keeps its full weight 3: -(1.1 * 2) * 3 = -6.6, grad -2 * 1.1 * 3 = -6.6.
    loss, grad, stats = summed_loss("decoupled", cap=0.0)
    assert loss == pytest.approx(-1.65 - 6.6 + 0.45 + 0.8)  # -7.0
    assert grad == pytest.approx([-1.65, -6.6, 0.45, 0.0])
    assert stats["importance_capped"] == 0.0


def test_importance_weights_and_stats_on_their_own():
    prox, mu = torch.tensor([0.0, math.log(3.0)]), torch.zeros(2)
    raw, tis = importance_weights(prox, mu, "tis", 2.0)
    assert raw.tolist() == pytest.approx([1.0, 3.0]) and tis.tolist() == pytest.approx([1.0, 2.0])
    _, dec = importance_weights(prox, mu, "decoupled", 2.0)
    assert dec.tolist() == pytest.approx([1.0, 0.0])
    # Stats over the unmasked token only; an empty micro-batch (sharded padding) gives zeros.
    assert importance_stats(raw, torch.tensor([True, False]), 2.0) == pytest.approx(
        {"importance_weight_mean": 1.0, "importance_weight_max": 1.0, "importance_capped": 0.0})
    assert importance_stats(raw[:0], torch.zeros(0, dtype=torch.bool), 2.0)["importance_weight_max"] == 0.0
    with pytest.raises(ValueError):
        importance_weights(prox, mu, "none", 2.0)


def random_batch(seed: int = 0):
    """``[2, 5]`` log-probs with masked positions holding garbage, a reference, agg weights."""
    g = torch.Generator().manual_seed(seed)
    new = (-torch.rand(2, 5, generator=g) * 3).requires_grad_(True)
    old = new.detach() + 0.3 * torch.randn(2, 5, generator=g)
    ref = new.detach() + 0.2 * torch.randn(2, 5, generator=g)
    adv = torch.tensor([0.7, -1.3])
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    old[~mask] = float("-inf")  # garbage where masked: must not leak
    weights = torch.rand(2, 5, generator=g, dtype=torch.float64)
    return new, old, ref, adv, mask, weights


def reference_ppo(new, old, adv, mask, eps, ref, kl_coef, weights) -> torch.Tensor:
    """The loss as it was before ``off_policy`` existed, written out."""
    zero = torch.zeros(())
    n, o = torch.where(mask, new, zero), torch.where(mask, old, zero)
    a = torch.where(mask, adv.unsqueeze(-1).expand_as(new), zero)
    r = torch.exp(n - o)
    pg = -torch.minimum(r * a, torch.clamp(r, 1 - eps, 1 + eps) * a)
    d = torch.where(mask, ref, zero) - n
    per_token = torch.where(mask, pg + kl_coef * (torch.exp(d) - d - 1.0), zero)
    return (per_token * torch.where(mask, weights.float(), zero)).sum()


def test_none_is_the_old_loss_exactly():
    new, old, ref, adv, mask, weights = random_batch()
    prox = torch.full_like(old, float("nan"))  # ignored by none
    loss, stats = policy_loss(new, old, adv, mask, 0.2, ref_logprobs=ref, kl_coef=0.1,
                              weights=weights, prox_logprobs=prox, off_policy="none")
    (grad,) = torch.autograd.grad(loss, new)
    expected = reference_ppo(new, old, adv, mask, 0.2, ref, 0.1, weights)
    (expected_grad,) = torch.autograd.grad(expected, new)
    assert torch.equal(loss, expected) and torch.equal(grad, expected_grad)
    assert not any(k.startswith("importance") for k in stats)


@pytest.mark.parametrize("mode", ["tis", "decoupled"])
@pytest.mark.parametrize("cap", [1.0, 2.0])
def test_with_prox_equal_to_behaviour_both_modes_are_none(mode, cap):
    # w = exp(0) = 1 exactly, min(1, cap) = 1 and 1 is not over a cap >= 1: the same loss and
    # gradient bit for bit, KL term, aggregation weights and masking included.
    new, old, ref, adv, mask, weights = random_batch(1)
    kw = dict(ref_logprobs=ref, kl_coef=0.1, weights=weights)
    none, none_stats = policy_loss(new, old, adv, mask, 0.2, **kw)
    (none_grad,) = torch.autograd.grad(none, new)
    prox = old.clone()
    prox[~mask] = float("nan")  # garbage where masked: must not leak either
    loss, stats = policy_loss(new, old, adv, mask, 0.2, prox_logprobs=prox, off_policy=mode,
                              importance_cap=cap, **kw)
    (grad,) = torch.autograd.grad(loss, new)
    assert torch.equal(loss, none) and torch.equal(grad, none_grad)
    assert stats["importance_weight_mean"] == 1.0 and stats["importance_capped"] == 0.0
    assert {k: stats[k] for k in none_stats} == none_stats


def test_the_kl_penalty_is_not_importance_weighted():
    new, old, ref, adv, mask, weights = random_batch(2)
    prox = old + 0.5  # w = e^0.5 ~ 1.65 on every token
    args = dict(prox_logprobs=prox, off_policy="tis", importance_cap=2.0, weights=weights)
    with_kl, stats = policy_loss(new, old, adv, mask, 0.2, ref_logprobs=ref, kl_coef=0.1, **args)
    without, _ = policy_loss(new, old, adv, mask, 0.2, ref_logprobs=ref, kl_coef=0.0, **args)
    d = ref - new.detach()
    kl = torch.where(mask, torch.exp(d) - d - 1.0, torch.zeros(()))
    assert float(with_kl - without) == pytest.approx(float(0.1 * (kl * weights.float()).sum()), rel=1e-5)
    assert stats["importance_weight_mean"] == pytest.approx(math.exp(0.5), rel=1e-5)


def on_policy(learner: Learner, samples):
    """``samples`` with behaviour log-probs equal to the learner's own."""
    for s, lp in zip(samples, learner.logprobs(samples)):
        s.logprobs = lp
    return samples


@pytest.mark.parametrize("mode", ["tis", "decoupled"])
def test_learner_step_with_its_own_logprobs_equals_the_none_step(tiny_path, mode):
    # Several micro-batches and two epochs: the second epoch's ratio is against prox taken before
    # the first optimiser step, which here is the behaviour log-probs, as none has it.
    base = dict(micro_batch_tokens=48, epochs=2)
    none = Learner(tiny_path, fp32_trainer(**base))
    off = Learner(tiny_path, fp32_trainer(**base, off_policy=mode, importance_cap=2.0))
    samples = on_policy(none, random_samples(4, seed=3))
    got, want = off.train_step(samples), none.train_step(samples)
    assert got[names.MICRO_BATCHES] >= 2 * 2  # at least two micro-batches, two epochs
    assert got[names.IMPORTANCE_WEIGHT_MEAN] == pytest.approx(1.0, abs=1e-5)
    assert got[names.IMPORTANCE_WEIGHT_MAX] == pytest.approx(1.0, abs=1e-5)
    assert got[names.IMPORTANCE_WEIGHT_CAPPED] == 0.0
    for key in (names.LOSS_TOTAL, names.LOSS_PG, names.CLIP_FRACTION, names.GRAD_NORM):
        assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-7), key
    assert names.IMPORTANCE_WEIGHT_MEAN not in want
    for (name, a), (_, b) in zip(off.named_weights(), none.named_weights()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_learner_step_with_stale_logprobs_reports_the_weights(tiny_path):
    # random_samples' behaviour log-probs (-9..-8) are not the tiny model's: weights spread.
    learner = Learner(tiny_path, fp32_trainer(off_policy="tis", importance_cap=1.5))
    stats = learner.train_step(random_samples(3, seed=4))
    mean, top = stats[names.IMPORTANCE_WEIGHT_MEAN], stats[names.IMPORTANCE_WEIGHT_MAX]
    assert 0 < mean <= top and math.isfinite(stats[names.LOSS_TOTAL])
    assert 0.0 <= stats[names.IMPORTANCE_WEIGHT_CAPPED] <= 1.0


@pytest.mark.slow
def test_two_ranks_make_the_off_policy_update_of_one_rank(tiny_path, tmp_path):
    """The sharded learner's no-grad pass runs on every rank (an empty micro-batch on one) and
    gives the single-process learner's figures and gradient."""
    from sharded_helpers import first_steps, reference_gradient, run_ranks

    samples = random_samples(9, seed=1)
    trainer = fp32_trainer(micro_batch_tokens=64, off_policy="decoupled", importance_cap=3.0)
    out = tmp_path / "steps.pt"
    run_ranks(first_steps, 2, tiny_path, [trainer], samples, str(out))
    got = torch.load(out, weights_only=False)[0]
    ref = Learner(tiny_path, trainer, temperature=0.7)
    grads = reference_gradient(ref)
    want = ref.train_step(samples)
    for key in (names.LOSS_TOTAL, names.LOSS_PG, names.IMPORTANCE_WEIGHT_MEAN,
                names.IMPORTANCE_WEIGHT_MAX, names.IMPORTANCE_WEIGHT_CAPPED):
        assert got["stats"][key] == pytest.approx(want[key], rel=1e-5), key
    for name, grad in grads.items():  # float32 rounding, as in test_sharded.py
        assert (got["grads"][name] - grad).abs().max() <= 3e-5 * grad.abs().max(), name
