"""Connect Four: rules on hand-written games, the env contract, random play, the search opponent."""

from __future__ import annotations

import string
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers the ids)
from envs import connect_four
from envs.base import ANSWER_FORMAT
from envs.connect_four import ConnectFourBoard, ConnectFourEnv, SearchConnectFourOpponent
from envs.opponents import RandomOpponent, make_opponent
from env_contract import assert_random_play_ends_zero_sum, assert_steps_identically, assert_text_action_is_safe

ENV_ID = "selfplay/ConnectFour-v0"


def play(env: ConnectFourEnv, moves: str):
    """Reset, play the space-separated columns in ``moves`` and return the last step's result."""
    env.reset(seed=0)
    result = None
    for move in moves.split():
        result = env.step(move)
    return result


def draw_sequence() -> str:
    """A full board without four in a row, bottom row first:

        row 5:  O O X X O O X
        row 4:  X X O O X X O
        ...     (rows alternate)
        row 0:  X X O O X X O

    Columns 0 1 4 5 read X O X O X O upwards and 2 3 6 read O X O X O X. A row repeats a
    column type at most twice, and a diagonal keeps its mark only across alternating column
    types (ABAB), which never occurs in AABBAAB: no line of four anywhere. Pairs (a, b) filled
    as "a b b a" three times put X then O in a and O then X in b; column 5 goes last alone.
    """
    moves = []
    for a, b in ((0, 2), (1, 3), (4, 6)):
        moves += [a, b, b, a] * 3
    moves += [5] * 6
    return " ".join(map(str, moves))


WINS = [
    # X stacks four in column 0; O's three in column 1 come one short.
    ("column_wins_for_x", "0 1 0 1 0 1 0", 0),
    # X fills row 0 columns 0-3; O's row 1 columns 0-2 come one short.
    ("row_wins_for_x", "0 0 1 1 2 2 3", 0),
    # The last disc lands inside the line: X row 0 columns 0 1 3, then 2.
    ("row_completed_in_the_middle_wins", "0 0 1 1 3 3 2", 0),
    # O stacks four in column 1 while X's column 0 stops at three.
    ("column_wins_for_o", "0 1 0 1 0 1 2 1", 1),
    # X at (col, row) (0,0) (1,1) (2,2) (3,3): O fills the cells beneath.
    ("rising_diagonal_wins_for_x", "0 1 1 2 3 2 2 3 6 3 3", 0),
    # The same game mirrored (column c -> 6 - c): X at (6,0) (5,1) (4,2) (3,3).
    ("falling_diagonal_wins_for_x", "6 5 5 4 3 4 4 3 0 3 3", 0),
]


@pytest.mark.parametrize("name,moves,winner", WINS, ids=[w[0] for w in WINS])
def test_four_in_a_row_wins(name: str, moves: str, winner: int) -> None:
    env = ConnectFourEnv()
    _, reward, terminated, truncated, info = play(env, moves)
    assert terminated and not truncated
    assert reward == 1.0  # the winner made the last move
    assert info["rewards"] == {winner: 1.0, 1 - winner: -1.0}
    # One move earlier the game was still on: the last disc decided it.
    _, _, terminated_before, _, _ = play(env, moves.rsplit(" ", 1)[0])
    assert not terminated_before


def test_full_board_without_four_is_a_draw() -> None:
    env = ConnectFourEnv()
    moves = draw_sequence()
    assert len(moves.split()) == 42
    _, reward, terminated, _, info = play(env, moves)
    assert terminated and reward == 0.0
    assert info["rewards"] == {0: 0.0, 1: 0.0}
    assert env.board.ascii().splitlines()[0] == "O O X X O O X"
    assert env.board.ascii().splitlines()[5] == "X X O O X X O"


def test_full_column_is_illegal_and_loses() -> None:
    env = ConnectFourEnv()
    _, _, terminated, _, info = play(env, "0 0 0 0 0 0")  # X O X O X O: no four
    assert not terminated and "0" not in info["legal_actions"]
    _, reward, terminated, _, info = env.step("0")
    assert terminated and info["invalid"] and reward == -1.0
    assert info["rewards"] == {0: -1.0, 1: 0.0} and info["forfeit"] == 0


@pytest.mark.parametrize("bad", ["7", "-1", "column three", "", "\\boxed{}", "[3, 4]"])
def test_unparseable_or_out_of_range_loses(bad: str) -> None:
    env = ConnectFourEnv()
    play(env, "3")
    _, reward, terminated, _, info = env.step(bad)
    # Player 1 (O) forfeits: -1 for O, 0 for X.
    assert terminated and info["invalid"] and reward == -1.0
    assert info["rewards"] == {0: 0.0, 1: -1.0} and info["forfeit"] == 1


@pytest.mark.parametrize("text", ["3", "[3]", "\\boxed{3}", "Centre is best. \\boxed{3}", " 3 "])
def test_action_forms_drop_in_column_three(text: str) -> None:
    env = ConnectFourEnv()
    env.reset(seed=0)
    _, _, _, _, info = env.step(text)
    assert not info["invalid"] and info["action"] == "3"
    assert env.board.grid[0][3] == 0


