"""Bounded staleness (``trainer.max_staleness`` k): the rules of the asynchronous loop, as pure
functions (no Ray), so they are easy to test.

Versions: the learner's version is the number of updates it has applied; training step ``s``
(from 0) is taken by the learner at version ``s`` and makes version ``s + 1``, which the driver then
publishes. Every generated turn records the version of the weights that wrote it: the version when
its generation started, which, if an update landed while it was being generated, is the oldest
version behind any of its tokens (:class:`selfplay.core.samples.Sample` ``weight_version``).

* **Capacity** (AReaL's rule): the batch of step ``s`` may start only once the published version
  is at least ``s - k``, so no worker is ever more than k steps ahead of the learner and nothing
  is generated only to be thrown away. With k = 0 this is the synchronous loop.
* **Staleness** of a sample trained at step ``s``: ``s - weight_version``. A sample staler than k
  is dropped and counted (the capacity rule keeps that at zero unless something went wrong, for
  instance a batch replayed from an old plan).
* Updates land whenever the learner publishes, between turns or inside one (vLLM pauses the
  requests in flight and resumes them with the new weights); an episode may span several
  versions, each turn carries its own.
"""

from __future__ import annotations

from itertools import takewhile

from selfplay.core import metric_names as names
from selfplay.core.samples import Sample

__all__ = ["may_start", "launchable", "split_stale", "staleness_figures"]


def may_start(step: int, published: int, max_staleness: int) -> bool:
    """Whether the batch of training step ``step`` may start generating while the workers hold
    weight version ``published``: at most ``max_staleness`` steps ahead of the learner."""
    return step - published <= max_staleness


def launchable(next_step: int, published: int, max_staleness: int, steps: int) -> list[int]:
    """The steps from ``next_step`` on whose batches may start now (capacity rule), up to the run's
    last step ``steps - 1``."""
    return list(takewhile(lambda step: may_start(step, published, max_staleness), range(next_step, steps)))


def split_stale(samples: list[Sample], learner_version: int, max_staleness: int
                ) -> tuple[list[Sample], list[Sample]]:
    """``(fresh, stale)``: samples whose turn's weights are at most ``max_staleness`` versions
    behind ``learner_version``, and the rest."""
    fresh = [s for s in samples if learner_version - s.weight_version <= max_staleness]
    stale = [s for s in samples if learner_version - s.weight_version > max_staleness]
    return fresh, stale


def staleness_figures(samples: list[Sample], learner_version: int, dropped: int) -> dict[str, float]:
    """``learner/staleness_{mean,max}`` over the samples trained on, ``learner/dropped/stale``."""
    lags = [learner_version - s.weight_version for s in samples]
    return {names.STALENESS_MEAN: sum(lags) / len(lags) if lags else 0.0,
            names.STALENESS_MAX: float(max(lags, default=0)),
            names.DROPPED_STALE: float(dropped)}
