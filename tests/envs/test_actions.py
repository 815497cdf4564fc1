"""Action extraction, shared by every game: last boxed, else last bracketed, else a bare answer."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from envs.actions import candidate, extract_action, lenient_match

LEGAL = ["check", "bet"]


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{bet}", "bet"),
    ("I will check... no: \\boxed{check} then \\boxed{ BET }.", "bet"),  # the last box counts
    ("[check]", "check"),
    ("maybe [bet] or [check]", "check"),
    ("\\boxed{\\text{Check}}", "check"),  # formatting inside the box is unwrapped
    ("  Bet. ", "bet"),  # bare, normalised
    ("\\boxed{raise}", None),  # not legal
    ("I think betting is good here because my card is strong and I want value.", None),
    ("", None),
])
def test_extraction_rule(text, expected):
    assert extract_action(text, LEGAL) == expected


def test_box_wins_over_brackets_even_if_brackets_come_later():
    assert candidate("\\boxed{check} [bet]") == "check"


def test_lenient_fallback_takes_the_one_legal_action_named():
    text = "With a king I would rather bet. Bet!"
    assert extract_action(text, LEGAL) is None
    assert extract_action(text, LEGAL, lenient=True) == "bet"  # named twice, but only bet
    assert lenient_match("betting everything", LEGAL) is None  # whole words only


@pytest.mark.parametrize("text", [
    "I could check, but I would rather bet with a king.",  # two actions: commits to neither
    "a bet after a called bet after a check",               # babble naming both
])
def test_lenient_fallback_refuses_a_reply_naming_several_legal_actions(text):
    assert extract_action(text, LEGAL, lenient=True) is None


def test_a_box_still_decides_when_the_reply_names_several_actions():
    assert extract_action("check or bet? \\boxed{bet}", LEGAL, lenient=True) == "bet"


@given(st.text())
def test_any_string_never_raises(text):
    result = extract_action(text, LEGAL, lenient=True)
    assert result is None or result in LEGAL
