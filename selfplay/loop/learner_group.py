"""The learner's ranks, started as Ray actors and called as one.

With ``cluster.learner_ranks`` = 1 this is one :class:`learners.learner_worker.LearnerWorker`.
With N > 1 it is N of them, ranks of one process group (the sharded learner, FSDP2): their work
is collective, so :meth:`LearnerGroup.call` makes every call on every rank, with the same
arguments, and the driver reads rank 0's answer. The step's episodes go to rank 0 only
(:meth:`LearnerGroup.update`), which computes the advantages once and hands the samples on.
"""

from __future__ import annotations

import os
from typing import Any

from selfplay.config import Config
from selfplay.placement.layout import Layout


def rank0_address(pg: Any) -> str:
    """The IP address of the node holding bundle 0 of ``pg`` (the learner's rank 0): where the
    other ranks meet it."""
    import ray
    from ray.util.placement_group import placement_group_table

    node_id = placement_group_table(pg)["bundles_to_node_id"][0]
    return next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id)


class LearnerGroup:
    """Starts the learner's ranks in bundles ``0 .. N-1`` of ``pg`` (on ``cores`` if given:
    :mod:`selfplay.core.cores`) and calls them."""

    def __init__(self, cfg: Config, model_path: str, layout: Layout, pg: Any,
                 cores: list[int] | None = None) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from learners.learner_worker import LearnerWorker
        from learners.ranks import free_port

        cl, r = cfg.cluster, cfg.rollout
        ranks = len(layout.learners)
        # Ray caps an actor at its CPU share; the learner's loop is synchronous, so each rank
        # uses its part of the machine's cores.
        threads = max(1, (cl.num_cpus or os.cpu_count() or 1) // ranks)
        addr, port = (rank0_address(pg), free_port()) if ranks > 1 else ("127.0.0.1", 0)
        actor = ray.remote(LearnerWorker)
        # Created together: a sharded rank's constructor waits until every rank has joined.
        self.ranks = [actor.options(
            num_cpus=slot.cpus, num_gpus=slot.gpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i),
        ).remote(
            model_path, cfg.trainer, cfg.advantage, engine_dtype=r.dtype,
            # Ray hides GPUs from actors that asked for none, so this is the device engines see.
            engine_device="cuda" if cl.worker_gpus > 0 else "cpu",
            temperature=r.temperature, seed=cfg.seed, num_threads=threads, rank=i, world_size=ranks,
            master_addr=addr, master_port=port, cores=cores,
            policies=[p.name for p in cfg.policies]) for i, slot in enumerate(layout.learners)]

    def call(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """``method`` on every rank; the references, rank 0's first."""
        return [getattr(rank, method).remote(*args, **kwargs) for rank in self.ranks]

    def update(self, *episode_refs: Any) -> list[Any]:
        """A training step: the episodes to rank 0, the other ranks take part."""
        return [self.ranks[0].update.remote(*episode_refs),
                *(rank.update.remote() for rank in self.ranks[1:])]
