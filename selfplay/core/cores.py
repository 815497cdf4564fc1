"""Which CPU cores each side of the loop runs on (``cluster.learner_cores``, ``cluster.worker_cores``).

Overlapping rollout and learning (``trainer.max_staleness`` >= 1) only pays if the two do not
fight for the same cores: vLLM on CPU binds its compute threads to cores and its engine process
polls busily, and torch's threads in the learner spin on OpenMP barriers. Pure functions; the
processes apply them (:func:`pin`) at their edge.
"""

from __future__ import annotations

import os

__all__ = ["parse_cores", "format_cores", "local_split", "resolve_cores", "pin", "available_cpus"]


def parse_cores(text: str) -> list[int] | None:
    """``"0"``, ``"0,2"``, ``"2-5"``, ``"0,4-6"`` -> the sorted core ids; None if malformed."""
    cores: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            return None
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            return None
        cores.update(range(first, last + 1))
    return sorted(cores)


def format_cores(cores: list[int]) -> str:
    """The inverse of :func:`parse_cores`, as a comma list (vLLM's ``VLLM_CPU_OMP_THREADS_BIND``
    accepts it)."""
    return ",".join(str(c) for c in cores)


def local_split(cpus: list[int]) -> tuple[list[int], list[int]]:
    """``(worker_cores, learner_cores)`` for the asynchronous loop on one machine: the first half
    to the rollout workers, the rest to the learner (on 2 cores: core 0 and core 1). One core
    cannot be split: both sides get it."""
    if len(cpus) < 2:
        return list(cpus), list(cpus)
    half = len(cpus) // 2
    return list(cpus[:half]), list(cpus[half:])


def resolve_cores(learner_cores: str | int | None, worker_cores: str | int | None, asynchronous: bool,
                  local: bool, cpus: list[int]) -> tuple[list[int] | None, list[int] | None]:
    """``(worker_cores, learner_cores)``: what the config names, else, on a local machine in the
    asynchronous loop, :func:`local_split` of ``cpus`` (a side named in the config keeps its
    cores and the other side takes the rest); None: no pinning (the synchronous loop, where the
    two sides take turns and each may use every core; a cluster, where they hold separate nodes
    or GPUs)."""
    learner = parse_cores(str(learner_cores)) if learner_cores is not None else None
    worker = parse_cores(str(worker_cores)) if worker_cores is not None else None
    if asynchronous and local and (learner is None or worker is None):
        default_worker, default_learner = local_split(cpus)
        if learner is None and worker is None:
            worker, learner = default_worker, default_learner
        elif learner is None:
            learner = [c for c in cpus if c not in worker] or list(cpus)
        else:
            worker = [c for c in cpus if c not in learner] or list(cpus)
    return worker, learner


def available_cpus(limit: int | None = None) -> list[int]:
    """The cores this process may run on (its affinity), the first ``limit`` of them if given
    (a local Ray told ``cluster.num_cpus``)."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[:limit] if limit else cpus


def pin(cores: list[int]) -> None:
    """Run this process (and the threads and processes it starts afterwards) on ``cores``."""
    os.sched_setaffinity(0, set(cores))
