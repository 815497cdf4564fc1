"""`selfplay play`: a person plays in the terminal (input scripted here)."""

from __future__ import annotations

import pytest

from selfplay.play import play_terminal, resolve_game


@pytest.mark.parametrize("name", ["TicTacToe", "tictactoe", "TicTacToe-v0", "selfplay/TicTacToe-v0"])
def test_game_names_resolve_to_the_registered_id(name):
    assert resolve_game(name) == "selfplay/TicTacToe-v0"


def test_unknown_game_lists_the_choices():
    with pytest.raises(SystemExit, match="unknown game 'chess'; choose one of: TicTacToe"):
        resolve_game("chess")


def test_a_person_never_beats_the_perfect_tictactoe_player():
    # The person plays corners and garbage; the perfect player must win or draw, and the
    # transcript must show the board and the result.
    moves = iter(["\\boxed{0}", "[8]", "2", "6", "not a move", "1", "3", "4", "5", "7"])
    shown: list[str] = []
    assert play_terminal("TicTacToe", opponent="strong", seat=0, seed=1,
                         read=lambda prompt: next(moves), write=shown.append) == 0
    text = "\n".join(shown)
    assert "Legal actions:" in text and "opponent plays:" in text
    assert shown[-1].endswith(("You lose.", "Draw."))


def test_quit_stops_the_game():
    shown: list[str] = []
    assert play_terminal("KuhnPoker", opponent="random", seat=0, seed=0,
                         read=lambda prompt: "quit", write=shown.append) == 0
    assert not any(s.endswith(("You win!", "You lose.", "Draw.")) for s in shown)
