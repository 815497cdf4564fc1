"""What one learner step does to a batch, shared by the single-process and the sharded learner.

Pure batch logic and the loss of one micro-batch, no optimiser and no process group:

* :func:`pack_micro_batches` groups samples into padded micro-batches under a token budget;
* :func:`split_by_tokens` deals a batch out to the ranks of a sharded learner, balanced by tokens;
* :func:`collate` pads a micro-batch and gathers, per loss token, where its logits are and its
  weight in the loss aggregation;
* :func:`gathered_logprobs` runs the policy at those positions only, the output head a chunk of
  positions at a time (:mod:`learners.chunked_head`);
* :func:`micro_batch_loss` is the PPO-clip loss of one micro-batch, divided by the step's count
  (:mod:`learners.loss_agg`), so gradients summed over micro-batches (and ranks) equal one big
  batch's; with ``trainer.off_policy`` tis or decoupled, against the micro-batch's ``prox``
  log-probs (:mod:`learners.off_policy`), which the learners compute before the update;
* :func:`warmup_lr` is the learning-rate schedule;
* :class:`StepTotals` sums the statistics of a step and turns them into ``learner/*`` figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from learners.chunked_head import Allowed, chunked_logprobs, restrict_logits
from learners.loss import logprobs_and_entropy, policy_loss, token_logprobs
from learners.loss_agg import sequence_token_weight
from learners.off_policy import MAX_STAT, MEAN_STATS
from selfplay.core import metric_names as names
from selfplay.core.config_schema import TrainerConfig
from selfplay.core.samples import Sample

__all__ = ["MicroBatch", "pack_micro_batches", "split_by_tokens", "collate", "head_only",
           "gathered_logprobs", "micro_batch_loss", "StepTotals", "warmup_lr"]

# Config attributes of models whose logits are not just lm_head(hidden): those take the full forward.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


class MicroBatch(NamedTuple):
    """One packed micro-batch on the learner's device (see :func:`collate`)."""

    ids: Tensor
    attention: Tensor
    rows: Tensor
    cols: Tensor
    targets: Tensor
    old: Tensor
    adv: Tensor
    #: Per loss token: its weight in the loss aggregation before the step's count
    #: (:func:`learners.loss_agg.sequence_token_weight` of its sample).
    scale: Tensor
    #: Constrained answers: loss-token index and allowed token id, one pair per allowed token
    #: (:data:`learners.chunked_head.Allowed`); None or empty where no sample is constrained.
    allowed_pos: Tensor | None = None
    allowed_tok: Tensor | None = None
    #: ``trainer.off_policy`` tis or decoupled: per loss token, the learner's own log-prob at the
    #: start of the update (no gradient; :mod:`learners.off_policy`); None otherwise.
    prox: Tensor | None = None

    @property
    def allowed(self) -> Allowed | None:
        """``(allowed_pos, allowed_tok)``, or None."""
        return None if self.allowed_pos is None else (self.allowed_pos, self.allowed_tok)


def warmup_lr(cfg: TrainerConfig, step: int) -> float:
    """The learning rate of train step ``step`` (from 0): linear warm-up over ``warmup_steps``
    steps, then constant."""
    warm = cfg.warmup_steps
    return cfg.lr * (min(1.0, (step + 1) / warm) if warm > 0 else 1.0)


def pack_micro_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped so that ``rows * longest`` (the padded size) stays <= ``max_tokens``.

    Longest first, so each micro-batch holds sequences of similar length and padding stays small;
    a sequence longer than ``max_tokens`` goes alone into its own micro-batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        # The first index of a batch is its longest sequence (descending order).
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def split_by_tokens(lengths: list[int], parts: int) -> list[list[int]]:
    """Indices dealt to ``parts`` ranks so that their token totals are balanced.

    Longest first, each to the rank with the fewest tokens so far (ties: the lowest rank): the
    classic LPT rule, within 4/3 of the best split, and deterministic, so every rank computes the
    same split from the same batch. Each part keeps the batch's order. A rank may get nothing when
    there are fewer samples than ranks.
    """
    if parts < 1:
        raise ValueError(f"parts={parts}: expected >= 1")
    load = [0] * parts
    out: list[list[int]] = [[] for _ in range(parts)]
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        rank = min(range(parts), key=lambda r: (load[r], r))
        out[rank].append(i)
        load[rank] += lengths[i]
    return [sorted(part) for part in out]


