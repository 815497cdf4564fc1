"""Log-probs of the target tokens through the output head, a chunk of positions at a time.

The full-vocabulary logits are the largest tensor of a learner step: ``[N, V]`` for N loss tokens,
float32, with a 152k vocabulary 0.6 MB a token, and today's autograd keeps the log-softmax of all
of them for the backward pass (32 GiB for a 16k-token micro-batch of Qwen3-4B, 65 GiB for 32k
tokens of a 1.5B Qwen2). :func:`chunked_logprobs` computes, for ``chunk`` positions at a time, the
head's projection, the float32 tempered logits, their log-sum-exp, the target's log-prob and the
entropy, and keeps only ``[N]`` vectors; the backward pass recomputes each chunk's logits from the
saved hidden states and head weight (one more head projection per chunk), so no logits tensor of
more than ``chunk`` positions exists at any time. The last chunk's probabilities are kept from the
forward pass instead of recomputed, so a micro-batch of at most ``chunk`` loss tokens costs what
the unchunked computation costs.

The arithmetic is the unchunked computation's, chunk by chunk: the head's output in the compute
dtype, upcast to float32, then divided by the temperature (as vLLM's sampler does); the gradient
of ``log softmax(x)[target]`` is ``onehot - softmax(x)`` per unit of upstream gradient, divided by
the temperature, cast to the compute dtype, then multiplied through the head. Only the head
weight's gradient is summed over chunks (in the weight's dtype, one rounding per chunk in bf16)
where the unchunked backward makes one product over all positions.

**Constrained answers** (``Sample.allowed_ids``): ``allowed = (pos, tok)`` lists, for the
positions sampled among a few tokens alone, each allowed (position, token) pair; every other
token's logit at those positions is -inf before the log-sum-exp, as the engine masked it before
sampling, so the log-prob is that of the renormalised distribution and the gradient flows into
the allowed tokens only (their softmax is the only non-zero one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from learners.loss import entropy_of

__all__ = ["chunked_logprobs", "restrict_logits", "Allowed"]

#: ``(pos [K], tok [K])``: position ``pos[k]`` may sample ``tok[k]`` (positions not listed: all).
Allowed = tuple[Tensor, Tensor]


def restrict_logits(logits: Tensor, allowed: Allowed | None, start: int = 0) -> bool:
    """Set to -inf, in place, every logit of rows ``start .. start + len(logits)`` that
    ``allowed`` restricts, except their allowed tokens; returns whether any row was restricted."""
    if allowed is None or allowed[0].numel() == 0:
        return False
    pos, tok = allowed
    here = (pos >= start) & (pos < start + logits.shape[0])
    if not bool(here.any()):
        return False
    rows, inverse = torch.unique(pos[here] - start, return_inverse=True)
    blocked = torch.ones(len(rows), logits.shape[-1], dtype=torch.bool, device=logits.device)
    blocked[inverse, tok[here]] = False
    logits[rows] = logits[rows].masked_fill(blocked, float("-inf"))
    return True


def _tempered_logits(hidden: Tensor, weight: Tensor, temperature: float) -> Tensor:
    """Float32 logits ``[n, V]`` of ``n`` positions, divided by the temperature after the upcast
    (dividing bf16 logits would round them a second time)."""
    logits = F.linear(hidden, weight).float()
    # In place: in float32 the head's output is a fresh tensor, so nothing else holds it.
    return logits if temperature == 1.0 else logits.div_(temperature)


def _chunks(n: int, chunk: int) -> list[slice]:
    return [slice(start, min(start + chunk, n)) for start in range(0, n, chunk)]


class _ChunkedLogprobs(torch.autograd.Function):
    """``(hidden [N, H], weight [V, H], targets [N]) -> (log-probs [N], entropy [N])``; see the
    module docstring. The entropy has no gradient (a statistic, not part of the loss)."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, temperature: float,
                chunk: int, with_entropy: bool, pos: Tensor, tok: Tensor) -> tuple[Tensor, Tensor]:
        n = hidden.shape[0]
        logp = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(logp)
        entropy = torch.empty(n if with_entropy else 0, dtype=torch.float32, device=hidden.device)
        needs_grad = any(ctx.needs_input_grad[:2])
        last_probs = None
        chunks = _chunks(n, chunk)
        for i, part in enumerate(chunks):
            logits = _tempered_logits(hidden[part], weight, temperature)
            restricted = restrict_logits(logits, (pos, tok), part.start)
            lse[part] = torch.logsumexp(logits, dim=-1)
            # log_softmax in place: the logits are not needed any more.
            log_probs = logits.sub_(lse[part].unsqueeze(-1))
            logp[part] = log_probs.gather(-1, targets[part].unsqueeze(-1)).squeeze(-1)
            keep = needs_grad and i == len(chunks) - 1
            if with_entropy or keep:
                probs = log_probs.exp()
                if with_entropy:
                    entropy[part] = (entropy_of(probs, log_probs) if restricted
                                     else -(probs * log_probs).sum(-1))
                if keep:  # the backward pass starts with this chunk: no need to recompute it
                    last_probs = probs
            del logits, log_probs
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.save_for_backward(hidden, weight, targets, lse, last_probs, pos, tok)
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp: Tensor, _grad_entropy: Tensor):
        hidden, weight, targets, lse, last_probs, pos, tok = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = None
        chunks = _chunks(hidden.shape[0], ctx.chunk)
        for i in reversed(range(len(chunks))):
            part = chunks[i]
            if i == len(chunks) - 1 and last_probs is not None:
                probs = last_probs
            else:
                probs = _tempered_logits(hidden[part], weight, ctx.temperature)
                restrict_logits(probs, (pos, tok), part.start)  # exp(-inf): 0, no gradient
                probs.sub_(lse[part].unsqueeze(-1)).exp_()
            # d log p[target] / d logits = onehot(target) - softmax, times the upstream gradient.
            g = grad_logp[part]
            grad_logits = probs.mul_(-g.unsqueeze(-1))
            rows = torch.arange(grad_logits.shape[0], device=grad_logits.device)
            grad_logits[rows, targets[part]] += g
            if ctx.temperature != 1.0:
                grad_logits.div_(ctx.temperature)
            grad_logits = grad_logits.to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden[part] = grad_logits @ weight
            if ctx.needs_input_grad[1]:
                if grad_weight is None:
                    grad_weight = grad_logits.t() @ hidden[part]
                else:
                    grad_weight.addmm_(grad_logits.t(), hidden[part])
            del probs, grad_logits
        if ctx.needs_input_grad[1] and grad_weight is None:
            # No position: a zero gradient still, so every rank of a sharded learner reduces
            # the same tensors.
            grad_weight = torch.zeros_like(weight)
        return grad_hidden, grad_weight, None, None, None, None, None, None


def chunked_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, temperature: float = 1.0,
                     chunk: int = 1024, with_entropy: bool = True,
                     allowed: Allowed | None = None) -> tuple[Tensor, Tensor | None]:
    """``log softmax(hidden @ weight.T / temperature)[target]`` per position, float32 ``[N]``,
    and the entropy of that distribution (no gradient; None unless ``with_entropy``), computed
    ``chunk`` positions at a time (see the module docstring). ``hidden``: ``[N, H]`` in the
    compute dtype, ``weight``: the head's ``[V, H]`` (a head without bias), ``targets``: ``[N]``;
    ``allowed``: the constrained positions' tokens (see the module docstring), None for none."""
    if chunk < 1:
        raise ValueError(f"trainer.logits_chunk_tokens={chunk}: expected >= 1")
    if allowed is None:
        none = torch.zeros(0, dtype=torch.long, device=hidden.device)
        allowed = (none, none)
    logp, entropy = _ChunkedLogprobs.apply(hidden, weight, targets, float(temperature), int(chunk),
                                           with_entropy, *allowed)
    return logp, (entropy if with_entropy else None)
