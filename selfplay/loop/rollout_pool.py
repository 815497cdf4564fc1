"""The rollout workers as the driver sees them: Ray actors in their placement-group bundles, which
Ray restarts when their process dies, and a step's collection that survives such a death.

When a call to worker ``i`` fails, the pool asks the worker what happened (:meth:`RolloutWorker
.status`). An actor Ray restarted has run its constructor again but not ``init()``: the pool
counts the death (:class:`selfplay.loop.restarts.RestartBook`), starts its engine, lets the driver
give it the current weights and the pool's snapshot opponents (``resync``), and replays what was
lost. A lost batch is replayed by the same worker with the same worker index, so its episodes
are the same episodes (same ids and seeds) and none is counted twice; the batches the other
workers finished meanwhile are kept. The curriculum level travels with every ``collect`` call,
so a restarted worker plays at the current level. The killed worker's engine process goes with
it: Ray's raylet kills the whole process group of a dead worker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from selfplay.config import Config
from selfplay.core import metric_names as names
from selfplay.placement.layout import Layout
from selfplay.loop.restarts import RestartBook, RunAborted, one_line

log = logging.getLogger("selfplay.train")

#: A batch refused for its weight version is replayed once after a resync; a second refusal is a bug.
MAX_STALE_REPLAYS = 1


@dataclass
class BatchPlan:
    """What a step's batch is: episodes per worker, the curriculum levels and the pool's snapshot
    names when it was planned. Plain data: a checkpoint keeps the plans of batches in flight, so a
    resumed run replays them as planned."""

    step: int
    counts: list[int]
    levels: dict[str, dict[str, Any]] = field(default_factory=dict)
    frozen: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """A batch being generated: each worker's call in flight (its three references), the parts
    done, the refusals, and, per worker, its restart count and the wall time at launch."""

    plan: BatchPlan
    calls: dict[int, list[Any]]
    done: dict[int, tuple[Any, list[Any], dict[str, float]]]
    stale: dict[int, int]
    lives: dict[int, int]
    launched: dict[int, float]


class RolloutPool:
    """Creates the workers in bundles ``first_bundle + i`` of ``pg`` and calls them."""

    def __init__(self, cfg: Config, model_path: str, layout: Layout, pg: Any, first_bundle: int,
                 cores: list[int] | None = None) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from actors.rollout_worker import RolloutWorker

        cl, r = cfg.cluster, cfg.rollout
        self.book = RestartBook(cl.max_worker_restarts)
        self.wait_s = cl.placement_timeout_s
        #: Set by the driver: give worker ``i`` the current weights and snapshot opponents.
        self.resync: Callable[[int], None] = lambda i: None
        #: The weight version the workers must generate with (the learner's, after each publish).
        self.weight_version = 0
        #: Restarts of each worker so far: a call started before the last restart died with it.
        self.lives = [0] * r.num_workers
        actor = ray.remote(RolloutWorker)
        # max_task_retries=0: a call in flight when the worker dies fails (and is replayed here)
        # instead of being re-run by Ray on an actor that has no engine yet.
        self.workers = [actor.options(
            num_cpus=slot.cpus, num_gpus=slot.gpus, max_restarts=cl.max_worker_restarts, max_task_retries=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=first_bundle + i),
        ).remote(model_path, r, cfg.envs, cfg.eval, cfg.seed, i, slot.tensor_parallel, cores,
                 # LoRA served as adapters: the engine keeps those of the k + 1 newest versions.
                 lora=cfg.trainer.lora if cfg.trainer.lora.adapter_sync else None,
                 max_loras=cfg.trainer.max_staleness + 1,
                 # One adapter per policy on every worker's engine (policies:).
                 policies=cfg.policies)
            for i, slot in enumerate(layout.workers)]

    def __len__(self) -> int:
        return len(self.workers)

    def start(self) -> dict[str, float]:
        """Start every worker's engine; returns the first one's start-up figures."""
        import ray

        return ray.get([w.init.remote() for w in self.workers])[0]

    # -- calls that survive a worker's death --------------------------------------------------------

    def call(self, i: int, method: str, *args: Any) -> Any:
        """``workers[i].method(*args)``, recovering the worker and calling again if it died."""
        import ray

        while True:
            try:
                return ray.get(getattr(self.workers[i], method).remote(*args))
            except Exception as err:  # noqa: BLE001 - recover_if_lost re-raises what is no death
                if not self.recover_if_lost(i, err):
                    raise

    def call_all(self, method: str, *args: Any) -> list[Any]:
        """The same call on every worker at once."""
        return self.call_many([(i, method, args) for i in range(len(self.workers))])

    def call_many(self, calls: list[tuple[int, str, tuple]]) -> list[Any]:
        """Several calls ``(worker, method, args)`` at once; a worker that died is recovered and
        its call made again. Results in the order of ``calls``."""
        import ray

        refs = [getattr(self.workers[i], method).remote(*args) for i, method, args in calls]
        out = []
        for (i, method, args), ref in zip(calls, refs):
            try:
                out.append(ray.get(ref))
            except Exception as err:  # noqa: BLE001 - recover_if_lost re-raises what is no death
                if not self.recover_if_lost(i, err):
                    raise
                out.append(self.call(i, method, *args))
        return out

    def launch(self, plan: BatchPlan) -> Batch:
        """Start every worker's part of ``plan``'s training batch; returns at once."""
        batch = Batch(plan, {}, {}, dict.fromkeys(range(len(plan.counts)), 0), {}, {})
        for i, count in enumerate(plan.counts):
            if count:
                self._launch_part(batch, i)
        return batch

    def _launch_part(self, batch: Batch, i: int) -> None:
        plan = batch.plan
        batch.calls[i] = self.workers[i].collect.options(num_returns=3).remote(
            plan.counts[i], plan.step, plan.levels, plan.frozen)
        batch.lives[i], batch.launched[i] = self.lives[i], time.time()

    def finish(self, batch: Batch, oldest_version: int | None = None
               ) -> tuple[list[Any], dict[int, list[Any]], dict[int, dict[str, float]]]:
        """Wait for ``batch``: references to the full episodes (for the learner) and, by worker,
        their summaries and figures. A worker that dies is restarted and replays its part (the
        same episodes: same ids and seeds). ``oldest_version`` None (the synchronous loop): a
        part generated with other weights than :attr:`weight_version` is refused and replayed
        after a resync; otherwise a part whose oldest weights are older than that is."""
        import ray

        step = batch.plan.step
        while batch.calls:
            by_ref = {refs[2]: i for i, refs in batch.calls.items()}
            ready, _ = ray.wait(list(by_ref), num_returns=1)
            i = by_ref[ready[0]]
            episodes, summary, perf = batch.calls.pop(i)
            try:
                summaries, figures = ray.get([summary, perf])
            except Exception as err:  # noqa: BLE001
                # A death another call already recovered from (several batches were in flight)
                # is not counted again: the part is only replayed.
                if batch.lives[i] == self.lives[i] and not self.recover_if_lost(i, err):
                    raise
                log.warning("replaying the %d episodes of step %d that rollout worker %d lost",
                            batch.plan.counts[i], step + 1, i)
                self._launch_part(batch, i)
                continue
            version = figures.pop(names.WEIGHT_VERSION)
            oldest = figures[names.BATCH_VERSION]
            shown = version if oldest_version is None else oldest
            if (version != self.weight_version) if oldest_version is None else (oldest < oldest_version):
                batch.stale[i] += 1
                if batch.stale[i] > MAX_STALE_REPLAYS:
                    raise RunAborted(f"rollout worker {i} keeps generating with weight version {shown:g}, "
                                     f"not {self.weight_version}: its weight updates do not arrive")
                log.warning("refused %d episodes of rollout worker %d: generated with weight version "
                            "%g, not %d; resending the weights and replaying them",
                            batch.plan.counts[i], i, shown, self.weight_version)
                self.resync(i)
                self._launch_part(batch, i)
                continue
            batch.done[i] = (episodes, summaries, figures)
        order = sorted(batch.done)
        return ([batch.done[i][0] for i in order], {i: batch.done[i][1] for i in order},
                {i: batch.done[i][2] for i in order})

    def collect(self, plan: BatchPlan) -> tuple[list[Any], dict[int, list[Any]], dict[int, dict[str, float]]]:
        """The synchronous loop's batch: :meth:`launch` then :meth:`finish` at the current version."""
        return self.finish(self.launch(plan))

    # -- restarts -----------------------------------------------------------------------------------

    def recover_if_lost(self, i: int, err: BaseException | str) -> bool:
        """After a failed call to worker ``i``: if its process died (Ray restarts it, without its
        engine), count the death, restart its engine, resync it and return True; if it is alive
        with its engine, the error was something else: return False for the caller to raise it."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        # The call's own error says "died" (counted at once, so a worker past the limit ends the
        # run without waiting for a restart Ray will not make); a method that raised does not.
        died = isinstance(err, RayActorError) and not isinstance(err, RayTaskError)
        deaths = self.book.record(i, str(err)) if died else 0
        status = self._status(i, err)
        if status["ready"]:
            return False
        while True:
            if not died:
                deaths = self.book.record(i, str(err))  # raises RunAborted past the limit
            start = time.perf_counter()
            try:
                ray.get(self.workers[i].init.remote())
                self.resync(i)
            except RunAborted:
                raise
            except Exception as again:  # noqa: BLE001 - died again while starting: count that too
                if self._status(i, again)["ready"]:
                    raise
                err, died = again, False
                continue
            self.lives[i] += 1
            log.warning("rollout worker %d restarted (death %d of at most %d; pid %d) in %.1f s with "
                        "weight version %d: %s", i, deaths, self.book.limit, status["pid"],
                        time.perf_counter() - start, self.weight_version, one_line(str(err)))
            return True

    def _status(self, i: int, err: BaseException | str) -> dict[str, Any]:
        """The worker's status, waiting while Ray restarts it (``cluster.placement_timeout_s``)."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                return ray.get(self.workers[i].status.remote(), timeout=max(1.0, deadline - time.monotonic()))
            except (RayActorError, GetTimeoutError) as again:
                if isinstance(again, RayTaskError) or time.monotonic() > deadline:
                    raise RunAborted(f"rollout worker {i} died and did not come back within "
                                     f"cluster.placement_timeout_s={self.wait_s:g} s (Ray restarts it "
                                     f"at most cluster.max_worker_restarts={self.book.limit} times): "
                                     f"{one_line(str(err))}") from again
                time.sleep(0.5)

    def shutdown(self) -> None:
        """Stop every worker's engines (a worker that is gone has nothing left to stop)."""
        import ray

        for ref in [w.shutdown.remote() for w in self.workers]:
            try:
                ray.get(ref, timeout=120)
            except Exception as err:  # noqa: BLE001 - shutting down: report, go on with the others
                log.warning("a rollout worker did not shut down cleanly: %s", one_line(str(err)))
