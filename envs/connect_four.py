"""Connect Four: the rules (:class:`ConnectFourBoard`), the text environment and a search opponent.

The rules keep a readable grid; :class:`SearchConnectFourOpponent` converts it to two bitboards
(the usual 7-bits-per-column layout, one spare bit on top of each column so that lines cannot
wrap) because depth-limited alpha-beta in pure Python is only fast enough on integers.
"""

from __future__ import annotations


import numpy as np

from envs.grid_game import MARKS, GridGameEnv

ROWS, COLS, CONNECT = 6, 7, 4


class ConnectFourBoard:
    """The rules of Connect Four on 7 columns by 6 rows; player 0 (X) moves first.

    ``grid[row][col]`` holds 0, 1 or None, with row 0 at the bottom.
    """

    def __init__(self) -> None:
        self.grid: list[list[int | None]] = [[None] * COLS for _ in range(ROWS)]
        self.heights = [0] * COLS
        self.moves: list[int] = []
        self._winner: int | None = None

    def to_move(self) -> int:
        """The player whose turn it is (players alternate, 0 first)."""
        return len(self.moves) % 2

    def winner(self) -> int | None:
        """The player who connected four, or None."""
        return self._winner

    def is_over(self) -> bool:
        """Someone connected four or the board is full."""
        return self._winner is not None or len(self.moves) == ROWS * COLS

    def legal_moves(self) -> list[int]:
        """The columns that are not full; none once the game is over."""
        if self.is_over():
            return []
        return [c for c in range(COLS) if self.heights[c] < ROWS]

    def play(self, col: int) -> None:
        """Drop a disc for the player to move into ``col``; raises ValueError if illegal."""
        if col not in self.legal_moves():
            raise ValueError(f"illegal Connect Four move {col!r}")
        player, row = self.to_move(), self.heights[col]
        self.grid[row][col] = player
        self.heights[col] += 1
        self.moves.append(col)
        if self._connects(row, col, player):
            self._winner = player

    def _connects(self, row: int, col: int, player: int) -> bool:
        # Only lines through the new disc can have been completed by it.
        for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
            run = 1
            for sign in (1, -1):
                r, c = row + sign * dr, col + sign * dc
                while 0 <= r < ROWS and 0 <= c < COLS and self.grid[r][c] == player:
                    run += 1
                    r, c = r + sign * dr, c + sign * dc
            if run >= CONNECT:
                return True
        return False

    def ascii(self) -> str:
        """The board as text, top row first, with the column numbers underneath."""
        lines = [" ".join(MARKS[v] if v is not None else "." for v in self.grid[r])
                 for r in reversed(range(ROWS))]
        lines.append(" ".join(str(c) for c in range(COLS)))
        return "\n".join(lines)


class ConnectFourEnv(GridGameEnv):
    """Connect Four for two language-model players.

    ## Description
    Players alternately drop a disc into one of 7 columns of a 6-row vertical grid; it falls to
    the lowest empty cell. Four of one's discs in a row (horizontal, vertical or diagonal) win; a
    full board without one is a draw.

    ## Roles
    Player 0 plays X and moves first; player 1 plays O.

    ## Action Space
    ``Text``: any string. The legal actions are the non-full columns as strings ``"0"``..``"6"``
    (left to right), listed in ``info["legal_actions"]``.

    ## Observation Space
    ``Text``: the prompt for the player to move (printable ASCII only).

    ## Prompt and answer format
    The prompt states the rules in short, the player's mark, the board in ASCII (top row first,
    ``.`` empty, column numbers underneath), the moves so far, the legal actions, and
    ``envs.base.ANSWER_FORMAT``. The answer is read from the last ``\\boxed{3}``, else the last
    ``[3]``, else a short bare ``3``.

    ## Rewards
    Win +1, loss -1, draw 0 for both. An invalid action under ``invalid_action="lose"`` forfeits
    the game (``envs.base``): the offender gets ``invalid_reward`` (default -1, the worst return)
    and the opponent ``opponent_invalid_reward`` (default 0), so with the defaults a forfeited game
    is not zero-sum; the final ``info["forfeit"]`` is the offender. ``reward`` is the acting
    player's return at the end, else 0.

    ## Starting State
    An empty board, X to move. The start has no randomness.

    ## Episode End
    Termination on four in a row, a full board (42 moves), or an invalid action under the
    ``"lose"`` rule. Never truncated.

    ## Arguments
    * ``invalid_action``: ``"lose"`` (default) or ``"random"`` (a random open column is played).
    * ``invalid_reward`` (default None: -1) and ``opponent_invalid_reward`` (default 0.0):
      the returns of a forfeit (see Rewards).
    * ``lenient``: also accept the legal column named last anywhere in the text.
    * ``render_mode``: None or ``"ansi"``.
    * ``answer_prefix`` (default None; e.g. ``"\\boxed{"``): forced-answer mode (``envs.base``).

    ## Version History
    * v0: initial version.
    """

    title = "Connect Four"
    board_cls = ConnectFourBoard

    rules = ("Rules: players take turns dropping a disc into one of 7 columns (0-6) of a 6-row grid; "
             "the disc falls to the lowest empty cell. Four of your discs in a row horizontally, "
             "vertically or diagonally win (+1, the opponent gets -1); a full board without four in "
             "a row is a draw (0 each). A full column cannot be played.")
    board_heading = "Board (top row first, . is empty, column numbers underneath):"
    history_label = "Moves so far (mark and column)"


