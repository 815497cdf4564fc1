"""The TextArena adapter: the selfplay contract over TextArena's TicTacToe (textarena is a dev dependency)."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers selfplay/TextArena-v0)
from env_contract import assert_forfeit_returns, assert_text_action_is_safe
from envs.textarena_adapter import INSTALL_HINT, TextArenaEnv, fit_text

ENV_ID = "selfplay/TextArena-v0"
HAVE_TEXTARENA = importlib.util.find_spec("textarena") is not None


def make() -> TextArenaEnv:
    return gym.make(ENV_ID).unwrapped


def random_bracketed_cell(rng: np.random.Generator) -> str:
    """A TextArena-style move "[k]" for a random cell: legal or not, TextArena decides."""
    return f"I pick [{int(rng.integers(9))}]"


def test_missing_textarena_says_how_to_install(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "textarena", None)  # what a missing package looks like
    with pytest.raises(ImportError, match=r"pip install textarena==\d"):
        gym.make(ENV_ID)


def test_fit_text_escapes_non_ascii_and_keeps_head_and_tail() -> None:
    assert fit_text("K\u2660 \x00") == "K\\u2660 \\x00"
    long = "RULES" + "x" * 500 + "BOARD"
    fitted = fit_text(long, max_chars=200)
    assert len(fitted) == 200 and fitted.startswith("RULES") and fitted.endswith("BOARD")
    assert "elided" in fitted


def test_check_env_passes() -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(make())


@pytest.mark.parametrize("seed", range(5))
def test_random_game_reaches_zero_sum_end(seed: int) -> None:
    env = make()
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    assert info["player"] == 0 and "Tic Tac Toe" in obs and env.observation_space.contains(obs)
    for _ in range(100):
        mover = info["player"]
        obs, reward, terminated, truncated, info = env.step(random_bracketed_cell(rng))
        assert env.observation_space.contains(obs) and not truncated
        if terminated:
            break
    assert terminated and info["player"] == -1
    assert set(info["rewards"]) == {0, 1} and reward == info["rewards"][mover]
    if "forfeit" in info:  # lost by invalid moves: -1 for the offender, 0 for the other
        assert_forfeit_returns(env, info, mover)
    else:
        assert sum(info["rewards"].values()) == 0


def test_second_invalid_move_in_a_row_loses() -> None:
    env = make()
    env.reset(seed=0)
    _, _, done, _, info = env.step("no move")  # TextArena grants one retry ...
    assert not done and info["invalid"] and info["player"] == 0
    _, reward, done, _, info = env.step("still none")  # ... and the second one forfeits:
    assert done and reward == -1.0 and info["rewards"] == {0: -1.0, 1: 0.0}  # not TextArena's +1
    assert info["invalid_counts"] == [2, 0] and info["forfeit"] == 0
    assert TextArenaEnv.min_return == -1.0


def test_forfeit_rewards_are_kwargs_as_in_the_games() -> None:
    env = gym.make(ENV_ID, invalid_reward=-1.5, opponent_invalid_reward=0.5).unwrapped
    env.reset(seed=0)
    env.step("[4]")
    env.step("no move")
    obs, reward, done, _, info = env.step("still none")  # player 1's second invalid move in a row
    assert done and reward == -1.5 and info["rewards"] == {0: 0.5, 1: -1.5} and info["forfeit"] == 1
    assert "player 0: +0.5, player 1: -1.5" in obs
    with pytest.raises(ValueError, match=r"^invalid_reward='x': expected a finite number or None$"):
        gym.make(ENV_ID, invalid_reward="x")
    with pytest.raises(ValueError, match=r"^opponent_invalid_reward=None: expected a finite number$"):
        gym.make(ENV_ID, opponent_invalid_reward=None)


def test_a_game_won_outright_has_no_forfeit() -> None:
    env = make()
    env.reset(seed=0)
    for move in ["[0]", "[3]", "[1]", "[4]", "[2]"]:  # X takes the top row
        _, reward, done, _, info = env.step(move)
    assert done and info["rewards"] == {0: 1.0, 1: -1.0} and "forfeit" not in info


def test_same_seed_same_observations() -> None:
    a, b = make(), make()
    assert a.reset(seed=3)[0] == b.reset(seed=3)[0]
    assert a.step("[4]")[0] == b.step("[4]")[0]


#: Long runs of digits where TextArena looks for a number: its TicTacToe calls int() on the digits
#: in "[...]", and Python refuses to convert more than 4,300 of them.
digit_runs = st.builds(lambda digit, n, template: template.format(digit * n),
                       st.sampled_from("0123456789"), st.integers(4_000, 100_000),
                       st.sampled_from(["{}", "[{}]", "[ {} ]", "\\boxed{{{}}}", "I pick [{}].", "[-{}]",
                                        "[4] [{}]"]))
#: Long text: arbitrary, and arbitrary pieces repeated to tens of thousands of characters.
long_text = st.one_of(st.text(max_size=5_000),
                      st.builds(lambda piece, n: piece * n, st.text(min_size=1, max_size=12),
                                st.integers(100, 10_000)))
any_action = st.one_of(st.text(max_size=200), st.none(), digit_runs, long_text)


@settings(max_examples=60, deadline=None)
@given(actions=st.lists(any_action, min_size=1, max_size=12))
def test_arbitrary_strings_never_raise(actions: list[str | None]) -> None:
    env = make()
    env.reset(seed=0)
    for action in actions:
        obs, _, terminated, _, info = env.step(action)
        assert env.observation_space.contains(obs)
        if terminated:
            assert sum(info["rewards"].values()) == (-1 if "forfeit" in info else 0)
            break


@settings(max_examples=40, deadline=None)
@given(text=st.one_of(digit_runs, long_text))
def test_long_and_numeric_text_is_safe(text: str) -> None:
    env = make()
    env.reset(seed=0)
    env.step("[4]")
    assert_text_action_is_safe(env, text)


@pytest.mark.parametrize("digits", [5_000, 100_000])
def test_a_number_python_cannot_convert_is_an_invalid_move_not_a_crash(digits: int) -> None:
    env = make()
    env.reset(seed=0)
    obs, reward, done, _, info = env.step("[" + "7" * digits + "]")
    # TextArena's rule for an invalid move: one retry, with the reason shown ...
    assert not done and reward == 0.0 and info["invalid"] and info["invalid_counts"] == [1, 0]
    assert info["player"] == 0 and "could not process this move (ValueError" in obs
    _, reward, done, _, info = env.step("1" * digits)  # ... and the second one forfeits
    assert done and reward == -1.0 and info["rewards"] == {0: -1.0, 1: 0.0} and info["forfeit"] == 0
    assert info["invalid"] and info["invalid_counts"] == [2, 0] and info["player"] == -1


def test_a_game_that_cannot_even_reject_the_move_is_forfeited_by_its_author() -> None:
    class Broken:  # raises on every move, and has no state to record an invalid move in
        def step(self, action: str):
            raise RuntimeError("boom")

    env = make()
    env.reset(seed=0)
    env.step("[4]")  # player 1 moves next
    env._ta_env = Broken()
    obs, reward, done, _, info = env.step("[0]")
    assert done and reward == -1.0 and info["rewards"] == {0: 0.0, 1: -1.0} and info["forfeit"] == 1
    assert info["invalid"] and info["invalid_counts"] == [0, 1] and info["player"] == -1
    assert env.observation_space.contains(obs) and "player 1 forfeits" in obs and "RuntimeError: boom" in obs
