"""The asynchronous loop's rules (:mod:`selfplay.core.staleness`), the workers' busy time, the
version a turn carries, and the episode ledger, as plain functions."""

from __future__ import annotations

import numpy as np
import pytest

from actors.contexts import Context
from learners.learner_worker import drop_stale
from selfplay.core import metric_names as names
from selfplay.core.samples import Episode, Sample
from selfplay.core.staleness import launchable, may_start, split_stale, staleness_figures
from selfplay.stats.episode_ledger import EpisodeLedger
from selfplay.stats.step_figures import busy_seconds


def _sample(version: int, episode: str = "e") -> Sample:
    return Sample([1], [2], [0.0], [1], "env", 0, 1.0, episode, weight_version=version)


def test_may_start_allows_at_most_k_steps_ahead_of_the_published_weights():
    assert may_start(5, 5, 0) and not may_start(6, 5, 0)  # synchronous: only the next step
    assert may_start(7, 5, 2) and not may_start(8, 5, 2)
    assert launchable(6, 5, 2, steps=100) == [6, 7]
    assert launchable(6, 5, 2, steps=7) == [6]  # never past the run's last step (6)
    assert launchable(8, 5, 2, steps=100) == []


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_a_simulated_asynchronous_run_never_generates_more_than_k_steps_ahead(k):
    """A loop as the pipeline runs it, with random durations: batches start whenever the capacity
    rule allows and train in step order; every sample's staleness is at most k, and while the
    learner trains step s at most k later batches are in flight."""
    rng = np.random.default_rng(k)
    steps, published, next_step, pending = 30, 0, 0, {}
    for s in range(steps):
        for b in launchable(next_step, published, k, steps):
            # The batch's turns start with the weights published now, or with newer ones if an
            # update lands before a turn starts (each of its turns then carries its own).
            pending[b] = [published + int(rng.integers(0, 2)) * (published < s) for _ in range(4)]
            next_step = b + 1
        versions = pending.pop(s)
        assert len(pending) <= k
        assert all(s - v <= k for v in versions)
        assert max(s - v for v in versions) >= 0
        published = s + 1


def test_split_stale_and_the_staleness_figures():
    samples = [_sample(v) for v in (5, 4, 3, 1)]
    fresh, stale = split_stale(samples, learner_version=5, max_staleness=2)
    assert [s.weight_version for s in fresh] == [5, 4, 3] and [s.weight_version for s in stale] == [1]
    figures = staleness_figures(fresh, 5, len(stale))
    assert figures == {names.STALENESS_MEAN: 1.0, names.STALENESS_MAX: 2.0, names.DROPPED_STALE: 1.0}
    assert staleness_figures([], 5, 0)[names.STALENESS_MAX] == 0.0


def test_drop_stale_removes_stale_samples_from_their_episodes_and_counts_them():
    fresh_ep = Episode("env", "a", [_sample(3, "a"), _sample(3, "a")], {0: 1.0}, [0])
    mixed = Episode("env", "b", [_sample(3, "b"), _sample(0, "b")], {0: 1.0}, [0])
    kept, dropped = drop_stale([fresh_ep, mixed], version=3, max_staleness=1)
    assert dropped == 1 and kept[0] is fresh_ep
    assert [s.weight_version for s in kept[1].samples] == [3] and len(mixed.samples) == 2  # not mutated


def test_a_turn_carries_the_oldest_version_behind_any_of_its_tokens():
    ctx = Context([1, 2])
    assert ctx.version is None
    ctx.generated([3], [-0.1], "a", version=4)
    ctx.insert([9])  # e.g. a LeaP summary inserted between two runs of the same answer
    ctx.generated([5], [-0.2], "b", version=6)
    assert ctx.version == 4


def test_busy_seconds_counts_overlapping_batches_once():
    assert busy_seconds([(0, 4), (2, 6), (8, 20)], 1, 10) == 7.0
    assert busy_seconds([], 0, 5) == 0.0
    assert busy_seconds([(0, 10), (1, 2)], 0, 5) == 5.0
    assert busy_seconds([(6, 9)], 0, 5) == 0.0


def test_the_ledger_appends_in_step_order_and_resume_truncates_later_steps(tmp_path):
    ledger = EpisodeLedger(tmp_path)
    ep = lambda i, step: Episode("env", f"s{step}-w0-e{i}", [], {0: 0.0}, [0], seed=100 * step + i)  # noqa: E731
    for step in (1, 2, 3):
        ledger.record(step, [ep(1, step), ep(0, step)])
    assert [(r["step"], r["episode_id"]) for r in ledger.read()][:2] == [(1, "s1-w0-e0"), (1, "s1-w0-e1")]
    ledger.truncate(2)
    assert [r["step"] for r in ledger.read()] == [1, 1, 2, 2]
    assert ledger.read()[-1]["seed"] == 201
    fresh = EpisodeLedger(tmp_path / "not-yet")  # a run directory nobody prepared
    fresh.record(1, [ep(0, 1)])
    assert [r["episode_id"] for r in fresh.read()] == ["s1-w0-e0"]
