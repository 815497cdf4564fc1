"""The learner: a plain class owning the policy model, its optimiser and the gradient step.

No Ray here; the driver wraps ``Learner`` as an actor. One ``train_step`` takes a batch of
``Sample``s (advantages already filled in), packs them into padded micro-batches, accumulates
PPO-clip gradients, aggregated over tokens as ``trainer.loss_agg`` says (:mod:`learners.loss_agg`),
so the step equals one big batch, clips and applies AdamW. With ``trainer.off_policy`` tis or
decoupled it first runs the policy without gradient over the step's micro-batches, for the
proximal log-probs the loss takes its ratio against (:mod:`learners.off_policy`).

Precision: with ``dtype`` bfloat16 the model computes in bf16 (2.5x faster than fp32 for a training
step of the 135M model on a CPU with native bf16; ``auto`` picks float32 on CPUs without it) but the optimiser updates a float32 *master* copy of the weights, copied back into the
model after each step. Pure bf16 AdamW would silently lose the update: at lr 1e-6 a step changes
a weight by about 1e-6 relative, far below bf16's resolution (2^-8). The step's gradient is
likewise summed over micro-batches in float32, and the temperature divides float32 logits, as the
engines do.

Memory layout: all parameters are views of one flat buffer and their gradients views of another,
so the optimiser-side work is one kernel each instead of one per tensor (:mod:`learners.flat_params`).

LoRA (``trainer.lora.rank`` > 0): the model is wrapped by ``peft`` and only the adapter trains.
The base stays frozen in the compute dtype, outside the flat buffer; the adapter's parameters
are the flat buffer, with the same float32 master and fused AdamW. Whatever leaves the learner as
full weights (:meth:`Learner.named_weights`, :meth:`Learner.save_model`) is the *merged* model
under the base's Hugging Face names; :meth:`Learner.save_adapter` writes the adapter alone as a
PEFT folder. The adapter mechanics (wrapping, merging, the adapter folders) are
:mod:`learners.lora_adapters`.

Several policies (``policies:``, two or more names; LoRA only): one adapter per policy on the one
frozen base, each in a flat buffer of its own with its own float32 master and fused AdamW. A step
groups its samples by ``Sample.policy`` and trains each adapter on its own samples exactly as a
learner of that policy alone would (its loss normalised over its own samples, its own optimiser
step); an adapter without samples in a step is not touched. Whatever leaves as full weights is
then the *base* (unmerged: no one merge stands for several policies).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, TypeVar

import torch
from torch import Tensor

from learners.lora_adapters import (ADAPTER_DIR, ADAPTER_NAME, adapter_names, adapter_parameters,
                                    check_checkpoint, load_adapters, merged_weights, policy_folders,
                                    save_adapters, wrap_lora)
from learners.flat_params import FlatParams
from learners.loss_agg import step_count
from learners.step_parts import (MicroBatch, StepTotals, collate, gathered_logprobs, head_only,
                                  micro_batch_loss, pack_micro_batches, warmup_lr)
from selfplay.core import metric_names as names
from selfplay.core.config_schema import LoraConfig, TrainerConfig
from selfplay.core.policies import DEFAULT_POLICY
from selfplay.core.precision import local_device, resolve_dtype, torch_dtype
from selfplay.core.samples import Sample

__all__ = ["Learner", "LearnerBase", "FlatParams", "pack_micro_batches", "resolve_device_dtype",
           "ADAPTER_DIR", "ADAPTER_NAME", "merged_weights", "policy_folders"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_device_dtype(trainer: TrainerConfig) -> tuple[torch.device, torch.dtype, str]:
    """``(device, dtype, why)``: ``auto`` device is cuda when available, else cpu; ``auto`` dtype
    is bf16 on a GPU or a CPU with native bf16, float32 elsewhere (:mod:`selfplay.core.precision`)."""
    device = local_device() if trainer.device == "auto" else trainer.device
    name, why = resolve_dtype(trainer.dtype, device)
    return torch.device(device), torch_dtype(name), why


class LearnerBase:
    """What both learners (this one and :class:`learners.sharded.ShardedLearner`) set up first:
    the seed, the policy's folder, the trainer config, the sampling temperature, device and dtype;
    and the learning-rate schedule."""

    def __init__(self, model_path: str, trainer: TrainerConfig, seed: int, temperature: float) -> None:
        torch.manual_seed(seed)
        self.model_path = str(model_path)
        self.cfg = trainer
        # The engines report log-probs of the tempered distribution they sample from; the
        # learner's policy is that same distribution, so ratios compare like with like.
        self.temperature = temperature
        self.device, self.dtype, self.dtype_reason = resolve_device_dtype(trainer)

    def lr_at(self, step: int) -> float:
        """Linear warm-up over ``warmup_steps`` train steps, then constant."""
        return warmup_lr(self.cfg, step)


@dataclass
class _PolicyPart:
    """What one policy's share of a step left: its statistics and sizes, to be combined."""

    totals: StepTotals
    samples: int
    loss_tokens: int
    tokens: int
    micro_batches: int


