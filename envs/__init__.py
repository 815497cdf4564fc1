"""Gymnasium environments for selfplay. Importing this package registers their ids.

Pure Python: importing ``envs`` pulls in neither torch, vLLM nor Ray.
"""

from functools import lru_cache

import gymnasium as gym
from gymnasium.envs.registration import register, registry

GAMES = {
    "selfplay/TicTacToe-v0": "envs.tictactoe:TicTacToeEnv",
    "selfplay/ConnectFour-v0": "envs.connect_four:ConnectFourEnv",
    "selfplay/KuhnPoker-v0": "envs.kuhn_poker:KuhnPokerEnv",
    "selfplay/LiarsDice-v0": "envs.liars_dice:LiarsDiceEnv",
    "selfplay/SimpleNegotiation-v0": "envs.negotiation:SimpleNegotiationEnv",
}

#: LeaP's id, for the application's LeaP-specific checks and its evaluation table.
LEAP_ID = "selfplay/LeaP-v0"
#: One question of a benchmark file, one answer (``selfplay eval --bench``, ``eval.bench``).
QA_ID = "selfplay/QA-v0"

# Single-agent tasks (one player, no opponent): not GAMES, which `selfplay play`, evaluation
# against fixed opponents and the two-player tests iterate. ``num_players`` reads 1 for them.
TASKS = {
    "selfplay/SAT-v0": "envs.sat_env:SatEnv",
    # N reasoning paths of the one policy on one problem (each path a player, no opponent).
    LEAP_ID: "envs.leap_env:LeaPEnv",
    QA_ID: "envs.qa_env:QAEnv",
}

for _env_id, _entry in {**GAMES, **TASKS}.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry)

# TextArena's games (not one of GAMES): the adapter imports textarena only when an env is built.
if "selfplay/TextArena-v0" not in registry:
    register(id="selfplay/TextArena-v0", entry_point="envs.textarena_adapter:TextArenaEnv",
             kwargs={"game": "TicTacToe-v0"})



@lru_cache(maxsize=None)
def num_players(env_id: str) -> int:
    """Seats of a registered environment."""
    env = gym.make(env_id).unwrapped
    n = int(getattr(env, "num_players", 2))
    env.close()
    return n


__all__ = ["GAMES", "TASKS", "LEAP_ID", "QA_ID", "num_players"]
