"""The asynchronous loop (``trainer.max_staleness`` k >= 1): batches generate while the learner trains.

The driver keeps up to k + 1 batches going: while the learner trains step ``s``, the workers
generate the batches of steps ``s + 1 .. s + k`` (all at once on each engine: continuous batching).
A batch starts as soon as the capacity rule allows (:func:`selfplay.core.staleness.launchable`):
right after each step's bookkeeping (evaluation, snapshot, curriculum), so that its plan (levels,
snapshot opponents) is what a resumed run would plan at that point, and before the checkpoint,
which keeps the plans of the batches in flight. New weights reach the workers as soon as the
learner has them, in the middle of their batches; every turn carries its own weight version.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from selfplay.core import metric_names as names
from selfplay.core.samples import Episode
from selfplay.core.staleness import launchable
from selfplay.stats.step_figures import busy_seconds, idle_shares

if TYPE_CHECKING:
    from selfplay.loop.driver import Driver


class Pipeline:
    """Starts batches under the capacity rule and trains on them in step order."""

    def __init__(self, driver: "Driver", max_staleness: int, steps: int, first: int) -> None:
        self.driver, self.k, self.steps = driver, max_staleness, steps
        self.next = first
        #: Per worker, the wall-clock intervals its finished batch parts ran (for idle shares).
        self.runs: dict[int, list[tuple[float, float]]] = {}
        self.last_end = time.time()

    def fill(self) -> None:
        """Start every batch the capacity rule allows now."""
        pool = self.driver.rollout
        for step in launchable(self.next, pool.weight_version, self.k, self.steps):
            # A resumed run replays the plans that were in flight at its checkpoint.
            plan = self.driver.saved_plans.pop(step, None) or self.driver.plan(step)
            self.driver.pending[step] = pool.launch(plan)
            self.next = step + 1

    def step(self, step: int) -> tuple[list[Episode], dict[str, float]]:
        """Wait for step ``step``'s batch, train on it, publish; the step's figures, with each
        side's idle share since the previous step ended."""
        if step not in self.driver.pending:
            self.fill()
        batch = self.driver.pending.pop(step)
        refs, summaries, perfs = self.driver.rollout.finish(batch, oldest_version=step - self.k)
        in_flight = len(self.driver.pending)
        learn = time.time()
        episodes, stats = self.driver.train_on(step, refs, summaries, perfs)
        end = time.time()
        for i, perf in perfs.items():
            self.runs.setdefault(i, []).append((perf.pop(names.BATCH_START), perf.pop(names.BATCH_END)))
        busy = {i: busy_seconds(self._intervals(i, end), self.last_end, end) for i in range(len(self.driver.rollout))}
        stats.update(idle_shares(end - self.last_end, busy, end - learn))
        stats[names.ASYNC_IN_FLIGHT] = float(in_flight)
        self.last_end = end
        return episodes, stats

    def _intervals(self, worker: int, now: float) -> list[tuple[float, float]]:
        """Worker ``worker``'s finished runs (older ones forgotten) and its parts of later batches:
        from start to end if they are done (not yet trained on), from launch until ``now`` if not."""
        import ray

        self.runs[worker] = [r for r in self.runs.get(worker, []) if r[1] >= self.last_end]
        runs = list(self.runs[worker])
        for batch in self.driver.pending.values():
            if worker not in batch.calls:
                continue
            perf = batch.calls[worker][2]
            done, _ = ray.wait([perf], timeout=0)
            try:
                figures = ray.get(done[0]) if done else None
            except Exception:  # noqa: BLE001 - a lost part: finish() recovers it; count it busy
                figures = None
            runs.append((figures[names.BATCH_START], figures[names.BATCH_END]) if figures
                        else (batch.launched[worker], now))
        return runs

