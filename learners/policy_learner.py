"""The interface both learners share: what :class:`learners.learner_worker.LearnerWorker` may call.

Two classes implement it: :class:`learners.learner.Learner` (one process, one device) and
:class:`learners.sharded.ShardedLearner` (one rank of an FSDP2 group). The worker calls the same
methods on either; the collective ones (:meth:`PolicyLearner.from_rank0`,
:meth:`PolicyLearner.barrier`, :meth:`PolicyLearner.named_weights` when sharded, ``save``) are
no-ops or plain calls in one process, so the worker's sequence of calls is the same for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol, Sequence, TypeVar, runtime_checkable

import torch
from torch import Tensor

from selfplay.core.config_schema import LoraConfig, TrainerConfig
from selfplay.core.samples import Sample

T = TypeVar("T")


@runtime_checkable
class PolicyLearner(Protocol):
    """A policy, its optimizer and the gradient step, on one rank of ``world_size``."""

    #: ``train_step`` calls so far (restored by ``load``).
    step: int
    rank: int
    world_size: int
    device: torch.device
    model: torch.nn.Module
    #: ``trainer.lora`` when only a LoRA adapter trains (its rank > 0), else None (full weights).
    lora: LoraConfig | None

    def train_step(self, samples: list[Sample]) -> dict[str, float]:
        """One step on the whole batch (every rank passes the same list); ``learner/*`` figures."""
        ...

    def logprobs(self, samples: list[Sample]) -> list[list[float]]:
        """The current policy's log-probs of every response token of each sample."""
        ...

    def named_weights(self, copy: bool = True) -> Iterator[tuple[str, Tensor]]:
        """``(Hugging Face name, CPU tensor)`` for every weight (sharded: gathered, collective)."""
        ...

    def save_model(self, path: str | Path) -> None:
        """The policy as a Hugging Face folder (sharded: collective, rank 0 writes)."""
        ...

    def save_adapter(self, path: str | Path) -> None:
        """LoRA only: the adapter as a PEFT folder (``adapter_config.json``,
        ``adapter_model.safetensors``), loadable by ``peft.PeftModel.from_pretrained``; with
        several policies one such folder per policy, ``path/<policy>/``."""
        ...

    def save(self, path: str | Path) -> None:
        """``save_model`` plus the optimizer state, exactly resumable (every rank, one path)."""
        ...

    def load(self, path: str | Path) -> None:
        """Restore what ``save`` wrote."""
        ...

    def from_rank0(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (one process: ``obj`` itself)."""
        ...

    def barrier(self) -> None:
        """Wait until every rank gets here (one process: returns at once)."""
        ...


def make_learner(model_path: str, trainer: TrainerConfig, *, seed: int = 0, temperature: float = 1.0,
                 rank: int = 0, world_size: int = 1, master_addr: str = "127.0.0.1",
                 master_port: int = 0, policies: Sequence[str] = ()) -> PolicyLearner:
    """The learner for ``world_size`` ranks: the plain one for 1, a sharded rank otherwise.
    ``policies``: the adapters trained (:class:`learners.learner.Learner`); several need one rank."""
    if world_size > 1:
        if len(policies) > 1:  # before joining the group: every rank refuses alike
            raise ValueError(f"policies {', '.join(policies)}: several policies need "
                             f"cluster.learner_ranks=1 (the sharded learner trains full weights)")
        from learners.sharded import ShardedLearner

        return ShardedLearner(model_path, trainer, rank=rank, world_size=world_size,
                              master_addr=master_addr, master_port=master_port, seed=seed,
                              temperature=temperature)
    from learners.learner import Learner

    return Learner(model_path, trainer, seed=seed, temperature=temperature, policies=policies)
