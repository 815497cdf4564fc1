"""Runs the sharded learner on N local CPU ranks (gloo, spawned processes, no Ray) for the tests.

``run_ranks(fn, world_size, *args)`` spawns ``world_size`` processes of one thread each, each
calling ``fn(rank, world_size, port, *args)``; a failure on any rank fails the call. The rank
functions live here, at module level, so the spawned processes can import them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from learners.checkpoint import load_checkpoint
from learners.ranks import spawn_local_ranks


def run_ranks(fn, world_size: int, *args) -> None:
    spawn_local_ranks(fn, world_size, *args)


def first_gradient(learner) -> dict[str, torch.Tensor]:
    """Filled, at the learner's next optimiser step, with the full (clipped) gradient of every
    parameter, gathered from the shards (a collective, so every rank records it)."""
    seen: dict[str, torch.Tensor] = {}
    step = learner.optimizer.step

    def recording_step(*args, **kwargs):
        if not seen:
            seen.update({n: p.grad.full_tensor().clone() for n, p in learner.model.lm.named_parameters()})
        return step(*args, **kwargs)

    learner.optimizer.step = recording_step
    return seen


def reference_gradient(learner) -> dict[str, torch.Tensor]:
    """Filled, at a single-process learner's next optimiser step, with every parameter's
    (clipped) gradient: the reference a sharded step is compared with."""
    seen: dict[str, torch.Tensor] = {}
    step = learner.optimizer.step

    def recording_step(*args, **kwargs):
        if not seen:
            seen.update({n: p.grad.clone() for n, p in learner.model.named_parameters()})
        return step(*args, **kwargs)

    learner.optimizer.step = recording_step
    return seen


def checkpoint_round_trip(rank: int, world_size: int, port: int, model: str, trainer, samples,
                          out: str) -> None:
    """Step, checkpoint (collectively), step; then a fresh learner loads the checkpoint and
    repeats the second step: its weights must equal the first learner's."""
    from learners.checkpoint import begin_checkpoint, finish_checkpoint
    from learners.sharded import ShardedLearner
    import torch.distributed as dist

    out_dir = Path(out)
    learner = ShardedLearner(model, trainer, rank=rank, world_size=world_size, master_port=port)
    results = {"loaded": dict(learner.named_weights())}
    results["grads1"] = first_gradient(learner)
    results["stats1"] = learner.train_step(samples)
    results["step1"] = dict(learner.named_weights())
    # The checkpoint: rank 0 makes the temporary folder, all ranks write into it, rank 0 commits.
    tmp = [str(begin_checkpoint(out_dir / "run", 1)) if rank == 0 else None]
    dist.broadcast_object_list(tmp, src=0)
    learner.save(tmp[0])
    dist.barrier()
    if rank == 0:
        finish_checkpoint(out_dir / "run", 1, Path(tmp[0]), {"note": "x"})
    dist.barrier()
    second = samples[::-1][: max(1, len(samples) - 2)]
    results["stats2"] = learner.train_step(second)
    results["step2"] = dict(learner.named_weights())
    resumed = ShardedLearner(model, trainer, rank=rank, world_size=world_size, master_port=port)
    state = load_checkpoint(out_dir / "run" / "checkpoints" / "step-1", resumed)
    results["resumed_state"] = state
    results["resumed_step"] = resumed.step
    results["resumed_stats2"] = resumed.train_step(second)
    results["resumed_step2"] = dict(resumed.named_weights())
    if rank == 0:
        torch.save(results, out_dir / f"results-{world_size}.pt")


def first_steps(rank: int, world_size: int, port: int, model: str, trainers, samples,
                out: str) -> None:
    """For each trainer config in turn: a fresh sharded learner takes one step on ``samples``;
    rank 0 saves each one's full first gradient and figures to ``out``."""
    from learners.sharded import ShardedLearner

    results = []
    for trainer in trainers:
        learner = ShardedLearner(model, trainer, rank=rank, world_size=world_size,
                                 master_port=port, temperature=0.7)
        grads = first_gradient(learner)
        stats = learner.train_step(samples)
        results.append({"grads": grads, "stats": stats})
    if rank == 0:
        torch.save(results, out)
