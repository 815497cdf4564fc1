"""The sharded learner: one rank of a group of processes that together hold and train the policy.

:class:`ShardedLearner` has :class:`learners.learner.Learner`'s surface (``train_step``,
``logprobs``, ``named_weights``, ``save_model``, ``save``, ``load``, ``lr_at``, ``step``), but its
model is sharded with FSDP2 (:mod:`learners.fsdp_model`) over ``world_size`` ranks, so each rank
holds 1/N of the float32 master weights, gradients and AdamW state. Every method is collective:
all ranks call it, in the same order, with the same arguments.

One step: every rank receives the same batch (advantages already set: they are computed once,
before the split), takes its share by :func:`learners.step_parts.split_by_tokens`, and packs it
into micro-batches. Ranks run the same number of micro-batches (a rank with fewer runs empty ones:
each forward and backward is a collective), every loss is divided by the *global* count of the
loss aggregation (loss tokens, or sequences, summed over all ranks: :mod:`learners.loss_agg`),
and gradients are summed across ranks, so N ranks make the update one rank makes on the whole
batch. With ``trainer.off_policy`` tis or decoupled, every rank first runs the policy without
gradient over the same rounds of micro-batches (empty ones included: the forward is collective),
for the proximal log-probs of :mod:`learners.off_policy`. The gradient norm is clipped over the
sharded gradients (``clip_grad_norm_`` reduces the DTensor norms across ranks), then AdamW steps
each rank's shard.

Checkpoints: :meth:`save` writes the Hugging Face folder once (rank 0, from full tensors gathered
one decoder layer at a time), and the float32 master weights, AdamW state and the step sharded
with ``torch.distributed.checkpoint`` under ``sharded/`` (each rank writes its own file), so
every rank must see the same folder (one node, or a shared file system).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Iterator, TypeVar

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import Tensor
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.tensor import DTensor

from learners.fsdp_model import build_sharded_policy, drain, iter_full_weights
from learners.learner import LearnerBase
from learners.loss_agg import step_count
from learners.step_parts import (MicroBatch, StepTotals, collate, micro_batch_loss,
                                  pack_micro_batches, split_by_tokens)
from learners.ranks import all_max, all_sum, barrier, from_rank0, join_rank_group, leave_rank_group
from selfplay.core.config_schema import TrainerConfig
from selfplay.core.samples import Sample

__all__ = ["ShardedLearner", "SHARDED_DIR"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The folder, inside a checkpoint, of the sharded master weights, AdamW state and step.
SHARDED_DIR = "sharded"
_SHARD_BYTES = 2 * 2**30  # safetensors files of the HF folder: at most about this size


class ShardedLearner(LearnerBase):
    """One rank of the sharded learner. ``step`` counts ``train_step`` calls. Full weights only:
    LoRA (``trainer.lora``) is the single-process learner's (``lora`` is always None here)."""

    lora = None

    def __init__(self, model_path: str, trainer: TrainerConfig, *, rank: int, world_size: int,
                 master_addr: str = "127.0.0.1", master_port: int = 29500, seed: int = 0,
                 temperature: float = 1.0) -> None:
        if trainer.lora.rank > 0:  # before joining the group: every rank refuses alike
            raise ValueError(f"trainer.lora.rank={trainer.lora.rank}: LoRA needs cluster.learner_ranks=1 "
                             f"(the sharded learner trains full weights)")
        super().__init__(model_path, trainer, seed, temperature)
        why = self.dtype_reason
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.mesh = join_rank_group(rank, world_size, master_addr, master_port, self.device)
        self.rank, self.world_size = rank, world_size
        if rank == 0:
            log.info("learner: %d ranks, FSDP2, %s compute, float32 master weights on %s (%s)",
                     world_size, str(self.dtype).removeprefix("torch."), self.device.type, why)
        chunk = trainer.logits_chunk_tokens
        self.model = build_sharded_policy(self.model_path, self.mesh, self.device, self.dtype,
                                          temperature, trainer.gradient_checkpointing, chunk=chunk)
        self.ref_model = None
        if trainer.kl_coef > 0:  # the frozen initial policy, anchoring the KL penalty
            self.ref_model = build_sharded_policy(self.model_path, self.mesh, self.device,
                                                  self.dtype, temperature, trainable=False,
                                                  chunk=chunk)
        # foreach, not fused: fused AdamW also takes DTensors, but foreach is the path FSDP2's
        # own tests and torchtitan run on every backend.
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=trainer.lr,
                                           betas=tuple(trainer.betas),
                                           weight_decay=trainer.weight_decay, foreach=True)
        self.step = 0
        self._tokenizer = None  # loaded on first save

    def from_rank0(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (collective)."""
        return from_rank0(obj, self.device)  # type: ignore[return-value]

    def barrier(self) -> None:
        """Wait until every rank gets here (collective)."""
        barrier()

    def close(self) -> None:
        """Leave the process group (after the last collective call)."""
        leave_rank_group()

    # -- the step -------------------------------------------------------------------------------

    def train_step(self, samples: list[Sample]) -> dict[str, float]:
        """One training step on the whole batch ``samples`` (the same list on every rank): this
        rank trains on its token-balanced share. Returns ``learner/*`` figures of the whole step
        (the same on every rank)."""
        if not samples:
            raise ValueError("train_step needs at least one sample")
        mine = split_by_tokens([s.num_tokens for s in samples], self.world_size)[self.rank]
        return self.train_shard([samples[i] for i in mine])

    def train_shard(self, shard: list[Sample]) -> dict[str, float]:
        """One training step where each rank passes its own share of the batch (possibly empty);
        token and sequence counts are summed across ranks, so the step is that of the union of the
        shares."""
        start = time.perf_counter()
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = pack_micro_batches([s.num_tokens for s in shard], self.cfg.micro_batch_tokens)
        loss_tokens = [sum(s.loss_mask) for s in shard]
        n_loss, count, tokens, n_batches = all_sum(
            [sum(loss_tokens), step_count(self.cfg.loss_agg, loss_tokens),
             sum(s.num_tokens for s in shard), len(batches)], self.device)
        if n_batches == 0:
            raise ValueError("train_shard needs at least one sample on some rank")
        rounds = int(all_max([len(batches)], self.device)[0])
        off_policy = self.cfg.off_policy != "none"
        # Before the first optimiser step, every rank its own micro-batches in the training
        # pass's order (each forward all-gathers the shards: all ranks run the same rounds).
        prox = ([self._proximal(self._micro_batch(shard, batches, i)) for i in range(rounds)]
                if off_policy else [None] * rounds)
        totals = StepTotals(off_policy=off_policy)
        for _ in range(self.cfg.epochs):
            for i in range(rounds):
                mb = self._micro_batch(shard, batches, i)._replace(prox=prox[i])
                reference = None if self.ref_model is None else self._reference_logprobs
                loss, stats = micro_batch_loss(self._policy_logprobs, reference, mb, self.cfg,
                                               max(count, 1))
                loss.backward()
                totals.add(float(loss.detach()), stats)
            totals.grad_norms.append(self._optimizer_step())
        self.step += 1
        summed = totals.as_tensor().to(self.device)
        dist.all_reduce(summed)
        totals.set_from_tensor(summed.cpu())
        if off_policy:
            totals.weight_max = all_max([totals.weight_max], self.device)[0]
        return totals.figures(epochs=self.cfg.epochs, loss_tokens=int(n_loss), tokens=int(tokens),
                              micro_batches=int(n_batches), lr=lr,
                              elapsed=time.perf_counter() - start)

    def _micro_batch(self, shard: list[Sample], batches: list[list[int]], i: int) -> MicroBatch:
        """Micro-batch ``i`` of this rank's share, or an empty one past its last."""
        if i < len(batches):
            return collate([shard[j] for j in batches[i]], self.device, cfg=self.cfg)
        return self._empty_micro_batch()

    @torch.no_grad()
    def _proximal(self, mb: MicroBatch) -> Tensor:
        """The current policy's log-probs of ``mb``'s loss tokens without gradient (the
        off-policy loss's proximal log-probs); collective, like every forward."""
        return self._policy_logprobs(mb, with_entropy=False)[0]

    def _policy_logprobs(self, mb: MicroBatch, with_entropy: bool = True
                         ) -> tuple[Tensor, Tensor | None]:
        return self.model(mb.ids, mb.attention, mb.rows, mb.cols, mb.targets, with_entropy,
                          mb.allowed_pos, mb.allowed_tok)

    def _reference_logprobs(self, mb: MicroBatch) -> Tensor:
        assert self.ref_model is not None
        return self.ref_model(mb.ids, mb.attention, mb.rows, mb.cols, mb.targets, False,
                              mb.allowed_pos, mb.allowed_tok)[0]

    def _empty_micro_batch(self) -> MicroBatch:
        """A one-token sequence with no loss token: its forward and backward take part in every
        collective and add exactly zero to loss and gradient."""
        one = torch.zeros(1, 1, dtype=torch.long, device=self.device)
        none = torch.zeros(0, dtype=torch.long, device=self.device)
        empty = torch.zeros(0, dtype=torch.float32, device=self.device)
        return MicroBatch(one, torch.ones_like(one), none, none, none, empty, empty, empty)

    def _optimizer_step(self) -> float:
        """Clip the global gradient norm over the shards, step AdamW; returns the norm."""
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if isinstance(norm, DTensor):  # replicated on every rank after the norms' all-reduce
            norm = norm.full_tensor()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @torch.no_grad()
    def logprobs(self, samples: list[Sample]) -> list[list[float]]:
        """The current policy's log-probs of every response token of each sample (the same
        samples on every rank; every rank gets the answer)."""
        out = []
        for s in samples:
            mb = collate([s], self.device, every_token=True)
            out.append(self._policy_logprobs(mb, with_entropy=False)[0].tolist())
        return out

    # -- weights in and out ----------------------------------------------------------------------

    def named_weights(self, copy: bool = True, dtype: torch.dtype | None = None
                      ) -> Iterator[tuple[str, Tensor]]:
        """``(HF name, full CPU tensor)`` for every weight, gathered one decoder layer at a time
        (:func:`learners.fsdp_model.iter_full_weights`): what a weight publisher consumes.
        Every tensor is a standalone copy (``copy`` is accepted for ``Learner``'s signature).
        Collective: ranks other than 0 must drain it too (``learners.fsdp_model.drain``)."""
        del copy
        return iter_full_weights(self.model, dtype=dtype)

    def save_model(self, path: str | Path) -> None:
        """The policy as a Hugging Face folder (weights in the compute dtype, config, tokenizer),
        written by rank 0 only; the other ranks take part in the gathers."""
        path = Path(path)
        if self.rank != 0:
            drain(iter_full_weights(self.model, keep=False))
            return
        from safetensors.torch import save_file
        from transformers import AutoTokenizer

        path.mkdir(parents=True, exist_ok=True)
        files: list[dict[str, Tensor]] = [{}]
        size = 0
        for name, tensor in iter_full_weights(self.model, dtype=self.dtype):
            if size and size + tensor.nbytes > _SHARD_BYTES:
                files.append({})
                size = 0
            files[-1][name] = tensor
            size += tensor.nbytes
        index = {}
        for i, tensors in enumerate(files):
            fname = ("model.safetensors" if len(files) == 1
                     else f"model-{i + 1:05d}-of-{len(files):05d}.safetensors")
            save_file(tensors, str(path / fname), metadata={"format": "pt"})
            index.update(dict.fromkeys(tensors, fname))
        if len(files) > 1:
            total = sum(t.nbytes for tensors in files for t in tensors.values())
            (path / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": index}, indent=1))
        config = self.model.lm.config
        config.dtype = self.dtype  # as the folder stores the weights
        config.save_pretrained(path)
        if getattr(self.model.lm, "generation_config", None) is not None:
            self.model.lm.generation_config.save_pretrained(path)
        if self._tokenizer is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._tokenizer.save_pretrained(path)

    def _state(self) -> dict:
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        return {"model": model_sd, "optim": optim_sd,
                "learner": {"step": torch.tensor(self.step), "world_size": torch.tensor(self.world_size)}}

    def save_adapter(self, path: str | Path) -> None:
        """No adapter: the sharded learner trains full weights (LoRA is refused at construction)."""
        raise RuntimeError("save_adapter: the sharded learner has no LoRA adapter")

    def save(self, path: str | Path) -> None:
        """:meth:`save_model` plus ``sharded/``: float32 master weights, AdamW state and the step,
        one file per rank (``torch.distributed.checkpoint``). Every rank passes the same path."""
        path = Path(path)
        self.save_model(path)
        dcp.save(self._state(), checkpoint_id=str(path / SHARDED_DIR))

    def load(self, path: str | Path) -> None:
        """Restore master weights, AdamW state and ``step`` from a folder written by :meth:`save`
        (with the same number of ranks; the HF folder is not read: ``sharded/`` is exact)."""
        state = self._state()
        dcp.load(state, checkpoint_id=str(Path(path) / SHARDED_DIR))
        saved_ranks = int(state["learner"]["world_size"])
        if saved_ranks != self.world_size:
            log.warning("checkpoint %s was written by %d learner ranks, resharded onto %d",
                        path, saved_ranks, self.world_size)
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optim"])
        self.step = int(state["learner"]["step"])
