"""TicTacToe: rules on hand-written games, the env contract, random play, the perfect opponent."""

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
from envs.opponents import RandomOpponent, make_opponent
from envs.tictactoe import PerfectTicTacToeOpponent, TicTacToeBoard, TicTacToeEnv
from env_contract import assert_random_play_ends_zero_sum, assert_steps_identically, assert_text_action_is_safe

ENV_ID = "selfplay/TicTacToe-v0"


def play(env: TicTacToeEnv, moves: list[str]):
    """Reset, play ``moves`` in order and return the last step's result."""
    env.reset(seed=0)
    result = None
    for move in moves:
        result = env.step(move)
    return result


# Each game ends on its last move; X is player 0 and moves on even plies.
WINS = [
    # X: 0 1 2 (top row); O's 3 4 make no line.
    ("full_row_wins_for_x", "0 3 1 4 2", 0),
    # X: 0 3 6 (left column).
    ("full_column_wins_for_x", "0 1 3 4 6", 0),
    # X: 0 4 8 (main diagonal).
    ("main_diagonal_wins_for_x", "0 1 4 2 8", 0),
    # O: 3 4 5 (middle row); X's 0 1 8 make no line.
    ("full_row_wins_for_o", "0 3 1 4 8 5", 1),
    # O: 2 4 6 (anti-diagonal); X's 0 1 8 make no line.
    ("anti_diagonal_wins_for_o", "0 2 1 4 8 6", 1),
    # O: 2 5 8 (right column); X's 0 1 6 make no line.
    ("full_column_wins_for_o", "0 2 1 5 6 8", 1),
]


@pytest.mark.parametrize("name,moves,winner", WINS, ids=[w[0] for w in WINS])
def test_line_wins(name: str, moves: str, winner: int) -> None:
    env = TicTacToeEnv()
    obs, reward, terminated, truncated, info = play(env, moves.split())
    # The winner made the last move, so the acting player's reward is +1.
    assert terminated and not truncated
    assert reward == 1.0
    assert info["rewards"] == {winner: 1.0, 1 - winner: -1.0}
    assert info["player"] == -1
    assert "game is over" in obs


def test_full_grid_without_line_is_a_draw() -> None:
    # X: 0 2 3 7 8, O: 1 4 5 6 gives
    #  X | O | X
    #  X | O | O
    #  O | X | X      no row, column or diagonal is one mark: a draw.
    env = TicTacToeEnv()
    _, reward, terminated, _, info = play(env, "0 1 2 4 3 5 7 6 8".split())
    assert terminated and reward == 0.0
    assert info["rewards"] == {0: 0.0, 1: 0.0}


def test_game_goes_on_before_a_line() -> None:
    env = TicTacToeEnv()
    _, reward, terminated, _, info = play(env, ["4", "0"])
    assert not terminated and reward == 0.0
    assert info["player"] == 0
    assert info["legal_actions"] == ["1", "2", "3", "5", "6", "7", "8"]


ILLEGAL = [
    ("occupied_cell_is_invalid", ["4"], "4"),
    ("cell_out_of_range_is_invalid", ["4"], "9"),
    ("prose_is_invalid", ["4"], "I would like to play in the corner"),
    ("empty_string_is_invalid", [], ""),
    ("negative_cell_is_invalid", [], "-1"),
]


@pytest.mark.parametrize("name,before,bad", ILLEGAL, ids=[c[0] for c in ILLEGAL])
def test_invalid_action_loses(name: str, before: list[str], bad: str) -> None:
    env = TicTacToeEnv()
    play(env, before)
    offender = len(before) % 2
    _, reward, terminated, _, info = env.step(bad)
    # A forfeit: the offender gets min_return -1, the opponent 0 (not zero-sum).
    assert terminated and info["invalid"] and info["forfeit"] == offender
    assert reward == -1.0
    assert info["rewards"] == {offender: -1.0, 1 - offender: 0.0}
    assert info["invalid_counts"][offender] == 1


@pytest.mark.parametrize("text", ["4", "[4]", "\\boxed{4}", "I pick the centre: \\boxed{ 4 }.",
                                  "[0] no, [4]", "4."])
def test_action_forms_all_mark_the_centre(text: str) -> None:
    env = TicTacToeEnv()
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(text)
    assert not terminated and not info["invalid"]
    assert info["action"] == "4"
    assert env.board.cells[4] == 0


