"""Episode statistics for TensorBoard, the progress line and the evaluation table (pure).

A role *wins* when its return is positive, *draws* at zero, *loses* below zero, except in a game
forfeited by an invalid action: a loss for its author and a win for every other role, whatever
the returns (:meth:`Episode.result`; by default the opponent of a forfeit gets 0). Metric names
come from :mod:`selfplay.core.metric_names`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

from selfplay.core import metric_names as names
from selfplay.core.samples import Episode

#: (env_id, opponent, role) -> {stat: value}, stats as in ``metric_names.ROLE_STATS``.
RoleStats = dict[tuple[str, str, int], dict[str, float]]


def _rates(episodes: list[Episode], role: int) -> dict[str, float]:
    n = len(episodes)
    returns = [e.rewards.get(role, 0.0) for e in episodes]
    results = [e.result(role) for e in episodes]
    invalid = [bool(e.invalid_counts) and e.invalid_counts[role] > 0 for e in episodes]
    return {
        "return": sum(returns) / n,
        "win_rate": sum(r > 0 for r in results) / n,
        "draw_rate": sum(r == 0 for r in results) / n,
        "loss_rate": sum(r < 0 for r in results) / n,
        "invalid_rate": sum(invalid) / n,
        "episodes": float(n),
    }


Z95 = 1.959964  # the standard normal's 97.5% quantile


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a rate (sound at 0 and 1, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = successes / n, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: list[float]) -> tuple[float, float]:
    """95% normal interval of a mean (sample standard deviation; the mean itself for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean
    half = Z95 * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)
    return mean - half, mean + half


def _intervals(episodes: list[Episode], role: int) -> dict[str, float]:
    """95% intervals of the win rate, the non-losing rate and the mean return of ``role``."""
    results = [e.result(role) for e in episodes]
    win, non_loss = wilson_interval(sum(r > 0 for r in results), len(results)), \
        wilson_interval(sum(r >= 0 for r in results), len(results))
    ret = mean_interval([e.rewards.get(role, 0.0) for e in episodes])
    return {"win_rate_low": win[0], "win_rate_high": win[1],
            "non_loss_rate": sum(r >= 0 for r in results) / len(results),
            "non_loss_rate_low": non_loss[0], "non_loss_rate_high": non_loss[1],
            "return_low": ret[0], "return_high": ret[1]}


def group_by_role(episodes: Iterable[Episode]) -> dict[tuple[str, str, int], list[Episode]]:
    """Episodes grouped by (env, opponent, policy role)."""
    groups: dict[tuple[str, str, int], list[Episode]] = defaultdict(list)
    for e in episodes:
        for role in e.policy_roles:
            groups[(e.env_id, e.opponent, role)].append(e)
    return groups


def role_stats(episodes: Iterable[Episode], intervals: bool = False) -> RoleStats:
    """Return and win/draw/loss/invalid rates per (env, opponent, policy role), sorted by key;
    with ``intervals``, also their 95% intervals and the non-losing rate
    (:data:`metric_names.INTERVAL_STATS`)."""
    return {key: {**_rates(group, key[2]), **(_intervals(group, key[2]) if intervals else {})}
            for key, group in sorted(group_by_role(episodes).items())}


def episode_metrics(episodes: list[Episode], prefix: str = "game", intervals: bool = False) -> dict[str, float]:
    """Per (env, opponent, role) statistics (with 95% intervals if asked: evaluation), plus
    per-env lengths and outcome shares, by name."""
    out: dict[str, float] = {}
    for (env_id, opponent, role), stats in role_stats(episodes, intervals).items():
        for stat, value in stats.items():
            out[names.role_metric(env_id, opponent, role, stat, prefix)] = value
    by_env: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        by_env[e.env_id].append(e)
    for env_id, group in by_env.items():
        out[names.env_metric(env_id, "length", prefix)] = sum(e.num_turns for e in group) / len(group)
        for outcome in names.OUTCOME_SHARES:
            share = sum(e.outcome == outcome for e in group) / len(group)
            out[names.env_metric(env_id, f"{outcome}_share", prefix)] = share
        out.update(extra_means(env_id, group, prefix))
    return out


def extra_means(env_id: str, episodes: list[Episode], prefix: str = "game") -> dict[str, float]:
    """The mean of each figure an environment reports in ``Episode.extra`` (LeaP's per-segment
    statistics), over the episodes that report it."""
    values: dict[str, list[float]] = defaultdict(list)
    for e in episodes:
        for key, value in e.extra.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[key].append(float(value))
    return {names.env_metric(env_id, key, prefix): sum(v) / len(v) for key, v in sorted(values.items())}


def eval_table(episodes: list[Episode]) -> list[dict[str, object]]:
    """Rows of (env, opponent, role, games, win/draw/loss/invalid rates, mean return), with 95%
    intervals of the win rate and the mean return."""
    return [{"env": names.short_env(env_id), "opponent": opponent, "role": role,
             "games": int(r["episodes"]), "win": r["win_rate"], "draw": r["draw_rate"],
             "loss": r["loss_rate"], "invalid": r["invalid_rate"], "return": r["return"],
             "win_ci": [r["win_rate_low"], r["win_rate_high"]], "return_ci": [r["return_low"], r["return_high"]]}
            for (env_id, opponent, role), r in role_stats(episodes, intervals=True).items()]


def format_eval_table(rows: list[dict[str, object]]) -> str:
    """A fixed-width table for the terminal (95% intervals in brackets)."""
    head = (f"{'game':<22}{'opponent':<14}{'role':>5}{'games':>7}{'win':>7}{'win 95% CI':>14}{'draw':>7}"
            f"{'loss':>7}{'invalid':>9}{'return':>9}{'return 95% CI':>19}")
    lines = [head, "-" * len(head)]
    for r in rows:
        win_ci, ret_ci = r["win_ci"], r["return_ci"]
        lines.append(f"{r['env']:<22}{r['opponent']:<14}{r['role']:>5}{r['games']:>7}{r['win']:>7.2f}"
                     f"{f'[{win_ci[0]:.2f}, {win_ci[1]:.2f}]':>14}"
                     f"{r['draw']:>7.2f}{r['loss']:>7.2f}{r['invalid']:>9.2f}{r['return']:>+9.3f}"
                     f"{f'[{ret_ci[0]:+.2f}, {ret_ci[1]:+.2f}]':>19}")
    return "\n".join(lines)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed (Chen et al. 2021, as SATURN
    reports it): ``1 - C(n - c, k) / C(n, k)``; 1 when fewer than ``k`` samples failed."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):  # C(n-c, k) / C(n, k) as a stable product
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail
