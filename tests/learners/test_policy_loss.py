"""The PPO-clip loss on tiny hand-computed tensors."""

from __future__ import annotations

import math

import pytest
import torch

from learners.loss import entropy_from_logits, logprobs_and_entropy, policy_loss, token_logprobs


def lp(*ratios: float) -> torch.Tensor:
    """New log-probs giving these ratios against old log-probs of 0."""
    return torch.tensor([[math.log(r) for r in ratios]], dtype=torch.float64, requires_grad=True)


def zeros(n: int) -> torch.Tensor:
    return torch.zeros(1, n, dtype=torch.float64)


def test_token_logprobs_picks_log_softmax_of_target():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # probabilities 1/4, 3/4
    out = token_logprobs(logits, torch.tensor([[1]]))
    assert out.item() == pytest.approx(math.log(0.75))


def test_ratio_is_clipped_on_both_sides_according_to_advantage_sign():
    new = lp(1.5, 0.5, 0.5, 1.5)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]], dtype=torch.float64)
    loss, stats = policy_loss(new, zeros(4), adv, torch.ones(1, 4), clip_eps=0.2)
    # A=+1, r=1.5: -min(1.5, 1.2) = -1.2 (clipped: no gradient)
    # A=+1, r=0.5: -min(0.5, 0.8) = -0.5 (unclipped: d/dnew = -r*A = -0.5)
    # A=-1, r=0.5: -min(-0.5, -0.8) = 0.8 (clipped: no gradient)
    # A=-1, r=1.5: -min(-1.5, -1.2) = 1.5 (unclipped: d/dnew = -r*A = 1.5)
    # mean over 4 tokens: (-1.2 - 0.5 + 0.8 + 1.5) / 4 = 0.15
    assert loss.item() == pytest.approx(0.15)
    assert stats["clip_fraction"] == pytest.approx(0.5)
    loss.backward()
    assert new.grad[0].tolist() == pytest.approx([0.0, -0.125, 0.0, 0.375])


def test_positive_advantage_gradient_raises_logprob_and_negative_lowers_it():
    new = lp(1.0, 1.0)
    loss, _ = policy_loss(new, zeros(2), torch.tensor([2.0, -3.0], dtype=torch.float64)[None],
                          torch.ones(1, 2), clip_eps=0.2)
    loss.backward()
    # Descent moves against the gradient: -grad = r*A/2 = [+1.0, -1.5]
    assert new.grad[0].tolist() == pytest.approx([-1.0, 1.5])


def test_per_sequence_advantage_broadcasts_over_tokens():
    new = lp(1.0, 1.0, 1.0)
    a, _ = policy_loss(new, zeros(3), torch.tensor([2.0], dtype=torch.float64), torch.ones(1, 3), 0.2)
    assert a.item() == pytest.approx(-2.0)  # each token -r*A = -2


def test_masked_tokens_change_neither_loss_nor_gradient():
    mask = torch.tensor([[1, 0, 1, 0]])

    def run(garbage: float):
        new = torch.tensor([[0.1, garbage, -0.2, garbage]], dtype=torch.float64, requires_grad=True)
        old = torch.tensor([[0.0, -garbage, 0.1, float("-inf")]], dtype=torch.float64)
        ref = torch.tensor([[0.05, garbage, 0.0, float("nan")]], dtype=torch.float64)
        adv = torch.tensor([[1.0, garbage, -1.0, float("inf")]], dtype=torch.float64)
        loss, stats = policy_loss(new, old, adv, mask, 0.2, ref_logprobs=ref, kl_coef=0.5)
        loss.backward()
        return loss.item(), new.grad.clone(), stats

    l1, g1, s1 = run(0.0)
    l2, g2, s2 = run(50.0)
    assert math.isfinite(l1) and l1 == l2 and torch.equal(g1, g2) and s1 == s2
    assert g1[0, 1] == 0 and g1[0, 3] == 0


def test_k3_kl_penalty_to_reference():
    new = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[math.log(2.0), 0.0]], dtype=torch.float64)
    loss, stats = policy_loss(new, zeros(2), zeros(2), torch.ones(1, 2), 0.2, ref_logprobs=ref,
                              kl_coef=0.1)
    # token 0: d = ref - new = ln 2 -> exp(d) - d - 1 = 1 - ln 2; token 1: d = 0 -> 0
    k3 = 1.0 - math.log(2.0)
    assert stats["kl"] == pytest.approx(k3 / 2)
    assert loss.item() == pytest.approx(0.1 * k3 / 2)  # A = 0, so only the penalty remains
    loss.backward()
    # d/dnew (exp(ref-new) - (ref-new) - 1) = 1 - exp(ref-new) = -1 at token 0 -> 0.1 * -1 / 2
    assert new.grad[0].tolist() == pytest.approx([-0.05, 0.0])


def test_token_normaliser_lets_micro_batches_add_up_to_the_whole():
    new = lp(1.1, 0.9, 1.3)
    adv = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    whole, _ = policy_loss(new, zeros(3), adv, torch.ones(1, 3), 0.2)
    first, _ = policy_loss(new[:, :1], zeros(1), adv[:, :1], torch.ones(1, 1), 0.2, num_tokens=3)
    rest, _ = policy_loss(new[:, 1:], zeros(2), adv[:, 1:], torch.ones(1, 2), 0.2, num_tokens=3)
    assert (first + rest).item() == pytest.approx(whole.item())


def test_stats_report_approx_kl_and_entropy():
    new = torch.tensor([[0.2, -0.2]], dtype=torch.float64)
    logits = torch.zeros(1, 2, 4)  # uniform over 4 tokens: entropy ln 4
    _, stats = policy_loss(new, zeros(2), zeros(2), torch.ones(1, 2), 0.2, logits=logits)
    assert stats["approx_kl"] == pytest.approx(0.5 * 0.04)  # 0.5 * 0.2^2 at both tokens
    assert stats["entropy"] == pytest.approx(math.log(4.0))
    assert entropy_from_logits(torch.tensor([[0.0, -1e9]])).item() == pytest.approx(0.0)


def test_logprobs_and_entropy_match_the_separate_functions():
    torch.manual_seed(0)
    logits = torch.randn(5, 7, dtype=torch.float64)
    targets = torch.randint(0, 7, (5,))
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    lp_a, ent = logprobs_and_entropy(a, targets)
    lp_b = token_logprobs(b, targets)
    torch.testing.assert_close(lp_a, lp_b)
    torch.testing.assert_close(ent, entropy_from_logits(logits))
    lp_a.sum().backward()
    lp_b.sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
