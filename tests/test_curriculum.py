"""The level curriculum: it moves up exactly when the gate is passed, and resumes where it was."""

from __future__ import annotations

import json

import pytest

from selfplay.league.curriculum import LevelCurriculum

LEVELS = [{"n": 3, "k": 5, "l": 5}, {"n": 3, "k": 5, "l": 6}, {"n": 3, "k": 5, "l": 7}]


def test_moves_up_exactly_when_pass_at_1_reaches_the_gate():
    c = LevelCurriculum("selfplay/SAT-v0", LEVELS, gate=0.5)
    assert c.record(5, 0.49) is False and c.options == LEVELS[0]
    assert c.record(10, 0.50) is True and c.options == LEVELS[1]
    assert [h["level"] for h in c.history] == [0, 0]


def test_stays_at_the_top_level():
    c = LevelCurriculum("e", LEVELS, gate=0.5, start=2)
    assert c.record(1, 1.0) is False and c.index == 2


def test_state_round_trips_through_json_and_refuses_other_levels():
    c = LevelCurriculum("e", LEVELS, gate=0.5)
    c.record(5, 0.9)
    restored = LevelCurriculum("e", LEVELS, gate=0.5)
    restored.load_state_dict(json.loads(json.dumps(c.state_dict())))
    assert restored.index == 1 and restored.history == c.history
    with pytest.raises(ValueError, match="differ from the configured"):
        LevelCurriculum("e", LEVELS[:2], gate=0.5).load_state_dict(c.state_dict())


@pytest.mark.parametrize("kwargs, message", [
    (dict(levels=[], gate=0.5), "levels must not be empty"),
    (dict(levels=LEVELS, gate=0.0), r"curriculum.gate=0.0: expected in \(0, 1\]"),
    (dict(levels=LEVELS, gate=0.5, start=3), "curriculum.start=3"),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LevelCurriculum("e", **kwargs)


def test_unbiased_pass_at_k_by_hand():
    from math import comb

    from selfplay.stats.episode_stats import pass_at_k

    assert pass_at_k(12, 0, 3) == 0.0 and pass_at_k(12, 12, 1) == 1.0
    assert pass_at_k(12, 3, 1) == pytest.approx(3 / 12)  # pass@1 is the pass rate
    # 12 samples, 3 passed, k = 3: 1 - C(9,3)/C(12,3) = 1 - 84/220
    assert pass_at_k(12, 3, 3) == pytest.approx(1 - comb(9, 3) / comb(12, 3))
    assert pass_at_k(12, 10, 3) == 1.0  # only 2 failures: any 3 include a pass
    with pytest.raises(ValueError, match="k=13"):
        pass_at_k(12, 3, 13)
