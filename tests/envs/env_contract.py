"""Checks of the environment contract shared by every game's tests."""

from __future__ import annotations

from typing import Callable

import numpy as np

from envs.base import TurnBasedTextEnv
from envs.opponents import RandomOpponent


def assert_steps_identically(make_env: Callable[[], TurnBasedTextEnv], seeds: range,
                             pick_action: Callable[[np.random.Generator], str], chooser_seed: int) -> None:
    """Two environments reset with the same seed and fed the same actions agree at every step."""
    chooser = np.random.default_rng(chooser_seed)
    a, b = make_env(), make_env()
    for seed in seeds:
        assert a.reset(seed=seed) == b.reset(seed=seed)
        done = False
        while not done:
            action = pick_action(chooser)
            step_a, step_b = a.step(action), b.step(action)
            assert step_a == step_b
            done = step_a[2]


def assert_random_play_ends_zero_sum(env: TurnBasedTextEnv, games: int, max_turns: int) -> None:
    """Random legal play never acts invalidly, ends within ``max_turns`` and is zero-sum."""
    rng, opponent = np.random.default_rng(0), RandomOpponent()
    for seed in range(games):
        env.reset(seed=seed)
        for _ in range(max_turns):
            _, _, terminated, truncated, info = env.step(opponent.act(env, rng))
            assert not truncated and not info["invalid"]
            if terminated:
                break
        assert terminated
        assert sum(info["rewards"].values()) == 0.0


def assert_forfeit_returns(env: TurnBasedTextEnv, info: dict, offender: int) -> None:
    """``info`` ends a game ``offender`` forfeited, scored by ``env``'s forfeit settings: its
    ``invalid_reward`` (None: ``min_return``) for the offender, ``opponent_invalid_reward`` for
    every other player."""
    worst = env.min_return if env.invalid_reward is None else env.invalid_reward
    expected = {p: env.opponent_invalid_reward for p in range(env.num_players)}
    expected[offender] = worst
    assert info["forfeit"] == offender and info["invalid"] and info["player"] == -1
    assert info["rewards"] == expected


def assert_text_action_is_safe(env: TurnBasedTextEnv, text: str) -> None:
    """Any string as an action returns a valid observation and, if it ends the game, zero-sum
    returns, or a forfeit's when it was invalid."""
    player = env.current_player()
    obs, _, terminated, _, info = env.step(text)
    assert env.observation_space.contains(obs)
    if terminated and "forfeit" in info:
        assert_forfeit_returns(env, info, player)
    elif terminated:
        assert sum(info["rewards"].values()) == 0.0
