"""Liar's Dice: rules on fixed dice, parsing, the env contract, random play, the heuristic."""

from __future__ import annotations

import string

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers the ids)
from envs.base import ANSWER_FORMAT
from envs.liars_dice import HeuristicLiarsDiceOpponent, LiarsDiceEnv
from envs.opponents import RandomOpponent, make_opponent
from env_contract import assert_random_play_ends_zero_sum, assert_text_action_is_safe

ENV_ID = "selfplay/LiarsDice-v0"
# Counts over both hands: 1 x1, 2 x2, 3 x1, 4 x1, 5 x3, 6 x2.
DICE = [[1, 2, 3, 4, 5], [2, 5, 5, 6, 6]]


def play(env: LiarsDiceEnv, actions: list[str], dice=DICE):
    """Reset with fixed ``dice``, play ``actions`` in order and return the last step's result."""
    result = env.reset(seed=0, options={"dice": dice})
    for action in actions:
        result = env.step(action)
    return result


CALLS = [
    # Three 5s on the table and the bid is three: the bid holds, bidder (player 0) wins.
    ("bid_that_holds_wins_for_the_bidder", ["bid 3 5", "call"], 0),
    # Only three 5s against a bid of four: the caller (player 1) wins.
    ("bid_that_fails_wins_for_the_caller", ["bid 4 5", "call"], 1),
    # Exactly two 2s against a bid of two: "at least" holds, bidder (player 1) wins.
    ("exact_count_holds", ["bid 1 6", "bid 2 2", "call"], 1),
    # Two 2s plus one 1: with 1s wild the bid of three 2s would hold; they are not, so it fails
    # and the caller (player 0) wins.
    ("ones_are_not_wild", ["bid 2 6", "bid 3 2", "call"], 0),
    # One 1 against a bid of two 1s: caller (player 0) wins.
    ("bid_on_ones_counts_only_ones", ["bid 1 1", "bid 2 1", "call"], 0),
]


@pytest.mark.parametrize("name,actions,winner", CALLS, ids=[c[0] for c in CALLS])
def test_call_settles_the_round(name: str, actions: list[str], winner: int) -> None:
    env = LiarsDiceEnv()
    _, reward, terminated, truncated, info = play(env, actions)
    caller = (len(actions) - 1) % 2
    assert terminated and not truncated and not info["invalid"]
    assert info["rewards"] == {winner: 1.0, 1 - winner: -1.0}
    assert reward == (1.0 if winner == caller else -1.0)


RAISES = [
    ("same_quantity_higher_face_is_legal", "bid 3 6", True),
    ("higher_quantity_lower_face_is_legal", "bid 4 1", True),
    ("same_quantity_lower_face_is_illegal", "bid 3 4", False),
    ("repeating_the_bid_is_illegal", "bid 3 5", False),
    ("lower_quantity_is_illegal", "bid 2 6", False),
    ("more_than_all_dice_is_illegal", "bid 11 2", False),
    ("face_beyond_the_die_is_illegal", "bid 4 7", False),
    ("call_is_legal_after_a_bid", "call", True),
]


@pytest.mark.parametrize("name,action,legal", RAISES, ids=[r[0] for r in RAISES])
def test_raises_after_bid_3_5(name: str, action: str, legal: bool) -> None:
    env = LiarsDiceEnv()
    _, _, _, _, info = play(env, ["bid 3 5"])
    assert (action in info["legal_actions"]) == legal
    _, reward, terminated, _, info = env.step(action)
    assert info["invalid"] == (not legal)
    if not legal:
        # Player 1 forfeits: -1 for it, 0 for player 0.
        assert terminated and reward == -1.0 and info["rewards"] == {0: 0.0, 1: -1.0}
        assert info["forfeit"] == 1


def test_legal_actions_are_every_raise_then_call() -> None:
    env = LiarsDiceEnv()
    _, _, _, _, info = play(env, ["bid 9 5"])
    # Above (9, 5): (9, 6) and (10, 1)..(10, 6), then the call.
    assert info["legal_actions"] == ["bid 9 6"] + [f"bid 10 {f}" for f in range(1, 7)] + ["call"]


