"""A batch generated with other weights than the learner's is refused, the worker is resynced and
the batch replayed; a worker whose updates never arrive ends the run with one line. Real Ray
actors stand in for rollout workers: they report a weight version as ``RolloutWorker.collect``
does, without an engine."""

from __future__ import annotations

import pytest

from selfplay.config import load_config
from selfplay.core import metric_names as names
from selfplay.loop.restarts import RestartBook, RunAborted
from selfplay.loop.rollout_pool import BatchPlan, RolloutPool
from selfplay.placement.ray_session import start_ray, stop_ray

pytestmark = pytest.mark.slow


def versioned_worker():
    """A Ray actor class that reports the weight version it holds. Defined in a function so that
    Ray ships it by value (this test module is not importable in Ray's worker processes)."""
    import ray

    class VersionedWorker:
        """Reports the weight version it holds; ``sync`` gives it the learner's (what a resync does)."""

        def __init__(self, version: int, updates_arrive: bool = True) -> None:
            self.version, self.updates_arrive, self.calls = version, updates_arrive, 0

        def collect(self, count: int, step: int, levels: dict, frozen: list) -> tuple[list, list, dict]:
            self.calls += 1
            episodes = [f"w{self.version}-s{step}-e{i}" for i in range(count)]
            return episodes, episodes, {names.WEIGHT_VERSION: float(self.version),
                                        names.BATCH_VERSION: float(self.version)}

        def sync(self, version: int) -> None:
            if self.updates_arrive:
                self.version = version

        def count(self) -> int:
            return self.calls

    return ray.remote(num_cpus=0)(VersionedWorker)


@pytest.fixture(scope="module")
def ray_session():
    assert start_ray(load_config("debug", ["cluster.num_cpus=2"]))
    yield
    stop_ray()


def _pool(workers: list, version: int) -> RolloutPool:
    """The pool's collection over these actors (its constructor would start real rollout workers)."""
    import ray

    pool = RolloutPool.__new__(RolloutPool)
    pool.workers, pool.weight_version, pool.book, pool.wait_s = workers, version, RestartBook(0), 5.0
    pool.lives = [0] * len(workers)
    pool.resyncs = []

    def resync(i: int) -> None:
        pool.resyncs.append(i)
        ray.get(workers[i].sync.remote(version))

    pool.resync = resync
    return pool


def test_a_stale_batch_is_refused_resynced_and_replayed(ray_session):
    import ray

    actor = versioned_worker()
    fresh, stale = actor.remote(3), actor.remote(2)
    pool = _pool([fresh, stale], version=3)
    refs, summaries, figures = pool.collect(BatchPlan(4, [2, 2]))
    assert pool.resyncs == [1]  # only the stale worker
    assert ray.get(refs) == [["w3-s4-e0", "w3-s4-e1"]] * 2  # both batches now from version 3
    assert summaries[1] == ["w3-s4-e0", "w3-s4-e1"] and figures[1] == {names.BATCH_VERSION: 3.0}
    assert ray.get([fresh.count.remote(), stale.count.remote()]) == [1, 2]  # replayed once


def test_a_worker_whose_updates_never_arrive_ends_the_run_in_one_line(ray_session):
    import ray

    actor = versioned_worker()
    stuck = actor.remote(2, updates_arrive=False)
    pool = _pool([stuck], version=3)
    with pytest.raises(RunAborted, match="keeps generating with weight version 2, not 3"):
        pool.collect(BatchPlan(4, [2]))
    assert pool.resyncs == [0]  # one resync, then the refusal


def test_the_asynchronous_loop_takes_batches_up_to_k_versions_old_and_refuses_older(ray_session):
    """Step 4 with max_staleness 2: weights 2 and 3 are fresh enough (4 - 2 = 2), weights 1 are
    not: that part is resynced (to version 3) and replayed."""
    import ray

    actor = versioned_worker()
    workers = [actor.remote(3), actor.remote(2), actor.remote(1)]
    pool = _pool(workers, version=3)
    refs, _, figures = pool.finish(pool.launch(BatchPlan(4, [1, 1, 1])), oldest_version=4 - 2)
    assert pool.resyncs == [2]
    assert ray.get(refs) == [["w3-s4-e0"], ["w2-s4-e0"], ["w3-s4-e0"]]
    assert [figures[i][names.BATCH_VERSION] for i in range(3)] == [3.0, 2.0, 3.0]