def collate(batch: list[Sample], device: torch.device, every_token: bool = False,
            cfg: TrainerConfig | None = None) -> MicroBatch:
    """Right-padded prompt+response ids, and for each loss token (every response token with
    ``every_token``) the (row, col) whose logits predict it, its id, behaviour log-prob,
    advantage and aggregation weight under ``cfg.loss_agg`` (1 without ``cfg``). Token ``p + j``
    of a sequence with prompt length ``p`` is predicted at ``p + j - 1``."""
    width = max(s.num_tokens for s in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)  # pad id is irrelevant: masked
    attention = torch.zeros(len(batch), width, dtype=torch.long)
    parts: list[list[Tensor]] = [[], [], [], [], [], []]
    allowed_pos: list[int] = []
    allowed_tok: list[int] = []
    loss_tokens = 0
    for b, s in enumerate(batch):
        if not s.prompt_ids:
            raise ValueError(f"sample {s.episode_id}/{s.turn} has an empty prompt")
        p, seq = len(s.prompt_ids), torch.tensor(s.prompt_ids + s.response_ids)
        ids[b, :len(seq)] = seq
        attention[b, :len(seq)] = 1
        j = (torch.arange(len(s.response_ids)) if every_token
             else torch.tensor(s.loss_mask, dtype=torch.bool).nonzero().squeeze(1))
        scale = (1.0 if cfg is None else
                 sequence_token_weight(cfg.loss_agg, sum(s.loss_mask), cfg.loss_agg_length))
        for part, value in zip(parts, (torch.full_like(j, b), p - 1 + j, seq[p + j],
                                       torch.tensor(s.logprobs, dtype=torch.float32)[j],
                                       torch.full((len(j),), s.advantage),
                                       torch.full((len(j),), scale, dtype=torch.float64))):
            part.append(value)
        # The constraint covers what the engine sampled (the loss tokens), never inserted text.
        written = [k for k, t in enumerate(j.tolist()) if s.loss_mask[t]] if s.allowed_ids else []
        for k in written:
            allowed_pos += [loss_tokens + k] * len(s.allowed_ids)
            allowed_tok += list(s.allowed_ids)
        loss_tokens += len(j)
    rows, cols, targets, old, adv, scale = (torch.cat(x).to(device) for x in parts)
    return MicroBatch(ids.to(device), attention.to(device), rows, cols, targets, old, adv.float(),
                      scale, torch.tensor(allowed_pos, dtype=torch.long, device=device),
                      torch.tensor(allowed_tok, dtype=torch.long, device=device))


def head_only(config: object) -> bool:
    """Whether the model's logits are ``lm_head(hidden)`` alone, so the head may run on the
    gathered positions only (models with a logit transform take the full forward)."""
    return not any(getattr(config, a, None) for a in _LOGIT_TRANSFORMS)


def gathered_logprobs(model: torch.nn.Module, mb: MicroBatch, only_head: bool, temperature: float,
                      chunk: int, with_entropy: bool = True) -> tuple[Tensor, Tensor | None]:
    """Float32 log-probs ``[N]`` of the targets at the gathered positions under the tempered
    policy, and their entropy (no gradient; None unless ``with_entropy``). The output head runs on
    those positions alone, skipping the prompt (the head is ~20% of a 135M model's FLOPs), and
    ``chunk`` positions at a time (:func:`learners.chunked_head.chunked_logprobs`): no logits
    tensor of more positions ever exists, in the forward or the backward pass. A model with a
    logit transform (``head_only`` false) takes the full forward and its whole logits."""
    if only_head:
        # peft's PeftModel (LoRA): its LoRA layers are injected into the Hugging Face model it
        # wraps, whose body and head are what this needs (its own base_model is peft's tuner).
        get_base_model = getattr(model, "get_base_model", None)
        if get_base_model is not None:
            model = get_base_model()
        hidden = model.base_model(input_ids=mb.ids, attention_mask=mb.attention, use_cache=False)
        return chunked_logprobs(hidden.last_hidden_state[mb.rows, mb.cols],
                                model.get_output_embeddings().weight, mb.targets, temperature,
                                chunk, with_entropy, mb.allowed)
    logits = model(input_ids=mb.ids, attention_mask=mb.attention, use_cache=False).logits[mb.rows, mb.cols]
    # Upcast first, then divide, as vLLM's sampler and our transformers engine do: dividing
    # bf16 logits rounds the tempered logits to bf16 a second time, an error of up to 2^-9
    # of each logit that the behaviour log-probs do not have.
    logits = logits.float()
    if temperature != 1.0:
        logits = logits.div_(temperature)  # in place: the upcast is a fresh tensor
    restrict_logits(logits, mb.allowed)  # constrained answers: the engine's renormalised choice
    if with_entropy:
        return logprobs_and_entropy(logits, mb.targets)
    return token_logprobs(logits, mb.targets), None