def test_opening_offers_every_bid_and_no_call() -> None:
    env = LiarsDiceEnv()
    _, info = env.reset(seed=0)
    assert len(info["legal_actions"]) == 10 * 6 and "call" not in info["legal_actions"]
    _, reward, terminated, _, info = env.step("call")
    assert terminated and info["invalid"] and reward == -1.0
    assert info["rewards"] == {0: -1.0, 1: 0.0} and info["forfeit"] == 0


def test_top_bid_leaves_only_the_call() -> None:
    env = LiarsDiceEnv(dice_per_player=2, faces=4)
    _, info = env.reset(seed=0)
    assert len(info["legal_actions"]) == 4 * 4  # four dice, four faces
    _, _, _, _, info = env.step("bid 4 4")
    assert info["legal_actions"] == ["call"]
    assert HeuristicLiarsDiceOpponent().act(env, np.random.default_rng(0)) == "call"


@pytest.mark.parametrize("text", ["bid 3 5", "\\boxed{bid 3 5}", "[bid 3 5]", "3 5", "bid 3x5",
                                  "BID 3 5s", "Bid 3 5.", "bid 3 x 5", "I bid. \\boxed{ bid  3 5 }"])
def test_bid_spellings_all_mean_bid_3_5(text: str) -> None:
    env = LiarsDiceEnv()
    _, _, _, _, info = play(env, [text])
    assert not info["invalid"] and info["action"] == "bid 3 5"


@pytest.mark.parametrize("text", ["call", "\\boxed{Call}", "[call]", "liar", "LIAR!", "challenge"])
def test_call_spellings_all_mean_call(text: str) -> None:
    env = LiarsDiceEnv()
    _, _, terminated, _, info = play(env, ["bid 3 5", text])
    assert terminated and not info["invalid"] and info["action"] == "call"


@pytest.mark.parametrize("text", ["bid 35", "bid three fives", "bid 3", "raise", "bid 99999 5",
                                  "bid " + "9" * 5000 + " 5", "\\boxed{bid " + "9" * 5000 + " 5}"])
def test_other_spellings_are_invalid(text: str) -> None:
    env = LiarsDiceEnv()
    _, _, terminated, _, info = play(env, [text])
    assert terminated and info["invalid"]


def test_invalid_random_rule_plays_on() -> None:
    env = LiarsDiceEnv(invalid_action="random")
    _, reward, terminated, _, info = play(env, ["bid 3 5", "bid 2 2"])  # 2 2 is below 3 5
    assert info["invalid"] and info["invalid_counts"] == [0, 1]
    assert info["action"] != "bid 2 2" and len(env.game.bids) + (env.game.caller is not None) == 2
    assert terminated == (info["action"] == "call")


def test_observation_shows_own_dice_only() -> None:
    env = LiarsDiceEnv()
    play(env, ["bid 3 5"])
    obs = env.observation(1)
    assert "Your dice: 2 5 5 6 6" in obs
    assert "Bids so far: player 0: bid 3 5." in obs
    assert "Legal actions: bid 3 6, bid 4 1," in obs
    assert obs.endswith(ANSWER_FORMAT) and set(obs) <= set(string.printable)
    # Changing player 0's hidden dice changes nothing in player 1's prompt.
    play(env, ["bid 3 5"], dice=[[6, 6, 6, 6, 6], DICE[1]])
    assert env.observation(1) == obs


def test_final_observation_reveals_the_dice() -> None:
    env = LiarsDiceEnv()
    obs, _, _, _, _ = play(env, ["bid 3 5", "call"])
    assert "player 0: 1 2 3 4 5; player 1: 2 5 5 6 6" in obs


@pytest.mark.parametrize("dice", [[[1, 2, 3, 4, 5]], [[1, 2, 3, 4, 5], [1, 2, 3, 4]],
                                  [[1, 2, 3, 4, 5], [1, 2, 3, 4, 7]], "12345"])
def test_bad_fixed_dice_are_rejected(dice) -> None:
    with pytest.raises(ValueError, match=r"options\['dice'\]=.*expected 2 lists of 5 faces in 1\.\.6"):
        LiarsDiceEnv().reset(seed=0, options={"dice": dice})


