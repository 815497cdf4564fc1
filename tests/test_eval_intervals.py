"""95% intervals of evaluation figures: Wilson rates against the score test they invert, mean
returns, their rows in the evaluation table, and the Kuhn figures in the progress line."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from selfplay.core import metric_names as names
from selfplay.core.samples import Episode
from selfplay.stats.episode_stats import (Z95, eval_table, format_eval_table, mean_interval, role_stats,
                                          wilson_interval)
from selfplay.stats.progress import progress_line

ENV = "selfplay/TicTacToe-v0"


def score_test_interval(k: int, n: int) -> tuple[float, float]:
    """The rates p the score test does not reject, |k/n - p| <= z sqrt(p (1 - p) / n), found on a
    fine grid: what the Wilson interval is by definition."""
    grid = np.linspace(0, 1, 200_001)
    kept = grid[np.abs(k / n - grid) <= Z95 * np.sqrt(grid * (1 - grid) / n)]
    return float(kept.min()), float(kept.max())


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (5, 10), (10, 10), (1, 4), (17, 40), (0, 1)])
def test_the_wilson_interval_is_the_inverted_score_test(k, n):
    low, high = wilson_interval(k, n)
    ref_low, ref_high = score_test_interval(k, n)
    assert low == pytest.approx(ref_low, abs=1e-4) and high == pytest.approx(ref_high, abs=1e-4)


def test_the_mean_interval_is_the_normal_one_with_the_sample_deviation():
    values = [2.0, -1.0, 1.0, 1.0, -2.0]
    low, high = mean_interval(values)
    half = Z95 * statistics.stdev(values) / len(values) ** 0.5
    assert (low, high) == pytest.approx((statistics.mean(values) - half, statistics.mean(values) + half))
    assert mean_interval([0.5]) == (0.5, 0.5)


def game(p0_return: float, opponent: str = "initial") -> Episode:
    return Episode(ENV, "e", [], {0: p0_return, 1: -p0_return}, [0], opponent=opponent,
                   outcome="finished", num_turns=5, invalid_counts=[0, 0])


def test_evaluation_rows_carry_win_and_return_intervals_and_the_non_losing_rate():
    episodes = [game(1.0)] * 6 + [game(0.0)] * 3 + [game(-1.0)]
    stats = role_stats(episodes, intervals=True)[(ENV, "initial", 0)]
    assert stats["win_rate"] == 0.6 and stats["non_loss_rate"] == 0.9
    assert (stats["win_rate_low"], stats["win_rate_high"]) == pytest.approx(score_test_interval(6, 10), abs=1e-4)
    assert (stats["non_loss_rate_low"], stats["non_loss_rate_high"]) == pytest.approx(
        score_test_interval(9, 10), abs=1e-4)
    assert (stats["return_low"], stats["return_high"]) == pytest.approx(mean_interval([1.0] * 6 + [0.0] * 3 + [-1.0]))
    assert set(names.INTERVAL_STATS) <= set(stats)
    assert not set(names.INTERVAL_STATS) & set(role_stats(episodes)[(ENV, "initial", 0)])  # training: none
    row = eval_table(episodes)[0]
    assert row["opponent"] == "initial" and row["win_ci"] == [stats["win_rate_low"], stats["win_rate_high"]]
    table = format_eval_table([row])
    assert f"[{stats['win_rate_low']:.2f}, {stats['win_rate_high']:.2f}]" in table


def test_the_progress_line_shows_kuhn_exploitability_or_why_not():
    figures = {names.KUHN_EXPLOITABILITY: 0.2512, names.KUHN_EXPLOITABILITY_LOW: 0.2012,
               names.KUHN_EXPLOITABILITY_HIGH: 0.3, names.KUHN_INVALID_SHARE_MAX: 0.0}
    assert "kuhn expl 0.251 [0.201, 0.300]" in progress_line(4, 8, {}, figures, 1.0)
    line = progress_line(4, 8, {}, {names.KUHN_INVALID_SHARE_MAX: 0.5}, 1.0)
    assert "kuhn expl n/a (invalid up to 0.50)" in line
