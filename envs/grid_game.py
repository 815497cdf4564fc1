"""The shared adapter for two-player grid games whose rules are a board class (TicTacToe,
Connect Four): the Gymnasium hooks are one-line delegations to the board, and the prompt is one
template filled from the game's rules line and the board's drawing."""

from __future__ import annotations

from typing import Any

from envs.base import ANSWER_FORMAT, TurnBasedTextEnv

#: The players' marks: player 0 is X and moves first.
MARKS = ("X", "O")


class GridGameEnv(TurnBasedTextEnv):
    """A thin adapter over ``board_cls``: a board with ``to_move()``, ``legal_moves()``,
    ``play(move)``, ``is_over()`` and ``winner()`` (None for a draw). Win +1, loss -1, draw 0; a
    forfeit as in ``envs.base`` (by default -1 for the offender, 0 for the opponent)."""

    board_cls: type
    min_return = -1.0
    #: The prompt's rules line, the heading above the board, and the label of the move history.
    rules: str
    board_heading = "Board:"
    history_label = "Moves so far"

    def __init__(self, invalid_action: str = "lose", lenient: bool = False,
                 render_mode: str | None = None, invalid_reward: float | None = None,
                 opponent_invalid_reward: float = 0.0, answer_prefix: str | None = None,
                 answer_choices: bool = False) -> None:
        super().__init__(invalid_action=invalid_action, lenient=lenient, render_mode=render_mode,
                         invalid_reward=invalid_reward, opponent_invalid_reward=opponent_invalid_reward,
                         answer_prefix=answer_prefix, answer_choices=answer_choices)
        self.board = self.board_cls()

    def _new_game(self, options: dict[str, Any]) -> None:
        self.board = self.board_cls()

    def current_player(self) -> int:
        return self.board.to_move()

    def legal_actions(self) -> list[str]:
        return [str(c) for c in self.board.legal_moves()]

    def _apply(self, action: str) -> None:
        self.board.play(int(action))

    def _is_over(self) -> bool:
        return self.board.is_over()

    def _returns(self) -> dict[int, float]:
        winner = self.board.winner()
        if winner is None:
            return {0: 0.0, 1: 0.0}
        return {winner: 1.0, 1 - winner: -1.0}

    def observation(self, player: int) -> str:
        mark, other = MARKS[player], MARKS[1 - player]
        history = ", ".join(f"{MARKS[i % 2]} {move}" for i, move in enumerate(self.board.moves))
        return "\n".join([
            f"You are playing {self.title} as {mark} (player {player}) against {other} "
            f"(player {1 - player}). X moves first.",
            self.rules,
            "",
            self.board_heading,
            self.board.ascii(),
            "",
            f"{self.history_label}: {history or 'none'}.",
            f"You are {mark}; it is your move.",
            f"Legal actions: {', '.join(self.legal_actions())}",
            ANSWER_FORMAT,
        ])