@pytest.mark.parametrize("kwargs, message", [({"dice_per_player": 0}, "dice_per_player=0: expected at least 1"),
                                             ({"faces": 1}, "faces=1: expected 2 to 9"),
                                             ({"faces": 10}, "faces=10: expected 2 to 9")])
def test_bad_sizes_are_rejected(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        LiarsDiceEnv(**kwargs)


def test_check_env_passes() -> None:
    check_env(gym.make(ENV_ID).unwrapped)


def test_same_seed_steps_identically() -> None:
    a, b = LiarsDiceEnv(invalid_action="random"), LiarsDiceEnv(invalid_action="random")
    pick = np.random.default_rng(5)
    hands = set()
    for seed in range(20):
        assert a.reset(seed=seed) == b.reset(seed=seed)
        assert a.game.dice == b.game.dice
        hands.add(str(a.game.dice))
        done = False
        while not done:
            action = "garbage" if pick.random() < 0.5 else "call"
            out_a, out_b = a.step(action), b.step(action)
            assert out_a == out_b
            done = out_a[2]
    assert len(hands) > 1  # different seeds roll different dice


def test_random_play_terminates_and_is_zero_sum() -> None:
    # Bids strictly rise: at most 60 bids and a call.
    assert_random_play_ends_zero_sum(LiarsDiceEnv(), games=500, max_turns=2 * 5 * 6 + 1)


@settings(max_examples=200, deadline=None)
@given(text=st.text(), rule=st.sampled_from(["lose", "random"]), opened=st.booleans())
def test_arbitrary_text_never_raises(text: str, rule: str, opened: bool) -> None:
    env = LiarsDiceEnv(invalid_action=rule)
    env.reset(seed=0)
    if opened:
        env.step("bid 2 3")
    assert_text_action_is_safe(env, text)


HEURISTIC = [
    # Player 1 holds no 6 and needs nine of player 0's five dice: impossible, so it calls.
    ("calls_an_impossible_bid", ["bid 9 6"], [[1, 1, 1, 1, 1], [1, 2, 3, 4, 5]], "call"),
    # Player 0 opens on its most common face with the smallest quantity.
    ("opens_on_its_best_face", [], [[2, 3, 5, 5, 5], [1, 1, 1, 1, 1]], "bid 1 5"),
    # Player 1 holds three 5s: "bid 3 5" is certain, better than calling a certain "bid 2 5".
    ("raises_on_its_best_face", ["bid 2 5"], [[1, 1, 1, 1, 1], [2, 3, 5, 5, 5]], "bid 3 5"),
]


@pytest.mark.parametrize("name,actions,dice,expected", HEURISTIC, ids=[h[0] for h in HEURISTIC])
def test_heuristic_decisions(name: str, actions: list[str], dice, expected: str) -> None:
    env = LiarsDiceEnv()
    play(env, actions, dice=dice)
    opponent = make_opponent(ENV_ID, "strong")
    assert opponent.name == "strong"
    assert opponent.act(env, np.random.default_rng(0)) == expected


def test_heuristic_ignores_the_hidden_dice() -> None:
    env, opponent, roll = LiarsDiceEnv(), HeuristicLiarsDiceOpponent(), np.random.default_rng(1)
    for _ in range(50):
        own = [int(v) for v in roll.integers(1, 7, size=5)]
        choices = set()
        for hidden in ([1] * 5, [6] * 5, [int(v) for v in roll.integers(1, 7, size=5)]):
            play(env, ["bid 3 4"], dice=[hidden, own])
            choices.add(opponent.act(env, np.random.default_rng(0)))
        assert len(choices) == 1


def test_heuristic_beats_random() -> None:
    env, strong, weak = LiarsDiceEnv(), HeuristicLiarsDiceOpponent(), RandomOpponent()
    rng = np.random.default_rng(0)
    total = 0.0
    for game in range(500):
        env.reset(seed=game)
        seat = game % 2  # both seats, alternately
        terminated = False
        while not terminated:
            actor = strong if env.current_player() == seat else weak
            _, _, terminated, _, info = env.step(actor.act(env, rng))
        total += info["rewards"][seat]
    # Mean return above 0.5 means winning more than 75% of rounds.
    assert total / 500 > 0.5
