"""TicTacToe: the rules (:class:`TicTacToeBoard`), the text environment and a perfect opponent.

The rules are a small pure class; :class:`TicTacToeEnv` is a thin adapter that turns them into
prompts and canonical action strings; :class:`PerfectTicTacToeOpponent` solves the game by
memoised negamax over the ~5,500 reachable positions.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from envs.grid_game import MARKS, GridGameEnv

# Every line of three: rows, columns, then the two diagonals.
LINES = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),
    (0, 3, 6), (1, 4, 7), (2, 5, 8),
    (0, 4, 8), (2, 4, 6),
)


def line_winner(cells: Sequence[int | None]) -> int | None:
    """The player (0 or 1) holding a full line in ``cells``, or None."""
    for a, b, c in LINES:
        if cells[a] is not None and cells[a] == cells[b] == cells[c]:
            return cells[a]
    return None


class TicTacToeBoard:
    """The rules of TicTacToe on cells 0-8 numbered row by row; player 0 (X) moves first."""

    def __init__(self) -> None:
        self.cells: list[int | None] = [None] * 9
        self.moves: list[int] = []

    def to_move(self) -> int:
        """The player whose turn it is (players alternate, 0 first)."""
        return len(self.moves) % 2

    def winner(self) -> int | None:
        """The player who completed a line, or None."""
        return line_winner(self.cells)

    def is_over(self) -> bool:
        """A line is complete or the grid is full."""
        return self.winner() is not None or len(self.moves) == 9

    def legal_moves(self) -> list[int]:
        """The empty cells in increasing order; none once the game is over."""
        if self.is_over():
            return []
        return [i for i, c in enumerate(self.cells) if c is None]

    def play(self, cell: int) -> None:
        """Mark ``cell`` for the player to move; raises ValueError on an illegal move."""
        if cell not in self.legal_moves():
            raise ValueError(f"illegal TicTacToe move {cell!r}")
        self.cells[cell] = self.to_move()
        self.moves.append(cell)

    def ascii(self) -> str:
        """The grid as text; an empty cell shows its number so the model can name it."""
        shown = [MARKS[c] if c is not None else str(i) for i, c in enumerate(self.cells)]
        rows = [" " + " | ".join(shown[r * 3:r * 3 + 3]) for r in range(3)]
        return "\n---+---+---\n".join(rows)


class TicTacToeEnv(GridGameEnv):
    """TicTacToe for two language-model players.

    ## Description
    The classic 3x3 game: players alternately mark an empty cell; three marks in a row, column
    or diagonal win; a full grid without a line is a draw.

    ## Roles
    Player 0 plays X and moves first; player 1 plays O.

    ## Action Space
    ``Text``: any string. The legal actions are the empty cells as strings ``"0"``..``"8"``
    (numbered row by row from the top left), listed in ``info["legal_actions"]``.

    ## Observation Space
    ``Text``: the prompt for the player to move (printable ASCII only).

    ## Prompt and answer format
    The prompt states the rules in short, the player's mark, the board in ASCII (empty cells show
    their number), the moves so far, the legal actions, and ``envs.base.ANSWER_FORMAT``. The answer
    is read from the last ``\\boxed{4}``, else the last ``[4]``, else a short bare ``4``.

    ## Rewards
    Win +1, loss -1, draw 0 for both. An invalid action under ``invalid_action="lose"`` forfeits
    the game (``envs.base``): the offender gets ``invalid_reward`` (default -1, the worst return)
    and the opponent ``opponent_invalid_reward`` (default 0), so with the defaults a forfeited game
    is not zero-sum; the final ``info["forfeit"]`` is the offender. ``reward`` is the acting
    player's return at the end, else 0.

    ## Starting State
    An empty grid, X to move. The start has no randomness.

    ## Episode End
    Termination on a completed line, a full grid, or an invalid action under the ``"lose"`` rule.
    Never truncated (at most nine moves).

    ## Arguments
    * ``invalid_action``: ``"lose"`` (default) or ``"random"`` (a random empty cell is marked).
    * ``invalid_reward`` (default None: -1) and ``opponent_invalid_reward`` (default 0.0):
      the returns of a forfeit (see Rewards).
    * ``lenient``: also accept the legal cell named last anywhere in the text.
    * ``render_mode``: None or ``"ansi"``.
    * ``answer_prefix`` (default None; e.g. ``"\\boxed{"``): forced-answer mode (``envs.base``).

    ## Version History
    * v0: initial version.
    """

    title = "Tic-Tac-Toe"
    board_cls = TicTacToeBoard

    rules = ("Rules: players take turns marking one empty cell of a 3x3 grid. Three of your marks in "
             "a row, column or diagonal win (+1, the opponent gets -1); a full grid without such a "
             "line is a draw (0 each). Cells are numbered 0-8 row by row; an empty cell shows its "
             "number.")


@lru_cache(maxsize=None)
def _negamax(cells: tuple[int | None, ...]) -> int:
    """The value of ``cells`` for the player to move under perfect play by both.

    A win is worth 1 plus the number of empty cells left, so the solver prefers quicker wins
    and slower losses; a draw is 0.
    """
    empties = cells.count(None)
    if line_winner(cells) is not None:
        # Only the player who just moved can have completed a line.
        return -(1 + empties)
    if empties == 0:
        return 0
    player = (9 - empties) % 2
    return max(-_negamax(_child(cells, i, player)) for i, c in enumerate(cells) if c is None)


def _child(cells: tuple[int | None, ...], cell: int, player: int) -> tuple[int | None, ...]:
    return cells[:cell] + (player,) + cells[cell + 1:]


class PerfectTicTacToeOpponent:
    """Perfect play by memoised negamax; ties among optimal moves are broken by ``rng``.

    It never loses: from any position it keeps the best game-theoretic value available.
    """

    name = "strong"

    def act(self, env: TicTacToeEnv, rng: np.random.Generator) -> str:
        """The best cell for ``env.current_player()`` as a canonical action string."""
        cells = tuple(env.board.cells)
        player = env.board.to_move()
        moves = env.board.legal_moves()
        scores = [-_negamax(_child(cells, m, player)) for m in moves]
        best = max(scores)
        choices = [m for m, s in zip(moves, scores) if s == best]
        return str(choices[int(rng.integers(len(choices)))])


__all__ = ["TicTacToeBoard", "TicTacToeEnv", "PerfectTicTacToeOpponent", "line_winner"]
