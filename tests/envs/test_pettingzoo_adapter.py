"""The PettingZoo AEC adapter: PettingZoo's own API and seed tests, and hand-played games."""

from __future__ import annotations

import pytest
from pettingzoo.test import api_test, seed_test

import envs
from envs.pettingzoo_adapter import TextAECEnv, TextObservation, to_aec
from envs.tictactoe import TicTacToeEnv

# Enough agent turns for the longest game here (Connect Four: 42 moves) plus the dead steps.
CYCLES = 200


def play_aec(env: TextAECEnv, moves: list[str]) -> list[tuple[str, float, bool]]:
    """Play ``moves`` in turn order through ``agent_iter``; step dead agents with None.

    Returns (agent, reward from last(), terminated) for every iteration.
    """
    seen = []
    pending = list(moves)
    for agent in env.agent_iter():
        _, reward, terminated, truncated, _ = env.last()
        seen.append((agent, reward, terminated))
        env.step(None if terminated or truncated else pending.pop(0))
    assert not pending, "the game ended before all moves were played"
    return seen


# api_test recommends NumPy observations and Box/Discrete spaces; text is the point here.
@pytest.mark.filterwarnings("ignore:Observation is not a NumPy array",
                            "ignore:.*space for each agent probably should be")
@pytest.mark.parametrize("invalid_action", ["lose", "random"])
@pytest.mark.parametrize("env_id", sorted(envs.GAMES))
def test_pettingzoo_api_test_passes(env_id: str, invalid_action: str) -> None:
    # Random Text samples are nearly always invalid: "lose" ends at once, "random" plays on.
    api_test(to_aec(env_id, invalid_action=invalid_action), num_cycles=CYCLES)


@pytest.mark.parametrize("env_id", sorted(envs.GAMES))
def test_pettingzoo_seed_test_passes(env_id: str) -> None:
    # Under "random" the moves come from the env's np_random, so the check covers whole games.
    seed_test(lambda: to_aec(env_id, invalid_action="random"), num_cycles=CYCLES)


@pytest.mark.parametrize("env_id", sorted(envs.GAMES))
def test_same_seed_replays_the_same_game(env_id: str) -> None:
    def transcript(seed: int) -> list[tuple[str, str, float]]:
        env = to_aec(env_id, invalid_action="random")
        env.reset(seed=seed)
        for i, agent in enumerate(env.possible_agents):
            env.action_space(agent).seed(seed + i)
        out = []
        for agent in env.agent_iter(CYCLES):
            obs, reward, terminated, truncated, _ = env.last()
            out.append((agent, str(obs), reward))
            env.step(None if terminated or truncated else env.action_space(agent).sample())
        return out

    assert transcript(7) == transcript(7)


def test_tictactoe_x_wins_top_row_through_aec() -> None:
    env = to_aec("selfplay/TicTacToe-v0")
    env.reset(seed=0)
    # X (player_0): 0 1 2 completes the top row on the fifth move; O (player_1) plays 3 4.
    seen = play_aec(env, ["0", "3", "1", "4", "2"])
    movers = [a for a, _, done in seen if not done]
    assert movers == ["player_0", "player_1", "player_0", "player_1", "player_0"]
    # After X's winning move O sees the outcome first (-1), then X (+1); both then leave.
    assert [(a, r) for a, r, done in seen if done] == [("player_1", -1.0), ("player_0", 1.0)]
    assert env.agents == []


def test_tictactoe_draw_gives_zero_to_both() -> None:
    env = to_aec("selfplay/TicTacToe-v0")
    env.reset()
    # X: 0 1 5 6 8, O: 2 3 4 7; no row, column or diagonal is one mark:
    #  X | X | O
    #  O | O | X
    #  X | O | X
    seen = play_aec(env, ["0", "2", "1", "3", "5", "4", "6", "7", "8"])
    assert [(a, r) for a, r, done in seen if done] == [("player_1", 0.0), ("player_0", 0.0)]


def test_invalid_action_loses_under_lose_rule() -> None:
    env = to_aec("selfplay/TicTacToe-v0")
    env.reset()
    env.step("4")
    env.step("no idea")  # O's move names no cell: O forfeits (-1), X gets 0 by default.
    assert env.terminations == {"player_0": True, "player_1": True}
    assert env.rewards == {"player_0": 0.0, "player_1": -1.0}
    assert env.infos["player_0"]["invalid"] is True
    assert env.infos["player_0"]["rewards"] == {0: 0.0, 1: -1.0}
    assert env.infos["player_0"]["forfeit"] == env.infos["player_1"]["forfeit"] == 1


def test_forfeit_rewards_pass_through_as_kwargs() -> None:
    env = to_aec("selfplay/TicTacToe-v0", invalid_reward=-1.5, opponent_invalid_reward=0.5)
    env.reset()
    env.step("no idea")  # X forfeits
    assert env.rewards == {"player_0": -1.5, "player_1": 0.5}
    assert env.infos["player_1"]["forfeit"] == 0


def test_none_from_live_agent_is_invalid_not_an_error() -> None:
    env = to_aec("selfplay/TicTacToe-v0")
    env.reset()
    env.step(None)
    assert env.rewards == {"player_0": -1.0, "player_1": 0.0}


def test_dead_agent_must_step_with_none() -> None:
    env = to_aec("selfplay/TicTacToe-v0")
    env.reset()
    env.step("junk")
    with pytest.raises(ValueError, match="when an agent is dead, the only valid action is None"):
        env.step("4")


def test_observe_is_each_players_own_prompt_until_the_end() -> None:
    env = to_aec("selfplay/TicTacToe-v0")
    env.reset()
    env.step("4")
    base = env.env
    obs_x, obs_o = env.observe("player_0"), env.observe("player_1")
    assert isinstance(obs_o, TextObservation) and isinstance(obs_o, str)
    assert obs_x == base.observation(0) and obs_o == base.observation(1)
    assert "as X (player 0)" in obs_x and "as O (player 1)" in obs_o
    assert env.observation_space("player_1").contains(obs_o)
    env.step("junk")
    assert env.observe("player_0") == env.observe("player_1") == base.final_observation()


def test_legal_actions_only_in_the_acting_agents_info() -> None:
    env = to_aec("selfplay/TicTacToe-v0")
    env.reset()
    env.step("4")
    assert env.agent_selection == "player_1"
    assert env.infos["player_1"]["legal_actions"] == ["0", "1", "2", "3", "5", "6", "7", "8"]
    assert "legal_actions" not in env.infos["player_0"]
    assert env.infos["player_0"]["player"] == 1


def test_spaces_are_per_agent_copies_of_the_base_spaces() -> None:
    env = to_aec("selfplay/KuhnPoker-v0")
    a, b = env.action_space("player_0"), env.action_space("player_1")
    assert a is env.action_space("player_0") and a is not b
    assert a == env.env.action_space and env.observation_space("player_0") == env.env.observation_space


def test_to_aec_takes_a_built_env_or_an_id_with_kwargs() -> None:
    built = to_aec(TicTacToeEnv(render_mode="ansi"))
    built.reset()
    assert built.possible_agents == ["player_0", "player_1"]
    assert "Board:" in built.render()
    from_id = to_aec("selfplay/TicTacToe-v0", render_mode="ansi")
    assert from_id.metadata["name"] == "selfplay/TicTacToe-v0"
    assert to_aec("selfplay/TicTacToe-v0").env.invalid_action == "lose"
    with pytest.raises(TypeError, match=r"kwargs \['invalid_action'\] apply only when building from an id"):
        to_aec(TicTacToeEnv(), invalid_action="random")
