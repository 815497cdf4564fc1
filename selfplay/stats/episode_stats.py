"""Episode statistics for TensorBoard, the progress line and the evaluation table (pure).

A role *wins* when its return is positive, *draws* at zero, *loses* below zero. Metric names come
from :mod:`selfplay.core.metric_names`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from selfplay.core import metric_names as names
from selfplay.core.samples import Episode

#: (env_id, opponent, role) -> {stat: value}, stats as in ``metric_names.ROLE_STATS``.
RoleStats = dict[tuple[str, str, int], dict[str, float]]


def _rates(episodes: list[Episode], role: int) -> dict[str, float]:
    n = len(episodes)
    returns = [e.rewards.get(role, 0.0) for e in episodes]
    invalid = [bool(e.invalid_counts) and e.invalid_counts[role] > 0 for e in episodes]
    return {
        "return": sum(returns) / n,
        "win_rate": sum(r > 0 for r in returns) / n,
        "draw_rate": sum(r == 0 for r in returns) / n,
        "loss_rate": sum(r < 0 for r in returns) / n,
        "invalid_rate": sum(invalid) / n,
        "episodes": float(n),
    }


def group_by_role(episodes: Iterable[Episode]) -> dict[tuple[str, str, int], list[Episode]]:
    """Episodes grouped by (env, opponent, policy role)."""
    groups: dict[tuple[str, str, int], list[Episode]] = defaultdict(list)
    for e in episodes:
        for role in e.policy_roles:
            groups[(e.env_id, e.opponent, role)].append(e)
    return groups


def role_stats(episodes: Iterable[Episode]) -> RoleStats:
    """Return and win/draw/loss/invalid rates per (env, opponent, policy role), sorted by key."""
    return {key: _rates(group, key[2]) for key, group in sorted(group_by_role(episodes).items())}


def episode_metrics(episodes: list[Episode], prefix: str = "game") -> dict[str, float]:
    """Per (env, opponent, role) statistics, plus per-env lengths and outcome shares, by name."""
    out: dict[str, float] = {}
    for (env_id, opponent, role), stats in role_stats(episodes).items():
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
    """Rows of (env, opponent, role, games, win/draw/loss/invalid rates, mean return)."""
    return [{"env": names.short_env(env_id), "opponent": opponent, "role": role,
             "games": int(r["episodes"]), "win": r["win_rate"], "draw": r["draw_rate"],
             "loss": r["loss_rate"], "invalid": r["invalid_rate"], "return": r["return"]}
            for (env_id, opponent, role), r in role_stats(episodes).items()]


def format_eval_table(rows: list[dict[str, object]]) -> str:
    """A fixed-width table for the terminal."""
    head = f"{'game':<22}{'opponent':<10}{'role':>5}{'games':>7}{'win':>7}{'draw':>7}{'loss':>7}{'invalid':>9}{'return':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['env']:<22}{r['opponent']:<10}{r['role']:>5}{r['games']:>7}{r['win']:>7.2f}"
                     f"{r['draw']:>7.2f}{r['loss']:>7.2f}{r['invalid']:>9.2f}{r['return']:>+9.3f}")
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
