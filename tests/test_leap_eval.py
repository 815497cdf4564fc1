"""The LeaP evaluation table from episode statistics (pure)."""

from __future__ import annotations

import pytest

from selfplay.core.samples import Episode
from selfplay.commands.leap_eval import format_table, summarize_row


def episode(**stats: float) -> Episode:
    return Episode("selfplay/LeaP-v0", "e", [], {}, [0, 1], extra={f"leap/{k}": v for k, v in stats.items()})


def test_rows_average_over_problems_and_count_changes_per_reader() -> None:
    row = summarize_row([
        episode(pass_at_1=0.5, cons_at_n=1.0, tokens=100, answered=1.0, read_peers=2,
                answer_changes=1, changes_better=1, changes_worse=0),
        episode(pass_at_1=0.0, cons_at_n=0.0, tokens=300, answered=0.5, read_peers=2,
                answer_changes=1, changes_better=0, changes_worse=1)])
    assert row["pass@1"] == 0.25 and row["cons@N"] == 0.5 and row["tokens"] == 200
    assert (row["changed"], row["better"], row["worse"]) == (0.5, 0.25, 0.25)


def test_table_has_both_rows_and_no_change_figures_without_peers() -> None:
    leap = summarize_row([episode(pass_at_1=1.0, cons_at_n=1.0, tokens=10, answered=1.0, read_peers=2)])
    alone = summarize_row([episode(pass_at_1=0.5, cons_at_n=0.0, tokens=10, answered=1.0)])
    lines = format_table({"LeaP": leap, "independent": alone}, paths=2).splitlines()
    assert "cons@2" in lines[0]
    assert lines[2].startswith("LeaP") and lines[2].split()[-3:] == ["0.00", "0.00", "0.00"]
    assert lines[3].startswith("independent") and lines[3].split()[-3:] == ["-", "-", "-"]
    assert float(lines[2].split()[3]) == pytest.approx(1.0)
