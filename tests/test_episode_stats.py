"""Win counting: a game forfeited by an invalid action is a loss for its author and a win for the
other side whatever the returns (the default forfeit pays the other side 0), in the episode
loop's Episode, the per-role rates, the progress line and the opponent pool's ratings."""

from __future__ import annotations

import asyncio

import pytest

from actors.episodes import EpisodeLimits, EpisodeSpec, Turn, play_episode
from envs.tictactoe import TicTacToeEnv
from selfplay.core.samples import Episode
from selfplay.league.opponent_pool import OpponentPool
from selfplay.stats.episode_stats import eval_table, role_stats
from selfplay.stats.progress import progress_line

ENV = "selfplay/TicTacToe-v0"


class Scripted:
    """A player answering its turns from a list."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)

    async def act(self, env, request) -> Turn:
        return Turn(self.texts.pop(0))


def played(moves: dict[int, list[str]], **env_kwargs) -> Episode:
    spec = EpisodeSpec(env_id=ENV, seed=0, episode_id="e", policy_roles=[0, 1], opponent="self")
    env = TicTacToeEnv(**env_kwargs)
    players = {role: Scripted(texts) for role, texts in moves.items()}
    return asyncio.run(play_episode(env, players, EpisodeLimits(), spec))


def forfeited(offender: int, opponent: str = "self", roles=(0, 1)) -> Episode:
    """A game ``offender`` forfeited, scored with the default returns (worst, 0)."""
    rewards = {offender: -1.0, 1 - offender: 0.0}
    return Episode(ENV, "e", [], rewards, list(roles), opponent=opponent, outcome="invalid",
                   num_turns=1, invalid_counts=[int(offender == 0), int(offender == 1)], forfeit=offender)


def test_the_episode_loop_records_who_forfeited():
    ep = played({0: ["4"], 1: ["no idea"]})
    assert ep.outcome == "invalid" and ep.forfeit == 1
    assert ep.rewards == {0: 0.0, 1: -1.0}
    assert (ep.result(0), ep.result(1)) == (1, -1)
    # A game played to its end has no forfeit: the sign of the return decides.
    ep = played({0: ["0", "1", "2"], 1: ["3", "4"]})
    assert ep.outcome == "finished" and ep.forfeit is None and (ep.result(0), ep.result(1)) == (1, -1)


def test_a_forfeit_is_a_win_for_the_other_side_even_at_zero_return():
    stats = role_stats([forfeited(1), forfeited(1), forfeited(0)])
    p0, p1 = stats[(ENV, "self", 0)], stats[(ENV, "self", 1)]
    assert (p0["win_rate"], p0["draw_rate"], p0["loss_rate"]) == pytest.approx((2 / 3, 0.0, 1 / 3))
    assert (p1["win_rate"], p1["draw_rate"], p1["loss_rate"]) == pytest.approx((1 / 3, 0.0, 2 / 3))
    assert p0["return"] == pytest.approx(-1 / 3)  # returns stay what the game paid
    row = eval_table([forfeited(1)])[0]
    assert (row["win"], row["draw"], row["loss"]) == (1.0, 0.0, 0.0)


def test_the_progress_line_counts_forfeits_as_wins():
    line = progress_line(1, 2, role_stats([forfeited(1, opponent="random", roles=[0])]), {}, 0.0)
    assert "win 1.00" in line


def test_without_a_forfeit_the_sign_of_the_return_decides():
    draw = Episode(ENV, "e", [], {0: 0.0, 1: 0.0}, [0, 1])
    won = Episode(ENV, "e", [], {0: 1.0, 1: -1.0}, [0, 1])
    stats = role_stats([draw, won])
    assert stats[(ENV, "self", 0)]["win_rate"] == 0.5 and stats[(ENV, "self", 0)]["draw_rate"] == 0.5
    assert stats[(ENV, "self", 1)]["loss_rate"] == 0.5


def test_the_pool_rates_an_opponents_forfeit_as_a_win():
    pool, ref = OpponentPool(), OpponentPool()
    assert pool.record_episodes([forfeited(1, opponent="random", roles=[0]),   # policy won (0 paid)
                                 forfeited(0, opponent="random", roles=[0])]) == 2  # policy lost
    ref.record("policy", "random", 1.0)
    ref.record("policy", "random", -1.0)
    assert pool.metrics() == pytest.approx(ref.metrics())
    draw = OpponentPool()
    draw.record("policy", "random", 0.0)
    draw.record("policy", "random", -1.0)
    assert pool.metrics() != pytest.approx(draw.metrics())  # not scored as a draw
