"""Simple Negotiation: hand-computed trades, the offer grammar, feasibility, the turn limit,
the heuristic opponent and the Gymnasium contract."""

from __future__ import annotations

import itertools
import string

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers the ids)
from envs.base import ANSWER_FORMAT
from envs.negotiation import HeuristicNegotiationOpponent, NegotiationGame, Offer, SimpleNegotiationEnv
from envs.opponents import make_opponent
from env_contract import assert_steps_identically

ENV_ID = "selfplay/SimpleNegotiation-v0"
# Resources in order: wood, stone, wheat, sheep, gold.
INVENTORIES = [[3, 0, 0, 0, 1], [0, 2, 0, 4, 0]]
VALUES = [[2, 5, 1, 8, 3], [4, 1, 6, 2, 9]]
# The deal's scale S = max over players of sum_r (v0_r + v1_r) * own_r with v0 + v1 =
# [6, 6, 7, 10, 12]: player 0 owns 3*6 + 1*12 = 30, player 1 owns 2*6 + 4*10 = 52, so S = 52.
SCALE = 52


def make(max_turns: int = 8, **kwargs) -> SimpleNegotiationEnv:
    env = SimpleNegotiationEnv(max_turns=max_turns, **kwargs)
    env.reset(seed=0, options={"inventories": INVENTORIES, "values": VALUES})
    return env


def test_an_accepted_offer_is_carried_out_and_scored_zero_sum():
    env = make(max_turns=2)
    env.step("offer 2 wood for 3 sheep")
    _, reward, terminated, _, info = env.step("accept")
    assert env.game.inventories == [[1, 0, 0, 3, 1], [2, 2, 0, 1, 0]]
    # g0 = -2 wood * 2 + 3 sheep * 8 = 20; g1 = 2 wood * 4 - 3 sheep * 2 = 2; r0 = 18 / 52.
    assert terminated and info["rewards"] == {0: 18 / SCALE, 1: -18 / SCALE}
    assert reward == -18 / SCALE  # the acting player was player 1
    assert sum(info["rewards"].values()) == 0


def test_trading_goes_on_after_an_accept_until_the_turns_run_out():
    env = make(max_turns=4)
    env.step("offer 2 wood for 3 sheep")
    _, _, terminated, _, _ = env.step("accept")
    assert not terminated
    env.step("offer 1 gold for 1 stone")
    _, _, terminated, _, info = env.step("accept")
    assert env.game.inventories == [[1, 1, 0, 3, 0], [2, 1, 0, 1, 1]]
    # g0 = (1*2 + 1*5 + 3*8) - (3*2 + 1*3) = 31 - 9 = 22;
    # g1 = (2*4 + 1*1 + 1*2 + 1*9) - (2*1 + 4*2) = 20 - 10 = 10; r0 = 12 / 52.
    assert terminated and info["rewards"] == {0: 12 / SCALE, 1: -12 / SCALE}


def test_a_counter_offer_replaces_the_waiting_one():
    env = make()
    env.step("offer 1 wood for 1 sheep")
    env.step("offer 1 stone for 1 gold")
    env.step("accept")  # player 0 accepts player 1's counter-offer
    assert env.game.inventories == [[3, 1, 0, 0, 0], [0, 1, 0, 4, 1]]


def test_the_turn_limit_ends_the_game_with_nothing_traded():
    env = make(max_turns=8)
    for turn in range(8):
        _, reward, terminated, _, info = env.step("offer 1 wood for 1 sheep" if turn % 2 == 0 else "deny")
        assert terminated == (turn == 7)
    assert info["rewards"] == {0: 0.0, 1: 0.0} and reward == 0.0


def test_offers_of_every_feasible_quantity_are_legal():
    env = SimpleNegotiationEnv()
    env.reset(seed=0, options={"inventories": [[2, 1, 0, 0, 0], [0, 0, 1, 2, 0]], "values": VALUES})
    legal = 0
    for wood, stone, wheat, sheep in itertools.product(range(3), range(2), range(2), range(3)):
        offer = Offer(0, (wood, stone, 0, 0, 0), (0, 0, wheat, sheep, 0))
        parsed = env.parse_action(offer.text())
        if wood + stone + wheat + sheep:
            assert parsed == offer.text()
            legal += 1
        else:
            assert parsed is None  # "offer nothing for nothing" trades nothing
    assert legal == 6 * 6 - 1


