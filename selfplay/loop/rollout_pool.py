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
from typing import Any, Callable

from selfplay.config import Config
from selfplay.core import metric_names as names
from selfplay.placement.layout import Layout
from selfplay.loop.restarts import RestartBook, RunAborted, one_line

log = logging.getLogger("selfplay.train")

#: A batch refused for its weight version is replayed once after a resync; a second refusal is a bug.
MAX_STALE_REPLAYS = 1


class RolloutPool:
    """Creates the workers in bundles ``first_bundle + i`` of ``pg`` and calls them."""

    def __init__(self, cfg: Config, model_path: str, layout: Layout, pg: Any, first_bundle: int) -> None:
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
        actor = ray.remote(RolloutWorker)
        # max_task_retries=0: a call in flight when the worker dies fails (and is replayed here)
        # instead of being re-run by Ray on an actor that has no engine yet.
        self.workers = [actor.options(
            num_cpus=slot.cpus, num_gpus=slot.gpus, max_restarts=cl.max_worker_restarts, max_task_retries=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=first_bundle + i),
        ).remote(model_path, r, cfg.envs, cfg.eval, cfg.seed, i, slot.tensor_parallel)
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

    def collect(self, counts: list[int], step: int, levels: dict[str, dict[str, Any]]
                ) -> tuple[list[Any], dict[int, list[Any]], dict[int, dict[str, float]]]:
        """Each worker ``i`` plays ``counts[i]`` training episodes. Returns the references to the
        full episodes (for the learner) and, by worker, their summaries and throughput figures.
        A worker that dies is restarted and replays its batch; a batch generated with other
        weights than :attr:`weight_version` is refused and replayed after a resync."""
        import ray

        def launch(i: int) -> list[Any]:
            return self.workers[i].collect.options(num_returns=3).remote(counts[i], step, levels)

        calls = {i: launch(i) for i, c in enumerate(counts) if c}
        done: dict[int, tuple[Any, list[Any], dict[str, float]]] = {}
        stale = dict.fromkeys(calls, 0)
        while calls:
            by_ref = {refs[2]: i for i, refs in calls.items()}
            ready, _ = ray.wait(list(by_ref), num_returns=1)
            i = by_ref[ready[0]]
            episodes, summary, perf = calls.pop(i)
            try:
                summaries, figures = ray.get([summary, perf])
            except Exception as err:  # noqa: BLE001
                if not self.recover_if_lost(i, err):
                    raise
                log.warning("replaying the %d episodes of step %d that rollout worker %d lost",
                            counts[i], step + 1, i)
                calls[i] = launch(i)
                continue
            version = figures.pop(names.WEIGHT_VERSION)
            if version != self.weight_version:
                stale[i] += 1
                if stale[i] > MAX_STALE_REPLAYS:
                    raise RunAborted(f"rollout worker {i} keeps generating with weight version {version:g}, "
                                     f"not {self.weight_version}: its weight updates do not arrive")
                log.warning("refused %d episodes of rollout worker %d: generated with weight version "
                            "%g, not %d; resending the weights and replaying them",
                            counts[i], i, version, self.weight_version)
                self.resync(i)
                calls[i] = launch(i)
                continue
            done[i] = (episodes, summaries, figures)
        order = sorted(done)
        return ([done[i][0] for i in order], {i: done[i][1] for i in order}, {i: done[i][2] for i in order})

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