def micro_batch_loss(policy: Callable[[MicroBatch], tuple[Tensor, Tensor | None]],
                     reference: Callable[[MicroBatch], Tensor] | None, mb: MicroBatch,
                     cfg: TrainerConfig, count: float) -> tuple[Tensor, dict[str, float]]:
    """The loss of one micro-batch (not yet backpropagated) and its statistics. ``policy`` maps a
    micro-batch to its gathered log-probs and entropy, ``reference`` to its gathered log-probs;
    each token weighs its aggregation weight ``mb.scale`` divided by the step's ``count``
    (:func:`learners.loss_agg.step_count` over all micro-batches and ranks). Off-policy
    (``cfg.off_policy`` tis or decoupled) needs ``mb.prox``."""
    ref = None
    if reference is not None:
        with torch.no_grad():
            ref = reference(mb)
    new, entropy = policy(mb)
    mask = torch.ones_like(new, dtype=torch.bool)  # only loss tokens were gathered
    return policy_loss(new, mb.old, mb.adv, mask, cfg.clip_eps, ref_logprobs=ref,
                       kl_coef=cfg.kl_coef, entropy=entropy, weights=mb.scale / count,
                       prox_logprobs=mb.prox, off_policy=cfg.off_policy,
                       importance_cap=cfg.importance_cap)


@dataclass
class StepTotals:
    """Sums over one step's micro-batches (and epochs): the loss, each loss statistic weighted
    by its micro-batch's loss tokens, and the gradient norm of each optimiser step. With
    ``off_policy`` also the importance-weight statistics (:mod:`learners.off_policy`): means
    summed like the others, the maximum in ``weight_max`` (a sharded learner takes its maximum
    over ranks, not the sum)."""

    off_policy: bool = False
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(names.LOSS_STATS, 0.0))
    loss: float = 0.0
    grad_norms: list[float] = field(default_factory=list)
    weight_max: float = 0.0

    def __post_init__(self) -> None:
        if self.off_policy:
            self.sums.update(dict.fromkeys(MEAN_STATS, 0.0))

    def add(self, loss: float, stats: dict[str, float]) -> None:
        self.loss += loss
        for k in self.sums:  # stats are means over the micro-batch's tokens: re-weight
            self.sums[k] += stats.get(k, 0.0) * stats["tokens"]
        if self.off_policy:
            self.weight_max = max(self.weight_max, stats.get(MAX_STAT, 0.0))

    def as_tensor(self) -> Tensor:
        """``[loss, *sums]`` in float64, to be summed across ranks in one all-reduce."""
        return torch.tensor([self.loss, *self.sums.values()], dtype=torch.float64)

    def set_from_tensor(self, values: Tensor) -> None:
        self.loss = float(values[0])
        self.sums = dict(zip(self.sums, values[1:].tolist()))

    def figures(self, *, epochs: int, loss_tokens: int, tokens: int, micro_batches: int,
                lr: float, elapsed: float) -> dict[str, float]:
        """``learner/*`` figures: loss terms token-weighted over micro-batches and epochs."""
        seen = max(loss_tokens, 1) * epochs
        metric = {**names.LOSS_STATS, **MEAN_STATS}
        out = {metric[k]: v / seen for k, v in self.sums.items()}
        if self.off_policy:
            out[names.IMPORTANCE_WEIGHT_MAX] = self.weight_max
        out.update({
            names.LOSS_TOTAL: self.loss / epochs,
            names.GRAD_NORM: sum(self.grad_norms) / len(self.grad_norms),
            names.LR: lr,
            names.LEARNER_TOKENS: float(tokens * epochs),
            names.RESPONSE_TOKENS: float(loss_tokens * epochs),
            names.MICRO_BATCHES: float(micro_batches * epochs),
            names.LEARNER_STEP_S: elapsed,
            names.LEARNER_TOKENS_PER_S: tokens * epochs / elapsed,
        })
        return out