@pytest.mark.parametrize("text, canonical", [
    ("offer 2 wood for 3 sheep", "offer 2 wood for 3 sheep"),
    ("Offer 2 Woods, 1 Gold for 3 Sheep", "offer 2 wood 1 gold for 3 sheep"),
    ("[offer 1 gold and 2 wood for 3 sheep]", "offer 2 wood 1 gold for 3 sheep"),
    ("Let me think. \\boxed{OFFER  2 wood for 1 stone and 1 sheep}", "offer 2 wood for 1 stone 1 sheep"),
    ("2 wood for 3 sheep", "offer 2 wood for 3 sheep"),
    ("offer 1 wood 1 wood for 3 sheep.", "offer 2 wood for 3 sheep"),
    ("offer nothing for 1 sheep", "offer nothing for 1 sheep"),
    ("offer 1 gold for nothing", "offer 1 gold for nothing"),
    # Longer than the 40 characters of a generic bare answer, still read as a bare offer.
    ("Offer 3 woods and 1 gold for 2 stones and 4 sheep", "offer 3 wood 1 gold for 2 stone 4 sheep"),
])
def test_offers_are_read_tolerantly(text, canonical):
    assert make().parse_action(text) == canonical


@pytest.mark.parametrize("text", [
    "offer 4 wood for 1 sheep",     # player 0 owns only 3 wood
    "offer 1 wood for 5 sheep",     # player 1 owns only 4 sheep
    "offer 1 wood for 1 wheat",     # player 1 owns no wheat
    "offer nothing for nothing",
    "offer 0 wood for 0 sheep",
    "offer 1 diamond for 1 sheep",
    "offer 9999999 wood for 1 sheep",
    "accept",                       # no offer is waiting
    "deny",
    "let's trade!",
])
def test_unparseable_or_infeasible_actions_lose(text):
    _, reward, terminated, _, info = make().step(text)
    assert terminated and info["invalid"] and info["forfeit"] == 0
    assert info["rewards"] == {0: -1.0, 1: 0.0} and reward == -1.0


def test_accept_after_a_deny_is_invalid_for_the_accepter():
    env = make()
    env.step("offer 1 wood for 1 sheep")
    env.step("deny")
    _, _, terminated, _, info = env.step("accept")
    assert terminated and info["rewards"] == {0: -1.0, 1: 0.0} and info["forfeit"] == 0


def test_accept_needs_both_players_to_still_own_the_goods():
    game = NegotiationGame(INVENTORIES, VALUES, max_turns=8)
    game.play(Offer(0, (2, 0, 0, 0, 0), (0, 0, 0, 3, 0)))
    assert game.can_accept()
    game.inventories[1][3] = 2  # the asked sheep are gone
    assert not game.can_accept()
    with pytest.raises(ValueError, match="'accept' is not legal now"):
        game.play("accept")


def test_the_prompt_shows_own_values_and_the_waiting_offer():
    env = make()
    obs = env.observation(0)
    assert "Your values per unit: Wood 2, Stone 5, Wheat 1, Sheep 8, Gold 3" in obs
    assert "Player 1's inventory: Wood 0, Stone 2, Wheat 0, Sheep 4, Gold 0." in obs
    assert ANSWER_FORMAT in obs and set(obs) <= set(string.printable)
    example = obs.splitlines()[-1]
    assert example.startswith("For example:") and env.parse_action(example) is not None
    obs, *_ = env.step("offer 2 wood for 3 sheep")
    assert "Offer waiting for you: you would get 2 wood and give 3 sheep." in obs
    assert '"accept" or "deny"' in obs