def test_invalid_random_rule_plays_on() -> None:
    env = ConnectFourEnv(invalid_action="random")
    play(env, "0 0 0 0 0 0")
    _, reward, terminated, _, info = env.step("0")  # full column: a random open one instead
    assert not terminated and reward == 0.0
    assert info["invalid"] and info["invalid_counts"] == [1, 0]
    assert info["action"] in ["1", "2", "3", "4", "5", "6"]
    assert len(env.board.moves) == 7 and info["player"] == 1


def test_observation_shows_board_moves_legal_actions_and_answer_format() -> None:
    env = ConnectFourEnv()
    play(env, "3 3")
    obs = env.observation(0)
    # Top row first: O sits on X in column 3.
    assert ". . . O . . .\n. . . X . . .\n0 1 2 3 4 5 6" in obs
    assert "Moves so far (mark and column): X 3, O 3." in obs
    assert "Legal actions: 0, 1, 2, 3, 4, 5, 6" in obs
    assert obs.endswith(ANSWER_FORMAT)
    assert set(obs) <= set(string.printable)


def test_board_rejects_moves_after_a_win() -> None:
    board = ConnectFourBoard()
    for col in (0, 1, 0, 1, 0, 1, 0):
        board.play(col)
    assert board.winner() == 0 and board.legal_moves() == []
    with pytest.raises(ValueError, match="illegal Connect Four move 2"):
        board.play(2)


def test_check_env_passes() -> None:
    check_env(gym.make(ENV_ID).unwrapped)


def test_same_seed_steps_identically() -> None:
    assert_steps_identically(lambda: ConnectFourEnv(invalid_action="random"), range(10),
                             lambda pick: "garbage" if pick.random() < 0.5 else str(pick.integers(7)), 11)


def test_random_play_terminates_and_is_zero_sum() -> None:
    assert_random_play_ends_zero_sum(ConnectFourEnv(), games=500, max_turns=42)


@settings(max_examples=200, deadline=None)
@given(text=st.text(), rule=st.sampled_from(["lose", "random"]))
def test_arbitrary_text_never_raises(text: str, rule: str) -> None:
    env = ConnectFourEnv(invalid_action=rule)
    env.reset(seed=0)
    env.step("3")
    assert_text_action_is_safe(env, text)


BEST_MOVES = [
    # X holds row 0 columns 0-2 (O sits on top of them): column 3 wins at once.
    ("takes_the_win", "0 0 1 1 2 2", {"3"}),
    # X threatens row 0 column 3; O (column 6 twice) must block there.
    ("blocks_the_row", "0 6 1 6 2", {"3"}),
    # X has three in column 0; O must cap it.
    ("blocks_the_column", "0 1 0 1 0", {"0"}),
]


@pytest.mark.parametrize("name,moves,best", BEST_MOVES, ids=[b[0] for b in BEST_MOVES])
def test_search_finds_the_only_good_move(name: str, moves: str, best: set[str]) -> None:
    env = ConnectFourEnv()
    play(env, moves)
    opponent = make_opponent(ENV_ID, "strong")
    assert opponent.name == "strong"
    for seed in range(5):
        assert opponent.act(env, np.random.default_rng(seed)) in best


#: Calls of the negamax below the root for one depth-4 move with no pruning at all: 7 + 7^2 + 7^3 + 7^4.
FULL_DEPTH_4_TREE = 2800


def test_search_beats_random_and_prunes(monkeypatch) -> None:
    # The search's work is counted in nodes, which do not depend on how loaded the machine is;
    # the time a move takes is only printed (pytest -s), a figure for the docstring's claim.
    nodes = [0]
    negamax = connect_four._negamax

    def counted(*args):
        nodes[0] += 1
        return negamax(*args)

    monkeypatch.setattr(connect_four, "_negamax", counted)  # the recursion looks it up here too
    env, strong, weak = ConnectFourEnv(), SearchConnectFourOpponent(), RandomOpponent()
    rng = np.random.default_rng(0)
    wins, seconds, per_move = 0, 0.0, []
    for game in range(50):
        env.reset(seed=game)
        seat = game % 2  # both seats, alternately
        terminated = False
        while not terminated:
            if env.current_player() == seat:
                start, before = time.perf_counter(), nodes[0]
                action = strong.act(env, rng)
                seconds += time.perf_counter() - start
                per_move.append(nodes[0] - before)
            else:
                action = weak.act(env, rng)
            _, _, terminated, _, info = env.step(action)
        wins += info["rewards"][seat] == 1.0
    mean = sum(per_move) / len(per_move)
    print(f"search: {1000 * seconds / len(per_move):.1f} ms and {mean:.0f} nodes a move "
          f"(at most {max(per_move)}) over {len(per_move)} moves")
    assert wins >= 45
    assert 0 < max(per_move) <= FULL_DEPTH_4_TREE  # depth 4, no deeper
    assert mean < FULL_DEPTH_4_TREE / 4  # alpha-beta prunes (measured: 286 nodes a move on average)


def test_search_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth=0: expected at least 1"):
        SearchConnectFourOpponent(depth=0)