class Learner(LearnerBase):
    """Policy model + AdamW + the gradient step. ``step`` counts ``train_step`` calls.

    One process: rank 0 of a world of 1 (:class:`learners.policy_learner.PolicyLearner`).
    ``lora`` is ``trainer.lora`` when it is on (rank > 0), else None; ``model`` is then peft's
    ``PeftModel`` around the Hugging Face model.

    ``policies``: the names of the policies it trains (``selfplay.core.policies.policy_names``);
    empty or one name: one policy, as without ``policies:``. Two or more need LoRA: one adapter
    each, named after the policy, with its own flat buffer and AdamW (``flats``, ``optimizers``;
    ``flat`` and ``optimizer`` are the first policy's)."""

    rank, world_size = 0, 1

    def __init__(self, model_path: str, trainer: TrainerConfig, seed: int = 0,
                 temperature: float = 1.0, policies: Sequence[str] = ()) -> None:
        super().__init__(model_path, trainer, seed, temperature)
        why = self.dtype_reason
        self.lora: LoraConfig | None = trainer.lora if trainer.lora.rank > 0 else None
        #: The policies trained, in config order; ``Sample.policy`` must be one of them.
        self.policies: tuple[str, ...] = tuple(policies) or (DEFAULT_POLICY,)
        if len(set(self.policies)) != len(self.policies):
            raise ValueError(f"policies {', '.join(self.policies)}: each name once")
        if self.several and self.lora is None:
            raise ValueError(f"policies {', '.join(self.policies)}: several policies need "
                             f"trainer.lora.rank > 0 (each is a LoRA adapter on the one base)")
        # peft's adapter of each policy (``default`` with one policy, else the policy's name).
        self._adapter = adapter_names(self.policies)
        log.info("learner: %s on %s (%s)%s", str(self.dtype).removeprefix("torch."), self.device, why,
                 (f", LoRA rank {self.lora.rank}" if self.lora else "")
                 + (f", adapters {', '.join(self.policies)}" if self.several else ""))
        model = self._load_model(self.model_path)
        if trainer.gradient_checkpointing:
            # Non-reentrant: it keeps gradients flowing although the inputs need no grad.
            model.gradient_checkpointing_enable({"use_reentrant": False})
        if self.lora is None:
            self.model = model.requires_grad_(True)
        else:
            self.model = wrap_lora(model, self.lora, list(self._adapter.values()), self.model_path)
        self.ref_model = None
        if trainer.kl_coef > 0 and self.lora is None:  # the frozen initial policy, for the KL penalty
            # (with LoRA it is the base itself, adapter disabled: no second copy)
            self.ref_model = self._load_model(self.model_path).requires_grad_(False)
        self._head_only = head_only(self.model.config)
        if self.several:
            self.flats = {p: FlatParams(adapter_parameters(self.model, self._adapter[p]))
                          for p in self.policies}
        else:
            self.flats = {self.policies[0]: FlatParams(self.model)}
        # Fused AdamW: one kernel; the default foreach path took seconds on the busy CPU.
        self.optimizers = {p: torch.optim.AdamW([flat.master], lr=trainer.lr, betas=tuple(trainer.betas),
                                                weight_decay=trainer.weight_decay, fused=True)
                           for p, flat in self.flats.items()}
        self.flat, self.optimizer = self.flats[self.policies[0]], self.optimizers[self.policies[0]]
        self._active = self.policies[0]  # the adapter peft runs now
        self.step = 0
        self._tokenizer = None  # loaded on first save

    @property
    def several(self) -> bool:
        """Whether it trains several policies (one adapter each)."""
        return len(self.policies) > 1

    def _load_model(self, path: str) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).to(self.device)
        # eval(): no dropout, so the learner's log-probs match the engine's. Gradient
        # checkpointing in transformers only acts in train mode, so it needs train().
        return model.train() if self.cfg.gradient_checkpointing else model.eval()

    def _activate(self, policy: str) -> None:
        """Make ``policy``'s adapter the one peft runs (and the one that requires grad). With one
        policy there is nothing to switch."""
        if policy != self._active:
            self.model.set_adapter(self._adapter[policy])
            self._active = policy

    def _by_policy(self, samples: list[Sample]) -> dict[str, list[Sample]]:
        """The samples grouped by the policy that generated them, in ``policies`` order (those
        with samples only); a sample of another policy is refused."""
        groups: dict[str, list[Sample]] = {p: [] for p in self.policies}
        for s in samples:
            if s.policy not in groups:
                raise ValueError(f"sample {s.episode_id}/{s.turn}: policy {s.policy!r} is not trained "
                                 f"here (this learner's: {', '.join(self.policies)})")
            groups[s.policy].append(s)
        return {p: group for p, group in groups.items() if group}

    # -- the step -------------------------------------------------------------------------------

    def train_step(self, samples: list[Sample]) -> dict[str, float]:
        """One training step (``epochs`` optimiser steps) on ``samples``; returns ``learner/*``
        statistics (loss terms token-weighted over all micro-batches and epochs).

        With several policies each adapter steps on its own samples only, as a learner of that
        policy alone would; the figures cover the whole step (the loss token-weighted over the
        policies, the gradient norm that of all adapters' gradients together) plus
        ``learner/<policy>/{loss,grad_norm,samples}`` per policy."""
        if not samples:
            raise ValueError("train_step needs at least one sample")
        groups = self._by_policy(samples)
        start = time.perf_counter()
        lr = self.lr_at(self.step)
        parts = {p: self._policy_step(p, group, lr) for p, group in groups.items()}
        self.step += 1
        elapsed = time.perf_counter() - start
        if not self.several:
            (part,) = parts.values()
            return part.totals.figures(epochs=self.cfg.epochs, loss_tokens=part.loss_tokens,
                                       tokens=part.tokens, micro_batches=part.micro_batches, lr=lr,
                                       elapsed=elapsed)
        return self._combined(parts, lr, elapsed)

    def _policy_step(self, policy: str, samples: list[Sample], lr: float) -> _PolicyPart:
        """``policy``'s share of a step: its adapter's micro-batches and optimiser steps on its
        own ``samples`` (all of the step's with one policy)."""
        flat, optimizer = self.flats[policy], self.optimizers[policy]
        for group in optimizer.param_groups:
            group["lr"] = lr
        self._activate(policy)
        batches = pack_micro_batches([s.num_tokens for s in samples], self.cfg.micro_batch_tokens)
        loss_tokens = [sum(s.loss_mask) for s in samples]
        n_loss = sum(loss_tokens)
        # Over this policy's samples only: its adapter's gradient is the one a learner of that
        # policy alone would compute, however many samples the other policies had.
        count = max(step_count(self.cfg.loss_agg, loss_tokens), 1)
        off_policy = self.cfg.off_policy != "none"
        # Before the first optimiser step: every epoch's ratio is against the same policy.
        prox = ([self._proximal([samples[i] for i in idx]) for idx in batches] if off_policy
                else [None] * len(batches))
        totals = StepTotals(off_policy=off_policy)
        for _ in range(self.cfg.epochs):
            for idx, mb_prox in zip(batches, prox):
                totals.add(*self._micro_step([samples[i] for i in idx], count, mb_prox))
                flat.accumulate_grads()
            totals.grad_norms.append(self._optimizer_step(policy))
        return _PolicyPart(totals, len(samples), n_loss, sum(s.num_tokens for s in samples), len(batches))

    def _combined(self, parts: dict[str, _PolicyPart], lr: float, elapsed: float) -> dict[str, float]:
        """The figures of a step of several policies: the whole step's ``learner/*`` (statistics
        token-weighted over every policy's loss tokens, the loss each policy's weighted by its loss
        tokens, each epoch's gradient norm over all adapters together) and each policy's own."""
        epochs = self.cfg.epochs
        first = next(iter(parts.values())).totals
        whole = StepTotals(off_policy=first.off_policy)
        n_loss = sum(part.loss_tokens for part in parts.values())
        out: dict[str, float] = {}
        for policy, part in parts.items():
            t = part.totals
            for k in whole.sums:
                whole.sums[k] += t.sums[k]
            whole.weight_max = max(whole.weight_max, t.weight_max)
            share = part.loss_tokens / n_loss if n_loss else part.samples / sum(x.samples for x in parts.values())
            whole.loss += t.loss * share
            out[names.policy_metric(policy, "loss")] = t.loss / epochs
            out[names.policy_metric(policy, "grad_norm")] = sum(t.grad_norms) / len(t.grad_norms)
            out[names.policy_metric(policy, "samples")] = float(part.samples)
        # The adapters are disjoint parameters: the norm of their joint gradient.
        whole.grad_norms = [sum(part.totals.grad_norms[e] ** 2 for part in parts.values()) ** 0.5
                            for e in range(epochs)]
        out.update(whole.figures(epochs=epochs, loss_tokens=n_loss,
                                 tokens=sum(part.tokens for part in parts.values()),
                                 micro_batches=sum(part.micro_batches for part in parts.values()),
                                 lr=lr, elapsed=elapsed))
        return out

    @torch.no_grad()
    def logprobs(self, samples: list[Sample]) -> list[list[float]]:
        """The current policy's log-probs of every response token of each sample (aligned with
        ``response_ids``, loss mask ignored), e.g. to compare with the engine's. With several
        policies each sample is scored by its own policy's adapter."""
        self._by_policy(samples)  # refuses a sample of an unknown policy
        out = []
        for s in samples:
            self._activate(s.policy)
            mb = self._collate([s], every_token=True)
            out.append(self._logprobs(self.model, mb, with_entropy=False)[0].tolist())
        return out

    @torch.no_grad()
    def _proximal(self, batch: list[Sample]) -> Tensor:
        """The current policy's log-probs of a micro-batch's loss tokens, without gradient: the
        off-policy loss's proximal log-probs (the active adapter's: the batch's own policy's).
        Its activations are freed on return, so the pass needs no more memory than the training
        forward."""
        return self._logprobs(self.model, self._collate(batch), with_entropy=False)[0]

    def _micro_step(self, batch: list[Sample], count: int, prox: Tensor | None = None
                    ) -> tuple[float, dict[str, float]]:
        """Forward and backward of one micro-batch; the loss is divided by the step's count
        (loss tokens or sequences, :mod:`learners.loss_agg`), so gradients summed over
        micro-batches equal one big batch's. ``prox``: the proximal log-probs of its loss tokens
        (:meth:`_proximal`), for ``trainer.off_policy`` tis or decoupled."""
        reference = self._reference if self.cfg.kl_coef > 0 else None
        loss, stats = micro_batch_loss(lambda mb: self._logprobs(self.model, mb), reference,
                                       self._collate(batch)._replace(prox=prox), self.cfg, count)
        loss.backward()
        return float(loss.detach()), stats

    def _reference(self, mb: MicroBatch) -> Tensor:
        """The KL reference's log-probs (the initial policy): a frozen copy, or with LoRA the
        base itself, its adapter (with several policies: every adapter) disabled for the pass."""
        if self.ref_model is not None:
            return self._logprobs(self.ref_model, mb, with_entropy=False)[0]
        with self.model.disable_adapter():
            return self._logprobs(self.model, mb, with_entropy=False)[0]

    def _collate(self, batch: list[Sample], every_token: bool = False) -> MicroBatch:
        return collate(batch, self.device, every_token, self.cfg)

    def _logprobs(self, model: torch.nn.Module, mb: MicroBatch,
                  with_entropy: bool = True) -> tuple[Tensor, Tensor | None]:
        return gathered_logprobs(model, mb, self._head_only, self.temperature,
                                 self.cfg.logits_chunk_tokens, with_entropy)

    def _optimizer_step(self, policy: str) -> float:
        """Clip, step ``policy``'s AdamW on its master weights, copy them back; returns the grad
        norm (of that adapter's gradient alone)."""
        flat = self.flats[policy]
        norm = torch.nn.utils.clip_grad_norm_([flat.master], self.cfg.grad_clip)
        self.optimizers[policy].step()
        flat.after_step()
        return float(norm)

    def from_rank0(self, obj: T) -> T:
        """One process is rank 0: ``obj`` as it is."""
        return obj

    def barrier(self) -> None:
        """One process: nothing to wait for."""

    # -- weights in and out ----------------------------------------------------------------------

    def named_weights(self, copy: bool = True) -> Iterator[tuple[str, Tensor]]:
        """``(HF name, CPU tensor)`` for every weight as a Hugging Face checkpoint stores it: a
        tied weight once, under its first name (``lm_head.weight`` is left to the tie).

        By default each tensor is a standalone copy: the model's are views of one flat buffer,
        and pickling a view (Ray, ``torch.save``) would carry the whole buffer along. A caller
        that only reads the bytes at once (writing a weights file) passes ``copy=False``.

        With LoRA: the merged weights (:func:`merged_weights`); with several policies the base's,
        unmerged (no one merge stands for all of them; each policy is its adapter)."""
        if self.lora is not None:
            yield from merged_weights(self.model.get_base_model(), copy, () if self.several else None)
            return
        seen: set[int] = set()
        for name, tensor in self.model.state_dict(keep_vars=True).items():
            if id(tensor) not in seen:
                seen.add(id(tensor))
                yield name, tensor.detach().to("cpu", copy=copy)

    def save_model(self, path: str | Path) -> None:
        """The policy as a Hugging Face folder (weights, config, tokenizer): loadable by
        transformers and vLLM. With several policies: the base model (:meth:`named_weights`)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # With LoRA the Hugging Face model under the adapter writes the merged weights (the
        # PeftModel's own save_pretrained writes the adapter: :meth:`save_adapter`).
        hf_model = self.model if self.lora is None else self.model.get_base_model()
        # Standalone copies: safetensors refuses tensors that share one buffer.
        hf_model.save_pretrained(path, state_dict=dict(self.named_weights()), safe_serialization=True)
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._tokenizer.save_pretrained(path)

    def save_adapter(self, path: str | Path) -> None:
        """LoRA only: the adapter as a PEFT folder (``adapter_config.json``,
        ``adapter_model.safetensors``), loadable by ``peft.PeftModel.from_pretrained(base, path)``
        and by vLLM; its ``base_model_name_or_path`` is the base's absolute folder. With several
        policies: one such folder per policy, ``path/<policy>/`` (:func:`policy_folders`)."""
        if self.lora is None:
            raise RuntimeError("save_adapter: trainer.lora.rank is 0 (full fine-tuning, no adapter)")
        save_adapters(self.model, path, self._adapter)

    def save(self, path: str | Path) -> None:
        """:meth:`save_model` plus ``optimizer.pt`` (AdamW state, float32 master weights, step);
        with LoRA also the adapter in ``adapter/`` (:meth:`save_adapter`). The folder stays a
        Hugging Face model folder (merged, with LoRA; the base, with several policies) for
        whatever reads checkpoints as models. With several policies ``optimizer.pt`` holds every
        adapter's optimiser state and master weights, by policy."""
        path = Path(path)
        self.save_model(path)
        if self.lora is not None:
            self.save_adapter(path / ADAPTER_DIR)
        if not self.several:
            master = self.flat.master if self.flat.mixed else None
            state = {"optimizer": self.optimizer.state_dict(), "master": master, "step": self.step}
        else:
            state = {"optimizers": {p: opt.state_dict() for p, opt in self.optimizers.items()},
                     "masters": {p: flat.master if flat.mixed else None for p, flat in self.flats.items()},
                     "step": self.step}
        torch.save(state, path / "optimizer.pt")

    def load(self, path: str | Path) -> None:
        """Restore weights (with LoRA: the adapters'; the base is the frozen model), optimiser
        state and ``step`` from a folder written by ``save``. A checkpoint of other policies
        (adapter names) is refused."""
        path = Path(path)
        check_checkpoint(path, self.cfg.lora.rank, self.policies)
        state = torch.load(path / "optimizer.pt", map_location=self.device, weights_only=True)
        if self.several:
            optimizers, masters = state["optimizers"], state["masters"]
        else:
            only = self.policies[0]
            optimizers, masters = {only: state["optimizer"]}, {only: state.get("master")}
        with torch.no_grad():
            if self.lora is None:
                self._load_full(path)
            else:
                load_adapters(self.model, path / ADAPTER_DIR, self._adapter, self.device)
            for policy, flat in self.flats.items():
                if flat.mixed:
                    # The master copy holds the precision bf16 weights lack; fall back to them.
                    master = masters.get(policy)
                    flat.master.copy_(master if master is not None else flat.flat)
        for policy, optimizer in self.optimizers.items():
            optimizer.load_state_dict(optimizers[policy])
        self.step = int(state["step"])

    def _load_full(self, path: Path) -> None:
        """Every weight from the Hugging Face folder ``path``, copied into the flat buffer."""
        from transformers import AutoModelForCausalLM

        weights = dict(AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).named_parameters())
        for name, p in self.model.named_parameters():
            p.copy_(weights[name])  # in place: p is a view of the flat buffer
