"""The loss's log-probs a chunk of positions at a time: the same log-probs, entropy and gradients as
the whole-batch computation (float32 and bfloat16), on the function and in the learner, and no
logits tensor of more than one chunk of positions, forward or backward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from learner_helpers import fp32_trainer, random_samples
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from learners.chunked_head import chunked_logprobs
from learners.learner import Learner
from learners.loss import logprobs_and_entropy
from selfplay.core.config_schema import TrainerConfig


def whole_batch(hidden, weight, targets, temperature):
    """What the learner computed before chunking: the head on every position at once, float32
    logits divided by the temperature, one log-softmax."""
    logits = F.linear(hidden, weight).float().div_(temperature)
    return logprobs_and_entropy(logits, targets)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk", [1, 4, 13, 100])  # one position, uneven chunks, one chunk
def test_chunks_give_the_whole_batch_logprobs_entropy_and_gradients(dtype, chunk):
    torch.manual_seed(0)
    n, h, v = 13, 16, 50
    hidden, weight = torch.randn(n, h, dtype=dtype), torch.randn(v, h, dtype=dtype)
    targets, upstream = torch.randint(0, v, (n,)), torch.randn(n)
    got_h, got_w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    ref_h, ref_w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    logp, entropy = chunked_logprobs(got_h, got_w, targets, 0.7, chunk)
    ref_logp, ref_entropy = whole_batch(ref_h, ref_w, targets, 0.7)
    (logp * upstream).sum().backward()
    (ref_logp * upstream).sum().backward()
    # log p = x[t] - logsumexp(x) against log_softmax(x)[t]: float32 rounding of ~10 logits.
    torch.testing.assert_close(logp, ref_logp, rtol=0, atol=1e-5)
    torch.testing.assert_close(entropy, ref_entropy, rtol=0, atol=1e-5)
    assert not entropy.requires_grad
    torch.testing.assert_close(got_h.grad, ref_h.grad, rtol=0, atol=1e-5)
    # The head's gradient is summed over chunks: in bf16 one rounding per chunk (seen: 1 ulp).
    scale = ref_w.grad.abs().max()
    tol = 1e-6 if dtype == torch.float32 else 2**-7
    assert (got_w.grad - ref_w.grad).abs().max() <= tol * scale


def test_no_positions_give_a_zero_head_gradient():
    # A sharded rank's empty micro-batch: every rank must reduce the same gradients.
    weight = torch.randn(50, 16, requires_grad=True)
    hidden = torch.zeros(0, 16, requires_grad=True)
    logp, _ = chunked_logprobs(hidden, weight, torch.zeros(0, dtype=torch.long), 1.0, 4)
    logp.sum().backward()
    assert weight.grad is not None and torch.equal(weight.grad, torch.zeros_like(weight))


def step_gradient(learner: Learner, samples) -> torch.Tensor:
    """The float32 gradient of one step (before clipping; grad_clip is huge), and its figures."""
    seen: list[torch.Tensor] = []
    step = learner.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append(learner.flat.master.grad.clone())
        return step(*args, **kwargs)

    learner.optimizer.step = recording_step
    stats = learner.train_step(samples)
    return seen[0], stats


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_chunked_learner_steps_like_the_unchunked_one(tiny_path, dtype):
    samples = random_samples(6, seed=3)
    cfg = dict(dtype=dtype, micro_batch_tokens=64, kl_coef=0.1)
    chunked = Learner(tiny_path, fp32_trainer(**cfg, logits_chunk_tokens=3), temperature=0.7)
    whole = Learner(tiny_path, fp32_trainer(**cfg, logits_chunk_tokens=10**6), temperature=0.7)
    # Before the step (after it, bf16 weights may differ by an ulp: AdamW divides by |g|).
    for got_lp, want_lp in zip(chunked.logprobs(samples), whole.logprobs(samples)):
        assert got_lp == pytest.approx(want_lp, abs=1e-5)
    got, got_stats = step_gradient(chunked, samples)
    want, want_stats = step_gradient(whole, samples)
    # bf16: the head's gradient takes one rounding per chunk, and the step's other bf16 products
    # follow it (seen: 2e-3 of the largest entry; float32: 1.5e-6).
    tol = 1e-5 if dtype == "float32" else 1e-2
    assert (got - want).abs().max() <= tol * want.abs().max()
    for key in ("learner/loss/total", "learner/loss/pg", "learner/entropy", "learner/kl",
                "learner/approx_kl"):
        assert got_stats[key] == pytest.approx(want_stats[key], rel=1e-4, abs=1e-6), key


class LargestLogits(TorchDispatchMode):
    """Records the most positions (rows) of any newly allocated tensor whose last dimension is the
    vocabulary: views and in-place results share an input's storage and allocate nothing (the
    head's transposed weight, ``[H, V]``, is such a view)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab, self.most = vocab, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {a.untyped_storage().data_ptr() for a in tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor)}
        for t in tree_leaves(out):
            if (isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[-1] == self.vocab
                    and t.untyped_storage().data_ptr() not in inputs):
                self.most = max(self.most, t.numel() // self.vocab)
        return out


def test_no_logits_tensor_holds_more_than_one_chunk_of_positions(tiny_path):
    samples = random_samples(4, seed=5)
    learner = Learner(tiny_path, TrainerConfig(device="cpu", dtype="float32",
                                               logits_chunk_tokens=8))
    n_loss = sum(sum(s.loss_mask) for s in samples)
    assert n_loss > 3 * 8  # the micro-batch spans several chunks
    vocab = learner.model.config.vocab_size
    with LargestLogits(vocab) as seen:
        learner._micro_step(samples, n_loss)  # forward and backward of one micro-batch
    assert 0 < seen.most <= 8


def test_constrained_positions_score_the_renormalised_choice_with_its_gradient():
    """Positions restricted to a few tokens (constrained answers): log-prob, entropy and gradients
    equal a plain masked log-softmax over all positions, for any chunk size."""
    torch.manual_seed(0)
    n, h, v = 7, 5, 11
    hidden, weight = torch.randn(n, h, requires_grad=True), torch.randn(v, h, requires_grad=True)
    allowed = {1: [2, 5], 4: [3, 7, 9], 6: [0, 1]}
    targets = torch.tensor([3, 5, 1, 2, 9, 4, 0])
    pos = torch.tensor([p for p, toks in allowed.items() for _ in toks])
    tok = torch.tensor([t for toks in allowed.values() for t in toks])
    blocked = torch.zeros(n, v, dtype=torch.bool)
    for p, toks in allowed.items():
        blocked[p] = True
        blocked[p, toks] = False
    ref = torch.log_softmax((hidden @ weight.T / 0.7).masked_fill(blocked, float("-inf")), -1)
    ref_logp = ref.gather(1, targets[:, None]).squeeze(1)
    ref_entropy = -(ref.exp() * ref.clamp(min=-1e30)).sum(-1).detach()
    upstream = torch.arange(1.0, n + 1)
    ref_grads = torch.autograd.grad((ref_logp * upstream).sum(), (hidden, weight))
    assert float(ref_entropy[4]) <= math.log(3) + 1e-6  # restricted: at most log of its choices
    for chunk in (1, 2, 3, 100):
        logp, entropy = chunked_logprobs(hidden, weight, targets, 0.7, chunk, True, (pos, tok))
        grads = torch.autograd.grad((logp * upstream).sum(), (hidden, weight))
        torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=0)
        torch.testing.assert_close(entropy, ref_entropy, atol=1e-5, rtol=0)
        for got, want in zip(grads, ref_grads):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_collate_points_the_allowed_tokens_at_the_constrained_samples_loss_tokens():
    from learners.step_parts import collate
    from selfplay.core.samples import Sample

    def sample(response: list[int], mask: list[int], allowed: tuple[int, ...] = ()) -> Sample:
        return Sample([1, 2], response, [-0.5] * len(response), mask, "e", 0, 0.0, "ep",
                      allowed_ids=allowed)

    free = sample([5, 6, 7, 8], [0, 1, 1, 1])  # three loss tokens, unconstrained
    chosen = sample([9, 4], [0, 1], allowed=(4, 11))  # one loss token, among 4 and 11
    mb = collate([free, chosen, free], torch.device("cpu"))
    assert mb.targets.tolist() == [6, 7, 8, 4, 6, 7, 8]
    assert mb.allowed_pos.tolist() == [3, 3] and mb.allowed_tok.tolist() == [4, 11]
    assert collate([free], torch.device("cpu")).allowed_pos.numel() == 0
    # Every response token (the learner's log-probs for comparison with the engine): the
    # inserted token 9 stays unconstrained, the written 4 is constrained.
    every = collate([chosen], torch.device("cpu"), every_token=True)
    assert every.targets.tolist() == [9, 4] and every.allowed_pos.tolist() == [1, 1]
