"""One line of progress per training step for the terminal."""

from __future__ import annotations

from selfplay.core import metric_names as names
from selfplay.stats.episode_stats import RoleStats


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def progress_line(step: int, total: int, roles: RoleStats, values: dict[str, float],
                  eta_s: float) -> str:
    """``step 3/6 | ret self:p0 +0.12 ... | win 0.50 | invalid 0.31 | ...`` from the step's
    per-role episode statistics and its other metrics."""
    parts = [f"step {step}/{total}"]
    if roles:
        parts.append("ret " + " ".join(f"{opp}:p{role} {s['return']:+.2f}"
                                       for (_, opp, role), s in roles.items()))
        for stat, label in (("win_rate", "win"), ("invalid_rate", "invalid")):
            parts.append(f"{label} {sum(s[stat] for s in roles.values()) / len(roles):.2f}")
    for key, label, fmt in ((names.LOSS_PG, "loss", "{:+.4f}"),
                            (names.ROLLOUT_TOKENS_PER_S, "rollout tok/s", "{:.0f}"),
                            (names.LEARNER_TOKENS_PER_S, "learner tok/s", "{:.0f}"),
                            (names.WEIGHT_SYNC_S, "sync", "{:.2f}s"),
                            (names.STEP_S, "step", "{:.0f}s")):
        if key in values:
            parts.append(f"{label} {fmt.format(values[key])}")
    if names.KUHN_EXPLOITABILITY in values:
        parts.append(f"kuhn expl {values[names.KUHN_EXPLOITABILITY]:.3f} "
                     f"[{values[names.KUHN_EXPLOITABILITY_LOW]:.3f}, {values[names.KUHN_EXPLOITABILITY_HIGH]:.3f}]")
    elif names.KUHN_INVALID_SHARE_MAX in values:  # too many invalid replies for a figure
        parts.append(f"kuhn expl n/a (invalid up to {values[names.KUHN_INVALID_SHARE_MAX]:.2f})")
    for bench, key in sorted((b, k) for k in values if (b := names.eval_bench_of(k, "pass_at_1")) is not None):
        parts.append(f"bench {bench} {values[key]:.3f} "
                     f"[{values.get(names.eval_bench_metric(bench, 'pass_at_1_low'), 0.0):.2f}, "
                     f"{values.get(names.eval_bench_metric(bench, 'pass_at_1_high'), 1.0):.2f}]")
    workers = sorted((i, v) for k, v in values.items()
                     if (i := names.worker_index(k, "tokens_per_s")) is not None)
    if len(workers) > 1:  # one figure per worker: a slow node stands out
        parts.append("workers tok/s " + " ".join(f"{v:.0f}" for _, v in workers))
    if names.ROLLOUT_IDLE_SHARE in values and names.LEARNER_IDLE_SHARE in values:
        parts.append(f"idle rollout {values[names.ROLLOUT_IDLE_SHARE]:.2f} "
                     f"learner {values[names.LEARNER_IDLE_SHARE]:.2f}")
    if values.get(names.ASYNC_IN_FLIGHT) or values.get(names.STALENESS_MAX):  # the asynchronous loop
        parts.append(f"staleness {values.get(names.STALENESS_MEAN, 0.0):.2f} (max "
                     f"{values.get(names.STALENESS_MAX, 0.0):.0f}), {values.get(names.ASYNC_IN_FLIGHT, 0.0):.0f} "
                     f"in flight" + (f", {values[names.DROPPED_STALE]:.0f} stale dropped"
                                     if values.get(names.DROPPED_STALE) else ""))
    if values.get(names.WORKER_RESTARTS):
        parts.append(f"restarts {values[names.WORKER_RESTARTS]:.0f}")
    parts.append(f"ETA {_fmt_eta(eta_s)}")
    return " | ".join(parts)
