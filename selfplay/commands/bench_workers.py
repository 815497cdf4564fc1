"""``selfplay eval --bench`` on several rollout workers: a config with ``rollout.num_workers`` > 1
starts them as training does (Ray, local and private unless ``cluster.address`` names a cluster;
the workers' bundles of training's layout, without the learner's), and splits every benchmark's
problems over them as ``Driver.evaluate_benches`` does: problem ``i`` to worker ``i mod N``, so
each worker gets a share of every level of a file sorted by difficulty. Every problem is answered
once, all its samples on one worker, so the records are those of one worker, merged.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from selfplay.config import Config, RolloutConfig
from selfplay.core.bench_spec import BenchSpec, bench_calls, merge, split_problems

log = logging.getLogger("selfplay.eval")

class BenchWorkers:
    """Ray started (or joined) once and the workers' placement group reserved once; each model
    gets fresh workers in those bundles (:meth:`answer`)."""

    def __init__(self, cfg: Config) -> None:
        import ray

        from selfplay.placement.layout import plan_layout
        from selfplay.placement.ray_session import cluster_address, reserve, start_ray

        self.cfg = cfg
        self.started_ray = start_ray(cfg)
        layout = plan_layout(cfg.cluster, cfg.rollout.num_workers, local=cluster_address(cfg) is None,
                             local_cpus=ray.cluster_resources().get("CPU", 1.0))
        # Each worker reserves what it reserves in training; no learner in an evaluation.
        self.layout = replace(layout, learners=())
        self.pg = reserve(self.layout, cfg.cluster.placement_timeout_s)

    def answer(self, model_path: str, rollout: RolloutConfig, specs: list[BenchSpec], counts: dict[str, int],
               samples: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
        """Every benchmark's answers by one model on all the workers at once."""
        import ray

        from selfplay.loop.rollout_pool import RolloutPool

        pool = RolloutPool(replace(self.cfg, rollout=rollout), model_path, self.layout, self.pg, first_bundle=0)
        try:
            pool.start()
            log.info("benchmarks on %d rollout workers", len(pool))
            calls, owners = bench_calls(specs, counts, samples, self.cfg.seed, len(pool))
            return merge(owners, pool.call_many(calls), [s.name for s in specs])
        finally:
            pool.shutdown()
            for worker in pool.workers:  # free the bundles for the next model's workers
                ray.kill(worker, no_restart=True)

    def close(self) -> None:
        from ray.util.placement_group import remove_placement_group

        from selfplay.placement.ray_session import stop_ray

        remove_placement_group(self.pg)
        if self.started_ray:
            stop_ray()


__all__ = ["split_problems", "bench_calls", "merge", "BenchWorkers"]