def test_lenient_accepts_a_cell_named_in_prose() -> None:
    env = TicTacToeEnv(lenient=True)
    env.reset(seed=0)
    _, _, _, _, info = env.step("I think the best cell is 4 because it is the centre")
    assert not info["invalid"] and info["action"] == "4"


def test_invalid_random_rule_plays_on() -> None:
    env = TicTacToeEnv(invalid_action="random")
    play(env, ["4"])
    _, reward, terminated, _, info = env.step("4")  # occupied: a random empty cell instead
    assert not terminated and reward == 0.0
    assert info["invalid"] and info["invalid_counts"] == [0, 1]
    assert info["action"] in [str(c) for c in range(9) if c != 4]
    assert env.board.cells.count(None) == 7
    assert info["player"] == 0


def test_observation_shows_board_moves_legal_actions_and_answer_format() -> None:
    env = TicTacToeEnv()
    play(env, ["4", "0"])
    obs = env.observation(0)
    assert " O | 1 | 2\n---+---+---\n 3 | X | 5\n---+---+---\n 6 | 7 | 8" in obs
    assert "Moves so far: X 4, O 0." in obs
    assert "Legal actions: 1, 2, 3, 5, 6, 7, 8" in obs
    assert obs.endswith(ANSWER_FORMAT)
    assert set(obs) <= set(string.printable)


def test_board_rejects_moves_after_a_win() -> None:
    board = TicTacToeBoard()
    for cell in (0, 3, 1, 4, 2):
        board.play(cell)
    assert board.winner() == 0 and board.legal_moves() == []
    with pytest.raises(ValueError, match="illegal TicTacToe move 5"):
        board.play(5)


def test_check_env_passes() -> None:
    check_env(gym.make(ENV_ID).unwrapped)


def test_same_seed_steps_identically() -> None:
    # The random invalid rule is the only randomness; garbage actions exercise it.
    assert_steps_identically(lambda: TicTacToeEnv(invalid_action="random"), range(20),
                             lambda pick: "garbage" if pick.random() < 0.5 else str(pick.integers(9)), 7)


def test_random_play_terminates_and_is_zero_sum() -> None:
    assert_random_play_ends_zero_sum(TicTacToeEnv(), games=2000, max_turns=9)


@settings(max_examples=200, deadline=None)
@given(text=st.text(), rule=st.sampled_from(["lose", "random"]))
def test_arbitrary_text_never_raises(text: str, rule: str) -> None:
    env = TicTacToeEnv(invalid_action=rule)
    env.reset(seed=0)
    env.step("4")
    assert_text_action_is_safe(env, text)


def play_match(strong_seat: int, other, games: int, seed: int) -> list[float]:
    """The perfect opponent's returns over ``games`` games from seat ``strong_seat``."""
    env, strong, rng = TicTacToeEnv(), PerfectTicTacToeOpponent(), np.random.default_rng(seed)
    returns = []
    for game in range(games):
        env.reset(seed=game)
        terminated = False
        while not terminated:
            actor = strong if env.current_player() == strong_seat else other
            _, _, terminated, _, info = env.step(actor.act(env, rng))
        returns.append(info["rewards"][strong_seat])
    return returns


@pytest.mark.parametrize("seat", [0, 1])
def test_perfect_opponent_never_loses_to_random(seat: int) -> None:
    returns = play_match(seat, RandomOpponent(), games=300, seed=seat)
    assert min(returns) >= 0.0
    assert returns.count(1.0) > 150  # it also wins most games against random play


def test_perfect_opponent_draws_against_itself() -> None:
    returns = play_match(0, PerfectTicTacToeOpponent(), games=30, seed=3)
    assert returns == [0.0] * 30


BEST_MOVES = [
    # X: 0 1, O: 3 4, X to move: 2 wins the top row at once.
    ("takes_the_win", ["0", "3", "1", "4"], {"2"}),
    # X: 0 1, O: 4, O to move: anything but 2 lets X complete the top row.
    ("blocks_the_row", ["0", "4", "1"], {"2"}),
    # X took a corner: the only replies that do not lose are the centre.
    ("answers_a_corner_with_the_centre", ["0"], {"4"}),
]


@pytest.mark.parametrize("name,moves,best", BEST_MOVES, ids=[b[0] for b in BEST_MOVES])
def test_perfect_opponent_finds_the_only_good_move(name: str, moves: list[str],
                                                   best: set[str]) -> None:
    env = TicTacToeEnv()
    play(env, moves)
    opponent = make_opponent(ENV_ID, "strong")
    assert opponent.name == "strong"
    for seed in range(10):
        assert opponent.act(env, np.random.default_rng(seed)) in best
