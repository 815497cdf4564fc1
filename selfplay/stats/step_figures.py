"""Per-worker throughput and the idle shares of a step: pure arithmetic on what the workers and
the learner report, so a slow node and the cost of the synchronous loop are visible."""

from __future__ import annotations

from selfplay.core import metric_names as names


def worker_figures(perfs: dict[int, dict[str, float]]) -> dict[str, float]:
    """``perf/worker/<i>/{tokens_per_s,rollout_s}`` for each worker's batch of the step."""
    out = {}
    for i, perf in perfs.items():
        out[names.worker_metric(i, "tokens_per_s")] = perf[names.ROLLOUT_TOKENS_PER_S]
        out[names.worker_metric(i, "rollout_s")] = perf[names.ROLLOUT_S]
    return out


def idle_shares(step_s: float, worker_busy_s: dict[int, float], learner_busy_s: float) -> dict[str, float]:
    """Shares of a step of ``step_s`` seconds (collect, update, publish) that each side sits idle.

    A worker is busy while it generates its batch (``worker_busy_s``); the rest of the step it
    waits for the slowest worker, the learner's update and the new weights. The learner is busy
    training and publishing (``learner_busy_s``); the rest it waits for episodes. E.g. a 10 s
    step with workers busy 6 s and 4 s and the learner 3 s: workers idle 0.4 and 0.6 (mean 0.5),
    learner idle 0.7. Both high means an overlapped (one-step off-policy) loop would pay.
    """
    step_s = max(step_s, 1e-9)
    out = {names.worker_metric(i, "idle_share"): _share(step_s - busy, step_s) for i, busy in worker_busy_s.items()}
    if worker_busy_s:
        out[names.ROLLOUT_IDLE_SHARE] = sum(_share(step_s - b, step_s) for b in worker_busy_s.values()) / len(worker_busy_s)
    out[names.LEARNER_IDLE_SHARE] = _share(step_s - learner_busy_s, step_s)
    return out


def busy_seconds(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of ``[start, end]`` covered by at least one of ``intervals`` (a worker with several
    batches in flight at once is busy once, not twice). E.g. ``[(0, 4), (2, 6), (8, 20)]`` within
    ``[1, 10]``: 5 + 2 = 7."""
    total, reach = 0.0, start
    for a, b in sorted(intervals):
        a, b = max(a, reach), min(b, end)
        if b > a:
            total += b - a
            reach = b
    return total


def _share(part: float, whole: float) -> float:
    return min(1.0, max(0.0, part / whole))
