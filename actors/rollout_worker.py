"""The rollout worker: one generation engine, many concurrent episodes.

A plain class; Ray wraps it at the edge (``ray.remote(RolloutWorker)``), where its async methods
make it an async actor whose calls interleave on one event loop. Heavy set-up (building the
engine) happens in ``init()``, not in the constructor, so creating the actor is instant and
failures surface from a call that can report them.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Iterable

import numpy as np
import torch

from actors.engine import Engine
from actors.episodes import EpisodeLimits, EpisodeRunner
from actors.schedule import plan_evaluation, plan_training
from envs import num_players
from selfplay.config import Config
from selfplay.types import Episode

log = logging.getLogger(__name__)


def limits_from(cfg: Config) -> EpisodeLimits:
    r = cfg.rollout
    return EpisodeLimits(max_turns=r.max_turns, max_prompt_tokens=r.max_prompt_tokens,
                         timeout_s=r.episode_timeout_s, truncated_return=r.truncated_return)


class RolloutWorker:
    """Hosts one engine and plays training and evaluation episodes with it."""

    def __init__(self, cfg: Config, model_path: str, index: int = 0) -> None:
        self.cfg = cfg
        self.model_path = model_path
        self.index = index
        self.engine: Engine | None = None
        self.runner: EpisodeRunner | None = None
        #: Frozen snapshots of the policy, by pool name, each on its own (transformers) engine.
        self.snapshots: dict[str, Engine] = {}

    async def init(self) -> dict[str, float]:
        """Build the engine; returns its start-up time."""
        from actors.engines import make_engine

        start = time.perf_counter()
        r = self.cfg.rollout
        self.engine = await make_engine(
            r.backend, self.model_path, dtype=r.dtype, seed=self.cfg.seed + self.index,
            max_model_len=r.max_prompt_tokens + r.max_new_tokens, kv_cache_gib=r.kv_cache_gib,
            gpu_memory_utilization=r.gpu_memory_utilization, enforce_eager=r.enforce_eager,
            weight_sync=r.weight_sync)
        self.runner = EpisodeRunner(self.engine, self.engine.tokenizer, limits_from(self.cfg),
                                    opponent_engines=self.snapshots)
        seconds = time.perf_counter() - start
        log.info("worker %d: %s engine ready in %.1f s, %s (%s) (pid %d)", self.index, r.backend, seconds,
                 self.engine.dtype, self.engine.dtype_reason, os.getpid())
        return {"perf/engine_start_s": seconds}

    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("RolloutWorker.init() must be awaited before using the engine")
        return self.engine

    def _runner(self) -> EpisodeRunner:
        if self.runner is None:
            raise RuntimeError("RolloutWorker.init() must be awaited before playing episodes")
        return self.runner

    async def collect(self, count: int, step: int) -> tuple[list[Episode], dict[str, float]]:
        """Play ``count`` training episodes concurrently; returns them and throughput figures."""
        start = time.perf_counter()
        specs = plan_training(self.cfg, count, step, self.index)
        rng = np.random.default_rng([self.cfg.seed, step, self.index, 1])
        for spec in specs:  # "snapshot" means any frozen snapshot; self-play until one exists
            if spec.opponent == "snapshot":
                if self.snapshots:
                    spec.opponent = str(rng.choice(sorted(self.snapshots)))
                else:
                    spec.opponent, spec.policy_roles = "self", list(range(num_players(spec.env_id)))
        episodes = await self._runner().run_many(specs)
        seconds = time.perf_counter() - start
        tokens = sum(e.generated_tokens for e in episodes)
        return episodes, {"perf/rollout_s": seconds, "perf/rollout_tokens": float(tokens),
                          "perf/rollout_tokens_per_s": tokens / max(seconds, 1e-9)}

    async def evaluate(self, env_ids: list[str], opponents: list[str], games: int,
                       seed: int = 0) -> list[Episode]:
        """Play ``games`` evaluation games per (environment, opponent, seat)."""
        specs = plan_evaluation(self.cfg, env_ids, opponents, games, seed)
        return await self._runner().run_many(specs)

    async def load_snapshot(self, name: str, path: str) -> None:
        """Host a frozen snapshot (a Hugging Face folder) as an opponent named ``name``. It runs
        on the transformers engine: an opponent needs no log-probs and little throughput."""
        from actors.engines import make_engine

        if name not in self.snapshots:
            self.snapshots[name] = await make_engine("transformers", path, dtype=self.cfg.rollout.dtype,
                                                     seed=self.cfg.seed + self.index)

    def drop_snapshot(self, name: str) -> None:
        """Free a snapshot's engine (evicted from the pool)."""
        engine = self.snapshots.pop(name, None)
        if engine is not None:
            engine.shutdown()

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, float]:
        """Load new policy weights into the engine; returns timing figures."""
        return self._engine().update_weights(named_tensors)

    def update_weights_from_file(self, path: str) -> dict[str, float]:
        """Load new weights from a safetensors file on this node (the zero-copy CPU path)."""
        return self._engine().update_weights_from_file(path)

    async def weight_transfer(self, method: str, payload: dict[str, Any] | None = None) -> None:
        """One call of vLLM's NCCL weight-sync control plane, issued by the learner."""
        await self._engine().weight_transfer(method, payload)

    def node_id(self) -> str:
        """The Ray node this worker runs on (to pick the same-node weight path)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def shutdown(self) -> None:
        for name in list(self.snapshots):
            self.drop_snapshot(name)
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None
