"""``selfplay eval``: play games against fixed opponents and print a table per game, opponent
and seat. The evaluated player is a model (through a rollout worker, in this process) or a fixed
opponent itself (``--player random``), which needs no model and shows what the rules imply."""

from __future__ import annotations

import argparse
import asyncio
import json

import gymnasium as gym
import numpy as np

import envs
from envs.opponents import make_opponent, opponent_names
from selfplay.config import Config, ConfigError
from selfplay.episode_metrics import eval_table, format_eval_table
from selfplay.types import Episode

KUHN = "selfplay/KuhnPoker-v0"


def play_fixed(env_id: str, player: str, opponent: str, seat: int, games: int, seed: int = 0,
               env_kwargs: dict | None = None) -> list[Episode]:
    """``games`` games of fixed opponent ``player`` in ``seat`` against ``opponent``."""
    episodes = []
    env = gym.make(env_id, **(env_kwargs or {})).unwrapped
    me, them = make_opponent(env_id, player), make_opponent(env_id, opponent)
    for g in range(games):
        game_seed = seed * 100_003 + g
        rng = np.random.default_rng(game_seed + 1)
        _, info = env.reset(seed=game_seed)
        turns = 0
        while "rewards" not in info:
            actor = me if info["player"] == seat else them
            _, _, _, _, info = env.step(actor.act(env, rng))
            turns += 1
        episodes.append(Episode(env_id=env_id, episode_id=f"{player}-{g}", samples=[],
                                rewards=dict(info["rewards"]), policy_roles=[seat], opponent=opponent,
                                num_turns=turns, invalid_counts=list(info["invalid_counts"])))
    return episodes


def run_eval_command(cfg: Config, args: argparse.Namespace) -> int:
    """Parse the eval flags, play, print the table (or JSON)."""
    if args.envs == "all":
        env_ids = list(envs.GAMES)
    elif args.envs:
        env_ids = [e if "/" in e else f"selfplay/{e}" for e in args.envs.split(",")]
    else:
        env_ids = [e.id for e in cfg.envs]
    for env_id in env_ids:
        if env_id not in gym.registry:
            raise ConfigError(f"--envs: {env_id!r} is not registered (known: {', '.join(envs.GAMES)})")
    games = args.games or cfg.eval.games
    if args.player == "model":
        episodes = asyncio.run(_eval_model(cfg, args.model or cfg.model, env_ids, games))
    else:
        episodes = []
        for env_id in env_ids:
            kwargs = next((e.kwargs for e in cfg.envs if e.id == env_id), {})
            for opponent in [o for o in cfg.eval.opponents if o in opponent_names(env_id)]:
                for seat in range(envs.num_players(env_id)):
                    episodes += play_fixed(env_id, args.player, opponent, seat, games, cfg.seed, kwargs)
    rows = eval_table(episodes)
    label = args.player if args.player != "model" else (args.model or cfg.model)
    exact = {}
    if args.player == "model" and KUHN in env_ids:
        from selfplay.kuhn_scoring import score_model
        from selfplay.models import resolve_model

        exact = score_model(resolve_model(label))
    if args.json:
        print(json.dumps({"player": label, "results": rows, "kuhn_exact": exact}))
    else:
        print(f"player: {label}\n{format_eval_table(rows)}")
        if exact:
            print("Kuhn Poker, exact (the model's action probabilities at all 12 information sets): "
                  + ", ".join(f"{k.split('/')[1]} {v:+.4f}" for k, v in exact.items()))
    return 0


async def _eval_model(cfg: Config, model: str, env_ids: list[str], games: int) -> list[Episode]:
    from actors.rollout_worker import RolloutWorker
    from selfplay.models import resolve_model

    worker = RolloutWorker(cfg, resolve_model(model))
    await worker.init()
    try:
        return await worker.evaluate(env_ids, cfg.eval.opponents, games, seed=cfg.seed)
    finally:
        worker.shutdown()
