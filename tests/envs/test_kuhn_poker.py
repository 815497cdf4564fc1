"""Kuhn Poker: rules on hand-written hands, chip accounting over a match, answer forms, the
invalid-action rule, the Gymnasium contract, and the equilibrium opponent."""

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
from envs.kuhn_poker import EquilibriumKuhnOpponent, KuhnPokerEnv
from envs.opponents import make_opponent
from env_contract import assert_steps_identically

ENV_ID = "selfplay/KuhnPoker-v0"


def play(cards, actions, **kwargs):
    """Reset with a fixed deal, play ``actions``; return the env and the last step's result."""
    env = KuhnPokerEnv(**kwargs)
    env.reset(seed=0, options={"cards": cards})
    result = None
    for action in actions:
        result = env.step(action)
    return env, result


@pytest.mark.parametrize("cards, actions, r0", [
    (["K", "J"], ["check", "check"], 1),          # showdown, pot 2: K beats J, +1
    (["J", "K"], ["check", "check"], -1),         # same, the other way round
    (["Q", "K"], ["bet", "fold"], 1),             # the bettor takes the antes even with the worse card
    (["Q", "K"], ["bet", "call"], -2),            # called bet: Q loses ante + bet to K
    (["K", "Q"], ["bet", "call"], 2),
    (["K", "Q"], ["check", "bet", "fold"], -1),   # player 0 folds: loses its ante only
    (["J", "Q"], ["check", "bet", "call"], -2),   # called bet at showdown, J loses 2
    (["K", "J"], ["check", "bet", "call"], 2),
])
def test_every_terminal_history_pays_the_real_stakes(cards, actions, r0):
    env, (obs, reward, terminated, truncated, info) = play(cards, actions)
    assert terminated and not truncated
    assert info["rewards"] == {0: r0, 1: -r0}
    last_player = (len(actions) - 1) % 2
    assert reward == info["rewards"][last_player]
    assert info["player"] == -1 and not info["invalid"]


def test_legal_actions_follow_the_betting():
    env = KuhnPokerEnv()
    _, info = env.reset(seed=1)
    assert info["legal_actions"] == ["check", "bet"] and info["player"] == 0
    _, _, _, _, info = env.step("check")
    assert info["legal_actions"] == ["check", "bet"] and info["player"] == 1
    _, _, _, _, info = env.step("bet")
    assert info["legal_actions"] == ["call", "fold"] and info["player"] == 0


def test_a_match_accumulates_chips_and_alternates_the_first_actor():
    env = KuhnPokerEnv(num_hands=3)
    _, info = env.reset(seed=0, options={"cards": [["K", "J"], ["Q", "K"], ["J", "Q"]]})
    # Hand 1, player 0 first: bet, call; K beats J for 2 -> chips (+2, -2).
    env.step("bet")
    _, reward, terminated, _, info = env.step("call")
    assert (reward, terminated, info["player"]) == (0.0, False, 1)  # hand 2: player 1 acts first
    obs = env.observation(1)
    assert "Your net chips so far: -2." in obs and "Showdown: player 0 had K, player 1 had J." in obs
    assert "Your card: K." in obs and "You act first." in obs
    # Hand 2: player 1 (K) bets, player 0 (Q) folds -> player 1 +1 -> (+1, -1).
    env.step("bet")
    _, _, _, _, info = env.step("fold")
    assert info["player"] == 0
    obs = env.observation(0)
    assert "Hand 2: player 1 bet, player 0 folded. Player 1 won 1 chip(s)." in obs
    assert "player 1 had K" not in obs  # a folded hand is not shown down
    # Hand 3, player 0 first again: J bets, Q folds -> player 0 +1 -> (+2, -2).
    env.step("bet")
    _, reward, terminated, _, info = env.step("fold")
    assert terminated and info["rewards"] == {0: 2.0, 1: -2.0} and reward == -2.0


def test_unfixed_hands_of_a_match_are_dealt_at_random():
    env = KuhnPokerEnv(num_hands=4)
    env.reset(seed=3, options={"cards": ["K", "J"]})
    assert env.match.deals[0] == ("K", "J") and len(env.match.deals) == 4
    assert all(a != b for a, b in env.match.deals)


@pytest.mark.parametrize("text", ["bet", "Bet", "[bet]", "\\boxed{bet}", "I hold K, so \\boxed{ BET }.",
                                  "check first? no. [bet]"])
def test_bare_bracketed_and_boxed_answers_are_read(text):
    _, (_, _, _, _, info) = play(["K", "J"], [text])
    assert not info["invalid"] and info["action"] == "bet"


@pytest.mark.parametrize("num_hands, r_offender", [(1, -2.0), (3, -6.0)])
def test_an_invalid_action_gives_the_offender_min_return_and_the_opponent_nothing(num_hands, r_offender):
    # Player 0 checks, then player 1 names an action that is not legal here.
    env, (_, reward, terminated, _, info) = play(["K", "J"], ["check", "call"], num_hands=num_hands)
    assert env.min_return == r_offender
    assert terminated and info["invalid"] and info["invalid_counts"] == [0, 1]
    assert info["rewards"] == {1: r_offender, 0: 0.0} and reward == r_offender
    assert info["forfeit"] == 1


