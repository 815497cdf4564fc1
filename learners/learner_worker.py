"""The learner's worker: turns finished episodes into an update, and owns what the update needs.

It holds the policy (a :class:`learners.policy_learner.PolicyLearner`), the advantage estimator and the weight
publisher together, so credit assignment happens in one process (SPIRAL split it between actors
and learner) and the driver makes one call per step for each of update, publish and checkpoint.
A plain class; the driver wraps it with ``ray.remote`` and passes the rollout workers' episode
lists to :meth:`update` as object references, so episodes travel from the workers to here
without passing through the driver.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learners.advantages import AdvantageEstimator, make_estimator
from learners.checkpoint import begin_checkpoint, finish_checkpoint, load_checkpoint
from learners.fsdp_model import drain
from learners.policy_learner import PolicyLearner, make_learner
from learners.ranks import free_port
from learners.weight_publisher import (NCCL, NCCLPublisher, WeightPublisher, choose_transports,
                                       weight_passes)
from selfplay.core import metric_names as names
from selfplay.core.config_schema import AdvantageConfig, TrainerConfig
from selfplay.core.precision import resolve_dtype, torch_dtype
from selfplay.core.samples import Episode, Sample


def select_samples(episodes: list[Episode], estimator: AdvantageEstimator, trainer: TrainerConfig,
                   rng: np.random.Generator) -> tuple[list[Sample], dict[str, float]]:
    """The samples a step trains on, with their advantages, and how many each rule dropped.

    1. Episodes cut by the wall-clock limit are left out entirely (not trained on, not in the
       baselines): which episodes time out depends on machine load and reply length, not on the
       policy. Truncation at ``max_turns`` is a rule of the game and stays (a draw, as in SPIRAL).
    2. Advantages are computed on the rest (every episode updates the RAE baselines).
    3. With ``filter_zero_advantage``, samples whose advantage is exactly 0 are dropped.
    4. With ``samples_per_step``, that many are drawn uniformly without replacement.
    """
    kept = [s for e in episodes if e.outcome != "timeout" for s in e.samples]
    stats = {names.SAMPLES_COLLECTED: float(sum(len(e.samples) for e in episodes)),
             names.DROPPED_TIMEOUT: float(sum(len(e.samples) for e in episodes if e.outcome == "timeout"))}
    estimator.compute(kept)
    stats.update(estimator.last_stats())
    if trainer.filter_zero_advantage:
        nonzero = [s for s in kept if s.advantage != 0.0]
        stats[names.DROPPED_ZERO_ADVANTAGE] = float(len(kept) - len(nonzero))
        kept = nonzero
    if 0 < trainer.samples_per_step < len(kept):
        kept = [kept[i] for i in sorted(rng.choice(len(kept), trainer.samples_per_step, replace=False))]
    stats[names.SAMPLES] = float(len(kept))
    return kept, stats


class LearnerWorker:
    """Advantages, gradient steps, weight publishing and checkpoints.

    With ``world_size`` > 1 this is one rank of the sharded learner (:mod:`learners.sharded`,
    FSDP2): the driver starts one worker per rank and makes every call on all of them with the
    same arguments (the ranks' work is collective), reading rank 0's answer. Rank 0 alone holds
    the advantage estimator (computed once, on the whole batch, and checkpointed once), the
    episodes and the weight publisher; the other ranks receive the step's samples from it and
    take part in gathering the weights and in writing checkpoints."""

    def __init__(self, model_path: str, trainer: TrainerConfig, advantage: AdvantageConfig, *,
                 engine_dtype: str, engine_device: str, temperature: float, seed: int = 0,
                 num_threads: int | None = None, rank: int = 0, world_size: int = 1,
                 master_addr: str = "127.0.0.1", master_port: int = 0) -> None:
        if num_threads:  # Ray caps actors at their CPU share; the loop is synchronous, so use all
            torch.set_num_threads(num_threads)
        self.rank, self.world_size = rank, world_size
        self.learner: PolicyLearner = make_learner(
            model_path, trainer, seed=seed, temperature=temperature, rank=rank, world_size=world_size,
            master_addr=master_addr, master_port=master_port)
        self.trainer, self.seed = trainer, seed
        self.estimator = make_estimator(advantage)
        # The engines' dtype, resolved as the engines resolve it, so weight files need no cast there.
        self.engine_dtype = torch_dtype(resolve_dtype(engine_dtype, engine_device)[0])
        self.publisher: WeightPublisher | None = None
        self.workers: list[Any] = []
        self.transports: list[str] = []  # per rollout worker: learners.weight_publisher
        self.failed: list[int] = []  # workers whose last publish failed
        #: The weights' version: the number of updates applied (the driver's step). Sent with every
        #: publish; each rollout worker reports the version it generated with.
        self.version = 0

    def update(self, *episode_lists: list[Episode]) -> dict[str, float]:
        """Compute advantages for the episodes' samples and take one training step."""
        samples: list[Sample] = []
        stats: dict[str, float] = {}
        if self.rank == 0:  # the episodes come to rank 0 only
            episodes = [e for episodes in episode_lists for e in episodes]
            samples, stats = select_samples(episodes, self.estimator, self.trainer,
                                            np.random.default_rng([self.seed, self.learner.step]))
        samples = self.learner.from_rank0(samples)
        self.version += 1
        if samples:
            stats.update(self.learner.train_step(samples))
            stats[names.ADVANTAGE_MEAN] = sum(s.advantage for s in samples) / len(samples)
        for (env_id, opponent, role), value in self.estimator.baselines().items():
            stats[names.baseline(env_id, opponent, role)] = value
        return stats

    # -- weight publishing -------------------------------------------------------------------------

    def connect(self, workers: list[Any], worker_nodes: list[str], weight_sync: str = "auto",
                ranks_per_engine: int = 1) -> list[str]:
        """Reach the rollout workers (Ray actor handles, on Ray nodes ``worker_nodes``) for
        publishing; returns each one's transport (:func:`choose_transports`). With NCCL, rank 0
        joins vLLM's weight-transfer group with the engines, ``ranks_per_engine`` ranks each."""
        import ray

        self.workers = list(workers)
        self.transports = choose_transports(weight_sync, self.node_id(), worker_nodes)
        if self.rank > 0:
            return self.transports  # rank 0 publishes; this rank only helps gather the weights
        publisher_nccl = None
        if NCCL in self.transports:
            def call(i: int, method: str, payload: dict | None) -> Any:
                return ray.get(workers[i].weight_transfer.remote(method, payload, weight_version=self.version))

            publisher_nccl = NCCLPublisher(self.learner.model, call, len(workers),
                                           ray.util.get_node_ip_address(), free_port(), ranks_per_engine)
        self.publisher = self._publisher(list(range(len(workers))), publisher_nccl)
        return self.transports

    def _publisher(self, targets: list[int], nccl: NCCLPublisher | None = None) -> WeightPublisher:
        """A publisher to the workers ``targets``. A worker whose call fails (its process died)
        is noted in ``self.failed`` instead of failing the others' update: the driver restarts
        it and publishes to it alone."""
        import ray

        def fan_out(calls: list[tuple[str, tuple]]) -> list[Any]:
            refs = [getattr(self.workers[i], method).remote(*args, weight_version=self.version)
                    for i, (method, args) in zip(targets, calls)]
            results = []
            for i, ref in zip(targets, refs):
                try:
                    results.append(ray.get(ref))
                except Exception:  # noqa: BLE001 - the driver asks the worker what happened
                    self.failed.append(i)
                    results.append({names.SYNC_LOAD_S: 0.0})
            return results

        return WeightPublisher(lambda: self.learner.named_weights(copy=False), self.engine_dtype,
                               fan_out, [self.transports[i] for i in targets], put=ray.put, nccl=nccl)

    def publish(self, targets: list[int] | None = None) -> tuple[dict[str, float], list[int]]:
        """Send the current weights to every rollout engine (or to ``targets`` only: a restarted
        worker); returns ``sync/*`` figures and the workers whose update failed."""
        if self.rank > 0:  # gather with rank 0: the same passes over the weights as its publisher
            chosen = targets if targets is not None else range(len(self.transports))
            for _ in weight_passes([self.transports[i] for i in chosen]):
                drain(self.learner.named_weights(copy=False))
            return {}, []
        if self.publisher is None:
            raise RuntimeError("LearnerWorker.connect() must be called before publish()")
        if targets is not None and self.publisher.nccl is not None:
            raise RuntimeError("weight_sync=nccl: a restarted rollout worker cannot rejoin the NCCL "
                               "group (use rollout.weight_sync: cpu for rollout-worker fault tolerance)")
        self.failed = []
        publisher = self.publisher if targets is None else self._publisher(targets)
        stats = publisher.publish()
        stats[names.WEIGHT_VERSION] = float(self.version)
        return stats, sorted(set(self.failed))

    # -- snapshots and checkpoints ---------------------------------------------------------------

    def save_snapshot(self, path: str) -> str:
        """Freeze the current policy as a Hugging Face folder (an opponent for the pool)."""
        tmp = Path(f"{path}.tmp")
        self.learner.save_model(tmp)  # sharded: collective, rank 0 writes
        if self.rank == 0:
            os.replace(tmp, path)  # a snapshot folder is complete or absent
        return path

    def save(self, run_dir: str, step: int, extra: dict[str, Any], keep_last: int) -> str:
        """Write a checkpoint atomically; returns its folder."""
        state = dict(extra, advantage=self.estimator.state_dict())
        # Every rank writes its part into rank 0's temporary folder (one process: all of it), then
        # rank 0 alone completes and publishes it (estimator state, RNG, rename): a kill at any
        # point leaves the last complete checkpoint as it was.
        tmp = self.learner.from_rank0(begin_checkpoint(Path(run_dir), step) if self.rank == 0 else None)
        try:
            self.learner.save(tmp)
        except BaseException:
            if self.rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.learner.barrier()
        if self.rank > 0:
            return str(tmp)
        return str(finish_checkpoint(Path(run_dir), step, tmp, state, keep_last))

    def restore(self, path: str) -> dict[str, Any]:
        """Load a checkpoint into the policy, optimizer and estimator; returns its state."""
        state = load_checkpoint(Path(path), self.learner)
        self.estimator.load_state_dict(state.get("advantage", {}))
        self.version = int(state["step"])
        return state

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()
