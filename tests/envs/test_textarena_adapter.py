"""The TextArena adapter: the selfplay contract over TextArena's TicTacToe (textarena is a dev dependency)."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers selfplay/TextArena-v0)
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
    assert set(info["rewards"]) == {0, 1} and sum(info["rewards"].values()) == 0
    assert reward == info["rewards"][mover]


def test_second_invalid_move_in_a_row_loses() -> None:
    env = make()
    env.reset(seed=0)
    _, _, done, _, info = env.step("no move")  # TextArena grants one retry ...
    assert not done and info["invalid"] and info["player"] == 0
    _, reward, done, _, info = env.step("still none")  # ... and the second one loses.
    assert done and reward == -1.0 and info["rewards"] == {0: -1.0, 1: 1.0}
    assert info["invalid_counts"] == [2, 0]


def test_same_seed_same_observations() -> None:
    a, b = make(), make()
    assert a.reset(seed=3)[0] == b.reset(seed=3)[0]
    assert a.step("[4]")[0] == b.step("[4]")[0]


@settings(max_examples=60, deadline=None)
@given(actions=st.lists(st.one_of(st.text(max_size=200), st.none()), min_size=1, max_size=12))
def test_arbitrary_strings_never_raise(actions: list[str | None]) -> None:
    env = make()
    env.reset(seed=0)
    for action in actions:
        obs, _, terminated, _, _ = env.step(action)
        assert env.observation_space.contains(obs)
        if terminated:
            break