def test_a_forfeit_ends_the_whole_match_and_replaces_the_chips_won_so_far():
    # Hand 1: player 0 (K) bets, player 1 (J) folds: player 0 is one chip up. In hand 2 player 1
    # acts first and answers junk: the match ends there, hand 3 is never dealt.
    env, (_, reward, terminated, _, info) = play([["K", "J"], ["Q", "J"], ["K", "Q"]],
                                                 ["bet", "fold", "junk"], num_hands=3)
    assert terminated and info["forfeit"] == 1 and len(env.match.records) == 1
    assert env.match.chips == [1, -1]  # what the hands played had moved ...
    assert info["rewards"] == {0: 0.0, 1: -6.0} and reward == -6.0  # ... counts for neither
    # SPIRAL's values scaled to a one-hand game's range: -3 and +1.
    env, (_, reward, _, _, info) = play(["K", "J"], ["junk"], invalid_reward=-3.0,
                                        opponent_invalid_reward=1.0)
    assert info["rewards"] == {0: -3.0, 1: 1.0} and reward == -3.0 and info["forfeit"] == 0


def test_the_random_invalid_rule_plays_on():
    env, (_, _, terminated, _, info) = play(["K", "J"], ["raise!"], invalid_action="random")
    assert not terminated and info["invalid"] and info["action"] in ("check", "bet")


def test_the_prompt_shows_only_the_players_own_card():
    a = KuhnPokerEnv()
    b = KuhnPokerEnv()
    obs_a, _ = a.reset(seed=0, options={"cards": ["Q", "K"]})
    obs_b, _ = b.reset(seed=0, options={"cards": ["Q", "J"]})
    assert obs_a == obs_b and "Your card: Q." in obs_a
    assert obs_a.endswith(ANSWER_FORMAT) and "Legal actions: check, bet" in obs_a
    assert set(obs_a) <= set(string.printable)


@pytest.mark.parametrize("cards, message", [
    (["K", "K"], r"cards \('K', 'K'\): need two different cards"),
    (["A", "J"], r"cards \('A', 'J'\): need two different cards"),
    ([["K", "J"], ["Q", "J"]], r"2 deals given for 1 hand\(s\)"),  # one hand by default
])
def test_bad_fixed_cards_are_rejected(cards, message):
    with pytest.raises(ValueError, match=message):
        KuhnPokerEnv().reset(options={"cards": cards})


@pytest.mark.parametrize("kwargs", [{}, {"num_hands": 3}])
def test_passes_gymnasiums_env_checker(kwargs):
    check_env(gym.make(ENV_ID, **kwargs).unwrapped)


def test_same_seed_gives_the_same_game_step_by_step():
    assert_steps_identically(lambda: KuhnPokerEnv(num_hands=2, invalid_action="random"), range(50),
                             lambda pick: str(pick.choice(["check", "bet", "call", "fold", "junk"])), 7)


def test_random_play_always_ends_zero_sum():
    rng = np.random.default_rng(0)
    for seed in range(3000):
        num_hands = 1 + seed % 3
        env = KuhnPokerEnv(num_hands=num_hands, invalid_action="lose" if seed % 2 else "random")
        _, info = env.reset(seed=seed)
        for _ in range(3 * num_hands + 1):
            # Mostly legal moves, sometimes junk, to exercise both invalid rules.
            action = "junk" if rng.random() < 0.05 else str(rng.choice(info["legal_actions"]))
            _, _, terminated, _, info = env.step(action)
            if terminated:
                break
        assert terminated
        r = info["rewards"]
        if "forfeit" in info:  # a forfeit: the worst return for its author, 0 for the other
            assert r[info["forfeit"]] == -2 * num_hands and r[1 - info["forfeit"]] == 0
        else:
            assert r[0] + r[1] == 0 and abs(r[0]) <= 2 * num_hands


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_any_text_as_an_action_never_raises(texts, seed):
    env = KuhnPokerEnv(invalid_action="random", num_hands=2)
    env.reset(seed=seed)
    for text in texts:
        obs, _, terminated, _, _ = env.step(text)
        assert set(obs) <= set(string.printable)
        if terminated:
            break


def test_the_equilibrium_opponent_never_bets_a_queen_first():
    # Its Q is a pure check as first actor, and its K always calls a bet as second actor.
    opponent, rng = EquilibriumKuhnOpponent(), np.random.default_rng(0)
    env = KuhnPokerEnv()
    env.reset(options={"cards": ["Q", "K"]})
    assert {opponent.act(env, rng) for _ in range(200)} == {"check"}
    env.step("bet")
    assert {opponent.act(env, rng) for _ in range(200)} == {"call"}


def test_the_equilibrium_opponent_earns_the_game_value_against_itself():
    # Exact value for the first actor is -1/18 = -0.0556; 20,000 hands give a standard error of
    # about 0.01, so a 0.04 band is a loose, seeded check.
    opponent = make_opponent(ENV_ID, "strong")
    assert isinstance(opponent, EquilibriumKuhnOpponent) and opponent.name == "strong"
    rng, env, total = np.random.default_rng(123), KuhnPokerEnv(), 0.0
    n = 20_000
    for seed in range(n):
        _, info = env.reset(seed=seed)
        terminated = False
        while not terminated:
            action = opponent.act(env, rng)
            assert action in info["legal_actions"]
            _, _, terminated, _, info = env.step(action)
        total += info["rewards"][0]
    assert abs(total / n + 1 / 18) < 0.04
