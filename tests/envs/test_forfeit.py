"""The forfeit rule every turn-based game shares (``envs.base``): an invalid action under "lose"
gives its author ``invalid_reward`` (default: the game's worst return) and every other player
``opponent_invalid_reward`` (default 0, so a forfeit is not zero-sum), and says who forfeited in
``info["forfeit"]``."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.opponents import RandomOpponent
from env_contract import assert_forfeit_returns

#: Each game's largest return (-min_return with the default arguments).
SCALE = {"selfplay/TicTacToe-v0": 1.0, "selfplay/ConnectFour-v0": 1.0, "selfplay/KuhnPoker-v0": 2.0,
         "selfplay/LiarsDice-v0": 1.0, "selfplay/SimpleNegotiation-v0": 1.0}


def forfeit_at_first_move(env_id: str, **kwargs):
    env = gym.make(env_id, **kwargs).unwrapped
    env.reset(seed=0)
    return env, env.step("no move at all")


def test_every_game_is_covered():
    assert sorted(SCALE) == sorted(envs.GAMES)


@pytest.mark.parametrize("env_id", sorted(SCALE))
def test_by_default_the_offender_gets_the_worst_return_and_the_opponent_nothing(env_id):
    env, (_, reward, terminated, _, info) = forfeit_at_first_move(env_id)
    assert env.min_return == -SCALE[env_id]
    assert terminated and reward == env.min_return
    assert info["rewards"] == {0: env.min_return, 1: 0.0}  # not zero-sum
    assert info["forfeit"] == 0 and info["invalid_counts"] == [1, 0]
    assert_forfeit_returns(env, info, 0)


@pytest.mark.parametrize("env_id", sorted(SCALE))
def test_spiral_values_scaled_to_the_game(env_id):
    scale = SCALE[env_id]
    env, (_, reward, _, _, info) = forfeit_at_first_move(
        env_id, invalid_reward=-1.5 * scale, opponent_invalid_reward=0.5 * scale)
    assert info["rewards"] == {0: -1.5 * scale, 1: 0.5 * scale} and reward == -1.5 * scale
    assert info["forfeit"] == 0
    # The second player forfeits the same way.
    env.reset(seed=0)
    env.step(RandomOpponent().act(env, np.random.default_rng(0)))
    _, reward, _, _, info = env.step("no move at all")
    assert info["rewards"] == {0: 0.5 * scale, 1: -1.5 * scale} and reward == -1.5 * scale
    assert info["forfeit"] == 1


@pytest.mark.parametrize("env_id", sorted(SCALE))
def test_no_forfeit_key_unless_a_player_forfeited(env_id):
    env = gym.make(env_id, invalid_action="random").unwrapped
    _, info = env.reset(seed=0)
    terminated = "forfeit" in info
    for _ in range(200):
        _, _, terminated, _, info = env.step("no move at all")  # a random legal move instead
        assert "forfeit" not in info
        if terminated:
            break
    assert terminated and "rewards" in info


@pytest.mark.parametrize("field, value", [
    ("invalid_reward", "-1"), ("invalid_reward", True), ("invalid_reward", math.nan),
    ("invalid_reward", -math.inf), ("invalid_reward", [-1.0]),
    ("opponent_invalid_reward", None), ("opponent_invalid_reward", "0"),
    ("opponent_invalid_reward", False), ("opponent_invalid_reward", math.inf),
])
@pytest.mark.parametrize("env_id", sorted(SCALE))
def test_bad_values_are_refused_naming_the_field(env_id, field, value):
    with pytest.raises(ValueError, match=rf"^{field}=.*: expected a finite number") as err:
        gym.make(env_id, **{field: value})
    assert "\n" not in str(err.value)


def test_integers_are_accepted_as_floats():
    env, (_, _, _, _, info) = forfeit_at_first_move("selfplay/TicTacToe-v0", invalid_reward=-2,
                                                    opponent_invalid_reward=1)
    assert info["rewards"] == {0: -2.0, 1: 1.0} and isinstance(env.invalid_reward, float)
