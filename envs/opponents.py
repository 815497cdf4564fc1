"""Fixed opponents: programs that pick a legal action from the game's state, not from text.

``make_opponent(env_id, name)`` builds one: ``"random"`` exists for every game; ``"strong"`` is
the per-game expert listed in ``STRONG`` (perfect search for TicTacToe, depth-limited search for
Connect Four, the equilibrium for Kuhn Poker, heuristics for the others).
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from envs.base import TurnBasedTextEnv


class Opponent(Protocol):
    """Anything with a name that picks a canonical legal action for the player to move."""

    name: str

    def act(self, env: TurnBasedTextEnv, rng: np.random.Generator) -> str: ...


class RandomOpponent:
    """Uniform over the legal actions (or the game's own random action where open-ended)."""

    name = "random"

    def act(self, env: TurnBasedTextEnv, rng: np.random.Generator) -> str:
        legal = env.legal_actions()
        if legal is None:
            return env.random_action()
        return legal[int(rng.integers(len(legal)))]


STRONG = {
    "selfplay/TicTacToe-v0": "envs.tictactoe:PerfectTicTacToeOpponent",
    "selfplay/ConnectFour-v0": "envs.connect_four:SearchConnectFourOpponent",
    "selfplay/KuhnPoker-v0": "envs.kuhn_poker:EquilibriumKuhnOpponent",
    "selfplay/LiarsDice-v0": "envs.liars_dice:HeuristicLiarsDiceOpponent",
    "selfplay/SimpleNegotiation-v0": "envs.negotiation:HeuristicNegotiationOpponent",
}


#: Every fixed opponent's name (``strong`` exists only for the games in ``STRONG``).
FIXED_OPPONENTS = ("random", "strong")


def opponent_names(env_id: str) -> list[str]:
    """The fixed opponents available for a game."""
    return ["random"] + (["strong"] if env_id in STRONG else [])


def make_opponent(env_id: str, name: str) -> Opponent:
    """Build the fixed opponent ``name`` for ``env_id``; raises ValueError naming the choices."""
    if name == "random":
        return RandomOpponent()
    if name == "strong" and env_id in STRONG:
        module, cls = STRONG[env_id].split(":")
        return getattr(importlib.import_module(module), cls)()
    raise ValueError(f"opponent {name!r} for {env_id}: expected one of {opponent_names(env_id)}")
