"""``selfplay play <game>``: a person plays in the terminal against a fixed opponent or a model.

The same episode loop as training and evaluation (:func:`actors.episodes.play_episode`); the
person is one more :class:`actors.episodes.Player`. Unlike a model, a person who mistypes a move
is asked again (with the legal moves) instead of forfeiting.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Callable

import gymnasium as gym

import envs
from actors.episodes import EnginePlayer, EpisodeLimits, EpisodeSpec, FixedPlayer, Player, Turn, play_episode
from envs.base import TurnRequest

#: No turn, prompt or time limit binds a person's game.
HUMAN_LIMITS = EpisodeLimits(max_turns=10_000, max_prompt_tokens=10**9, timeout_s=10**9)


class Quit(Exception):
    """The person typed quit."""


def resolve_game(name: str) -> str:
    """``TicTacToe``, ``tictactoe`` or ``selfplay/TicTacToe-v0`` -> the registered id."""
    for env_id in envs.GAMES:
        short = env_id.split("/")[-1]
        if name in (env_id, short) or name.lower() == short.split("-v")[0].lower():
            return env_id
    raise SystemExit(f"unknown game {name!r}; choose one of: "
                     + ", ".join(e.split("/")[-1].split("-v")[0] for e in envs.GAMES))


class HumanPlayer:
    """Reads moves from a person; an illegal one is refused with the legal moves, and asked again."""

    def __init__(self, read: Callable[[str], str], write: Callable[[str], None]) -> None:
        self.read, self.write = read, write

    async def act(self, env: Any, request: TurnRequest) -> Turn:
        self.write("\n" + request.observation)
        while True:
            try:
                text = self.read("your action> ")
            except EOFError:  # input closed (Ctrl-D, or nothing piped in): leave like "quit"
                raise Quit from None
            if text.strip().lower() in ("quit", "exit"):
                raise Quit
            if env.parse_action(text) is not None:
                return Turn(text)
            legal = env.legal_actions()
            self.write(f"{text.strip()!r} is not a legal move here; "
                       + (f"legal: {', '.join(legal)}" if legal else "answer as the prompt asks"))


class Announced:
    """Another player whose moves are shown to the person."""

    def __init__(self, player: Player, write: Callable[[str], None]) -> None:
        self.player, self.write = player, write

    async def act(self, env: Any, request: TurnRequest) -> Turn:
        turn = await self.player.act(env, request)
        self.write(f"\nopponent plays: {turn.text.strip()}")
        return turn


async def _model_player(model: str) -> tuple[Player, Callable[[], None]]:
    """The model (greedy, on vLLM) as a player, and how to stop its engine."""
    from actors.engine import SamplingSettings, make_engine
    from selfplay.model_cache import resolve_model

    engine = await make_engine("vllm", resolve_model(model))
    return EnginePlayer(engine, engine.tokenizer, SamplingSettings(max_new_tokens=96, temperature=0.0),
                        HUMAN_LIMITS.max_prompt_tokens), engine.shutdown


def play_terminal(game: str, opponent: str = "strong", model: str = "smollm2-135m-instruct",
                  role: int = 0, seed: int | None = None,
                  read: Callable[[str], str] = input, write: Callable[[str], None] = print) -> float | None:
    """Play one game; the person types actions (bare, bracketed or boxed). Returns the person's
    return, or None if they quit."""
    env_id = resolve_game(game)
    num = envs.num_players(env_id)
    if not 0 <= role < num:
        raise SystemExit(f"--role {role}: {env_id} has roles 0..{num - 1} (0 moves first)")
    return asyncio.run(_play(env_id, opponent, model, role, seed, read, write))


async def _play(env_id: str, opponent: str, model: str, role: int, seed: int | None,
                read: Callable[[str], str], write: Callable[[str], None]) -> float | None:
    stop: Callable[[], None] = lambda: None  # noqa: E731
    if opponent == "model":
        other, stop = await _model_player(model)
    else:
        other = FixedPlayer(env_id, opponent, (seed or 0) + 1)
    env = gym.make(env_id).unwrapped
    players: dict[int, Player] = {r: Announced(other, write) for r in range(env.num_players)}
    players[role] = HumanPlayer(read, write)
    write(f"{env_id}: you are player {role}; your opponent is {opponent}. Type 'quit' to stop.")
    spec = EpisodeSpec(env_id=env_id, seed=seed if seed is not None else random.randrange(2**31),
                       episode_id="play",
                       policy_roles=[role], opponent=opponent)
    try:
        episode = await play_episode(env, players, HUMAN_LIMITS, spec)
    except Quit:
        return None
    finally:
        stop()
    result = episode.result(role)  # an opponent's forfeit is a win, whatever it pays
    write("\n" + env.final_observation() + "\n"
          + ("You win!" if result > 0 else "You lose." if result < 0 else "Draw."))
    return episode.rewards[role]
