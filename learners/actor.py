"""The learner actor: turns finished episodes into an update, and owns what the update needs.

It holds the policy (:class:`learners.learner.Learner`) and the advantage estimator together, so
credit assignment happens in one process (SPIRAL split it between actors and learner). A plain
class; the driver wraps it with ``ray.remote``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from actors.weight_sync import shm_path, write_safetensors
from learners.learner import Learner
from selfplay.advantages import make_estimator
from selfplay.checkpoint import load_checkpoint, save_checkpoint
from selfplay.config import Config
from selfplay.core.precision import resolve_dtype, torch_dtype
from selfplay.episode_metrics import short_env
from selfplay.types import Episode



class LearnerActor:
    """Advantages, gradient steps, weight files for the engines, and checkpoints."""

    def __init__(self, cfg: Config, model_path: str, num_threads: int | None = None) -> None:
        if num_threads:  # Ray caps actors at their CPU share; the loop is synchronous, so use all
            torch.set_num_threads(num_threads)
        self.cfg = cfg
        self.learner = Learner(model_path, cfg.trainer, seed=cfg.seed,
                               temperature=cfg.rollout.temperature)
        self.estimator = make_estimator(cfg.advantage)
        # The engines' dtype, resolved as the workers resolve it (Ray hides GPUs from actors that
        # asked for none), so that weight files need no cast on the engine's side.
        engine_device = "cuda" if cfg.cluster.worker_gpus > 0 else "cpu"
        self.engine_dtype = torch_dtype(resolve_dtype(cfg.rollout.dtype, engine_device)[0])

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        """Compute advantages for the episodes' samples and take one training step."""
        samples = [s for e in episodes for s in e.samples]
        if not samples:
            return {"learner/samples": 0.0}
        self.estimator.compute(samples)
        stats = self.learner.train_step(samples)
        stats["learner/samples"] = float(len(samples))
        stats["learner/advantage_mean"] = sum(s.advantage for s in samples) / len(samples)
        for (env_id, role), value in self.estimator.baselines().items():
            stats[f"game/{short_env(env_id)}/baseline/p{role}"] = value
        return stats

    def write_weights(self) -> tuple[str, dict[str, float]]:
        """Write the current weights, in the engines' dtype, to a RAM file for same-node workers;
        returns its path (the caller deletes it once every worker has loaded it)."""
        start = time.perf_counter()
        path = shm_path()
        nbytes = write_safetensors(path, self.learner.named_weights(copy=False),
                                   dtype=self.engine_dtype)
        return path, {"sync/write_s": time.perf_counter() - start, "sync/mb": nbytes / 1e6}

    def save_snapshot(self, path: str) -> str:
        """Freeze the current policy as a Hugging Face folder (an opponent for the pool)."""
        tmp = Path(f"{path}.tmp")
        self.learner.save_model(tmp)
        os.replace(tmp, path)  # a snapshot folder is complete or absent
        return path

    def named_weights(self) -> list[tuple[str, torch.Tensor]]:
        """The weights as (name, tensor) pairs, for workers on other nodes."""
        return list(self.learner.named_weights())

    def save(self, run_dir: str, step: int, extra: dict[str, Any]) -> str:
        """Write a checkpoint atomically; returns its folder."""
        state = dict(extra, advantage=self.estimator.state_dict())
        return str(save_checkpoint(Path(run_dir), step, self.learner, state,
                                   keep_last=self.cfg.checkpoint.keep_last))

    def restore(self, path: str) -> dict[str, Any]:
        """Load a checkpoint into the policy, optimizer and estimator; returns its state."""
        state = load_checkpoint(Path(path), self.learner)
        self.estimator.load_state_dict(state.get("advantage", {}))
        return state

    def pid(self) -> int:
        return os.getpid()

    def init_nccl(self, workers: list[Any]) -> None:
        """Join vLLM's NCCL weight-transfer group with the rollout workers (GPU only)."""
        import ray

        from learners.nccl_publisher import NCCLPublisher, free_port

        call = lambda i, method, payload: ray.get(workers[i].weight_transfer.remote(method, payload))  # noqa: E731
        address = ray.util.get_node_ip_address()
        self.nccl = NCCLPublisher(self.learner.model, call, len(workers), address, free_port())

    def publish_nccl(self) -> dict[str, float]:
        """Send the current weights to every engine over NCCL."""
        start = time.perf_counter()
        self.nccl.publish()
        return {"sync/nccl_s": time.perf_counter() - start}

    def remove_file(self, path: str) -> None:
        """Delete a weights file this actor wrote (it lives on this actor's node)."""
        if os.path.exists(path):
            os.remove(path)

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()