# ----- search on bitboards ----------------------------------------------------------------------
_H = ROWS + 1  # bits per column: six cells and one spare that stops lines from wrapping
_ALL = sum(1 << (c * _H + r) for c in range(COLS) for r in range(ROWS))
_CENTRE = sum(1 << (COLS // 2 * _H + r) for r in range(ROWS))
_SHIFTS = (1, _H, _H - 1, _H + 1)  # vertical, horizontal, and the two diagonals
_ORDER = (3, 2, 4, 1, 5, 0, 6)  # centre first: better cut-offs and a centre preference
_WIN = 1_000_000
_INF = 10 * _WIN


def _connected(bb: int) -> bool:
    """Whether bitboard ``bb`` has four in a row."""
    for s in _SHIFTS:
        pairs = bb & (bb >> s)
        if pairs & (pairs >> 2 * s):
            return True
    return False


def _threes(me: int, empty: int) -> int:
    """How many windows of four hold three of ``me`` and one empty cell (open threes)."""
    count = 0
    for s in _SHIFTS:
        a, b, c, d = me, me >> s, me >> 2 * s, me >> 3 * s
        eb, ec, ed = empty >> s, empty >> 2 * s, empty >> 3 * s
        windows = (a & b & c & ed) | (a & b & ec & d) | (a & eb & c & d) | (empty & b & c & d)
        count += windows.bit_count()
    return count


def _evaluate(me: int, opp: int) -> int:
    """Static score for the player to move: open threes, then centre discs."""
    empty = _ALL & ~(me | opp)
    return (10 * (_threes(me, empty) - _threes(opp, empty))
            + 3 * ((me & _CENTRE).bit_count() - (opp & _CENTRE).bit_count()))


def _negamax(me: int, opp: int, heights: list[int], depth: int, alpha: int, beta: int) -> int:
    """Alpha-beta value for the player to move (``me``); wins found sooner score higher."""
    moves = [c for c in _ORDER if heights[c] < ROWS]
    if not moves:
        return 0
    for c in moves:
        if _connected(me | (1 << (c * _H + heights[c]))):
            return _WIN + depth
    if depth == 0:
        return _evaluate(me, opp)
    best = -_INF
    for c in moves:
        bit = 1 << (c * _H + heights[c])
        heights[c] += 1
        value = -_negamax(opp, me | bit, heights, depth - 1, -beta, -alpha)
        heights[c] -= 1
        if value > best:
            best = value
            alpha = max(alpha, value)
            if alpha >= beta:
                break
    return best


class SearchConnectFourOpponent:
    """Depth-limited negamax with alpha-beta pruning and a small heuristic.

    Every node first checks for an immediate win, so the search takes a winning move and blocks
    the opponent's; leaves score open threes and discs in the centre column. Ties among the best
    root moves are broken by ``rng``. Depth 4 takes a few tens of milliseconds a move.
    """

    name = "strong"

    def __init__(self, depth: int = 4) -> None:
        if depth < 1:
            raise ValueError(f"depth={depth}: expected at least 1")
        self.depth = depth

    def act(self, env: ConnectFourEnv, rng: np.random.Generator) -> str:
        """The chosen column for ``env.current_player()`` as a canonical action string."""
        board = env.board
        player = board.to_move()
        bbs = [0, 0]
        for row in range(ROWS):
            for col in range(COLS):
                if board.grid[row][col] is not None:
                    bbs[board.grid[row][col]] |= 1 << (col * _H + row)
        me, opp = bbs[player], bbs[1 - player]
        heights = list(board.heights)
        best, choices = -_INF, []
        for c in (c for c in _ORDER if heights[c] < ROWS):
            bit = 1 << (c * _H + heights[c])
            if _connected(me | bit):
                value = _WIN + self.depth
            else:
                heights[c] += 1
                # Searching with alpha = best - 1 still gives exact values for ties with the best.
                value = -_negamax(opp, me | bit, heights, self.depth - 1, -_INF, -(best - 1))
                heights[c] -= 1
            if value > best:
                best, choices = value, [c]
            elif value == best:
                choices.append(c)
        return str(choices[int(rng.integers(len(choices)))])


__all__ = ["ConnectFourBoard", "ConnectFourEnv", "SearchConnectFourOpponent"]
