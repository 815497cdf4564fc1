"""``selfplay play <game>``: a person plays in the terminal against a fixed opponent or a model."""

from __future__ import annotations

import asyncio
from typing import Callable

import gymnasium as gym
import numpy as np

import envs
from envs.opponents import make_opponent


def resolve_game(name: str) -> str:
    """``TicTacToe``, ``tictactoe`` or ``selfplay/TicTacToe-v0`` -> the registered id."""
    for env_id in envs.GAMES:
        short = env_id.split("/")[-1]
        if name in (env_id, short) or name.lower() == short.split("-v")[0].lower():
            return env_id
    raise SystemExit(f"unknown game {name!r}; choose one of: "
                     + ", ".join(e.split("/")[-1].split("-v")[0] for e in envs.GAMES))


def _model_player(model: str) -> Callable[[str], str]:
    """A function from observation to the model's reply (greedy), using the built-in engine."""
    from actors.engine import SamplingSettings
    from actors.engines import make_engine
    from actors.prompting import prompt_ids
    from selfplay.models import resolve_model

    loop = asyncio.new_event_loop()
    engine = loop.run_until_complete(make_engine("vllm", resolve_model(model), dtype="auto"))
    sampling = SamplingSettings(max_new_tokens=96, temperature=0.0)

    def reply(obs: str) -> str:
        gen = loop.run_until_complete(engine.generate(prompt_ids(engine.tokenizer, obs), sampling))
        return gen.text

    return reply


def play_terminal(game: str, opponent: str = "strong", model: str = "smollm2-135m-instruct",
                  seat: int = 0, seed: int | None = None,
                  read: Callable[[str], str] = input, write: Callable[[str], None] = print) -> int:
    """Play one game; the person types actions (bare, bracketed or boxed). Returns 0."""
    env_id = resolve_game(game)
    env = gym.make(env_id).unwrapped
    if opponent == "model":
        model_reply = _model_player(model)
        act = lambda: model_reply(env.observation(env.current_player()))  # noqa: E731
    else:
        fixed, rng = make_opponent(env_id, opponent), np.random.default_rng(seed)
        act = lambda: fixed.act(env, rng)  # noqa: E731
    obs, info = env.reset(seed=seed)
    write(f"{env_id}: you are player {seat}; your opponent is {opponent}. Type 'quit' to stop.")
    while "rewards" not in info:
        if info["player"] == seat:
            write("\n" + obs)
            text = read("your action> ")
            if text.strip().lower() in ("quit", "exit"):
                return 0
        else:
            text = act()
            write(f"\nopponent plays: {text.strip()}")
        obs, _, _, _, info = env.step(text)
        if info["invalid"]:
            write("(that action was invalid)")
    mine = info["rewards"][seat]
    write("\n" + obs + "\n" + ("You win!" if mine > 0 else "You lose." if mine < 0 else "Draw."))
    return 0
