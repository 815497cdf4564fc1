"""The Gymnasium registry: every selfplay game passes check_env, and importing envs stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envs

HEAVY = ("torch", "vllm", "ray", "textarena")
GAME_IDS = sorted(i for i in gym.registry if i.startswith("selfplay/") and i in envs.GAMES)


def imported_heavy_modules(statement: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has loaded after running ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_game_is_registered() -> None:
    assert GAME_IDS == sorted(envs.GAMES)


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_registered_game_passes_check_env(env_id: str) -> None:
    check_env(gym.make(env_id).unwrapped)


def test_textarena_id_is_registered_with_tictactoe() -> None:
    spec = gym.spec("selfplay/TextArena-v0")
    assert spec.entry_point == "envs.textarena_adapter:TextArenaEnv"
    assert spec.kwargs == {"game": "TicTacToe-v0"}


def test_importing_envs_loads_no_heavy_library() -> None:
    assert imported_heavy_modules("import envs") == []


def test_importing_the_adapters_loads_no_heavy_library() -> None:
    # The TextArena adapter imports textarena only when an env is built.
    assert imported_heavy_modules("import envs.pettingzoo_adapter, envs.textarena_adapter") == []