def test_the_prompt_hides_the_other_players_values():
    other = SimpleNegotiationEnv()
    other.reset(seed=0, options={"inventories": INVENTORIES, "values": [VALUES[0], [1, 1, 1, 1, 1]]})
    assert make().observation(0) == other.observation(0)
    hidden = make(public_inventories=False).observation(0)
    assert "Player 1's inventory" not in hidden


@pytest.mark.parametrize("offer, expected", [
    ("offer 2 wood for 3 sheep", "accept"),    # player 1 gains 2*4 - 3*2 = +2
    ("offer 1 gold for 2 stone", "accept"),    # +9 - 2 = +7
    # +4 - 4 = 0 does not raise its value: counter with its cheapest stone (1) for the dearest
    # good player 0 owns, gold (9): as many stones as keep it ahead, min(2 owned, (9-1)//1).
    ("offer 1 wood for 2 sheep", "offer 2 stone for 1 gold"),
])
def test_the_heuristic_accepts_only_what_raises_its_value(offer, expected):
    env = make()
    env.step(offer)
    assert HeuristicNegotiationOpponent().act(env, np.random.default_rng(0)) == expected


def test_the_heuristic_offers_cheap_goods_for_dear_ones():
    # Player 0's cheapest owned good is wood (2), the dearest player 1 owns is sheep (8):
    # 3 wood (worth 6 < 8) for 1 sheep.
    opponent = make_opponent(ENV_ID, "strong")
    assert opponent.name == "strong"
    assert opponent.act(make(), np.random.default_rng(0)) == "offer 3 wood for 1 sheep"


@pytest.mark.parametrize("kwargs", [{}, {"max_turns": 3, "public_inventories": False}])
def test_passes_gymnasiums_env_checker(kwargs):
    check_env(gym.make(ENV_ID, **kwargs).unwrapped)


def test_same_seed_gives_the_same_game_step_by_step():
    choices = ["accept", "deny", "offer 1 wood for 1 sheep", "offer nothing for 1 gold", "junk"]
    assert_steps_identically(lambda: SimpleNegotiationEnv(invalid_action="random"), range(50),
                             lambda pick: str(pick.choice(choices)), 7)


def test_random_and_heuristic_play_always_ends_zero_sum():
    rng, heuristic = np.random.default_rng(0), HeuristicNegotiationOpponent()
    for seed in range(2000):
        env = SimpleNegotiationEnv(max_turns=1 + seed % 8, invalid_action="lose" if seed % 2 else "random")
        env.reset(seed=seed)
        for _ in range(env.max_turns):
            # Random offers, the heuristic, and now and then junk to exercise both invalid rules.
            u = rng.random()
            action = "junk" if u < 0.03 else heuristic.act(env, rng) if u < 0.5 else env.random_action()
            _, _, terminated, _, info = env.step(action)
            assert info["invalid"] == (action == "junk")
            if terminated:
                break
        assert terminated
        r = info["rewards"]
        if "forfeit" in info:  # a forfeit: the worst return for its author, 0 for the other
            assert r[info["forfeit"]] == -1 and r[1 - info["forfeit"]] == 0
        else:
            assert r[0] + r[1] == 0 and -1 <= r[0] <= 1


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_any_text_as_an_action_never_raises(texts, seed):
    env = SimpleNegotiationEnv(invalid_action="random", max_turns=4)
    env.reset(seed=seed)
    for text in texts:
        obs, _, terminated, _, _ = env.step(text)
        assert set(obs) <= set(string.printable)
        if terminated:
            break


@settings(max_examples=200, deadline=None)
@given(give=st.lists(st.integers(0, 12), min_size=5, max_size=5),
       ask=st.lists(st.integers(0, 12), min_size=5, max_size=5), seed=st.integers(0, 2**16))
def test_an_offer_is_legal_exactly_when_it_is_feasible(give, ask, seed):
    env = SimpleNegotiationEnv()
    env.reset(seed=seed)
    mine, theirs = env.game.inventories
    feasible = (any(give) or any(ask)) and all(g <= m for g, m in zip(give, mine)) \
        and all(a <= t for a, t in zip(ask, theirs))
    text = Offer(0, tuple(give), tuple(ask)).text()
    assert (env.parse_action(text) == text) == feasible
