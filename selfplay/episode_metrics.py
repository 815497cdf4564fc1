"""Episode statistics for TensorBoard and the terminal (pure functions).

Names: ``game/<env>/<vs>/p<role>/<stat>`` for training episodes, where ``<vs>`` is ``self`` or the
opponent's name, and ``eval/<env>/<opponent>/p<seat>/<stat>`` for evaluation.
A role *wins* when its return is positive, *draws* at zero, *loses* below zero.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from selfplay.types import Episode


def short_env(env_id: str) -> str:
    """``selfplay/KuhnPoker-v0`` -> ``KuhnPoker-v0``."""
    return env_id.split("/")[-1]


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


def episode_metrics(episodes: list[Episode], prefix: str = "game") -> dict[str, float]:
    """Per (env, opponent, role) returns and win/draw/loss/invalid rates, plus per-env lengths
    and outcome shares."""
    out: dict[str, float] = {}
    for (env_id, opponent, role), group in sorted(group_by_role(episodes).items()):
        for stat, value in _rates(group, role).items():
            out[f"{prefix}/{short_env(env_id)}/{opponent}/p{role}/{stat}"] = value
    by_env: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        by_env[e.env_id].append(e)
    for env_id, group in by_env.items():
        name = f"{prefix}/{short_env(env_id)}"
        out[f"{name}/length"] = sum(e.num_turns for e in group) / len(group)
        for outcome in ("invalid", "truncated", "timeout"):
            out[f"{name}/{outcome}_share"] = sum(e.outcome == outcome for e in group) / len(group)
    return out


def eval_table(episodes: list[Episode]) -> list[dict[str, object]]:
    """Rows of (env, opponent, seat, games, win/draw/loss/invalid rates, mean return)."""
    rows = []
    for (env_id, opponent, role), group in sorted(group_by_role(episodes).items()):
        r = _rates(group, role)
        rows.append({"env": short_env(env_id), "opponent": opponent, "seat": role,
                     "games": len(group), "win": r["win_rate"], "draw": r["draw_rate"],
                     "loss": r["loss_rate"], "invalid": r["invalid_rate"], "return": r["return"]})
    return rows


def format_eval_table(rows: list[dict[str, object]]) -> str:
    """A fixed-width table for the terminal."""
    head = f"{'game':<22}{'opponent':<10}{'seat':>5}{'games':>7}{'win':>7}{'draw':>7}{'loss':>7}{'invalid':>9}{'return':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['env']:<22}{r['opponent']:<10}{r['seat']:>5}{r['games']:>7}{r['win']:>7.2f}"
                     f"{r['draw']:>7.2f}{r['loss']:>7.2f}{r['invalid']:>9.2f}{r['return']:>+9.3f}")
    return "\n".join(lines)
