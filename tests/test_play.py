"""`selfplay play`: a person plays in the terminal (input scripted here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from selfplay.commands.play import play_terminal, resolve_game


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
    result = play_terminal("TicTacToe", opponent="strong", role=0, seed=1,
                           read=lambda prompt: next(moves), write=shown.append)
    assert result is not None and result <= 0
    text = "\n".join(shown)
    assert "Legal actions:" in text and "opponent plays:" in text
    assert shown[-1].endswith("You lose." if result < 0 else "Draw.")


def test_a_mistyped_move_is_asked_again_with_the_legal_moves_not_forfeited():
    # Kuhn Poker, role 0 acts first: "raise" is no Kuhn action, so the person is asked again
    # and the game goes on; then the person checks and keeps checking or calling to the end.
    moves = iter(["raise", "check", "call", "check"])
    shown: list[str] = []
    result = play_terminal("KuhnPoker", opponent="random", role=0, seed=3,
                           read=lambda prompt: next(moves), write=shown.append)
    refusal = next(s for s in shown if "'raise' is not a legal move here" in s)
    assert "legal: check, bet" in refusal
    assert result is not None and result != 0  # a Kuhn hand always has a winner
    assert "invalid" not in shown[-1].lower()


def test_quit_stops_the_game_and_returns_no_result():
    shown: list[str] = []
    assert play_terminal("KuhnPoker", opponent="random", role=0, seed=0,
                         read=lambda prompt: "quit", write=shown.append) is None
    assert not any(s.endswith(("You win!", "You lose.", "Draw.")) for s in shown)


def test_a_role_the_game_does_not_have_is_refused_before_play():
    with pytest.raises(SystemExit, match=r"--role 5: selfplay/TicTacToe-v0 has roles 0..1"):
        play_terminal("TicTacToe", role=5, read=lambda prompt: "quit", write=lambda s: None)


def test_closed_input_ends_the_game_like_quit():
    def closed(prompt):
        raise EOFError

    assert play_terminal("TicTacToe", role=0, seed=0, read=closed, write=lambda s: None) is None
    proc = subprocess.run([sys.executable, "-m", "selfplay", "play", "TicTacToe"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
