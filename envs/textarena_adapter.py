"""TextArena's games as selfplay environments, following the turn-based text contract.

TextArena (https://github.com/LeonGuertler/TextArena) ships about a hundred text games behind its
own API: ``ta.make(env_id)``, ``env.reset(num_players=, seed=)``, ``env.get_observation() ->
(player_id, text)``, ``env.step(action) -> (done, info)`` and ``env.close() -> (rewards,
game_info)``. :class:`TextArenaEnv` puts a ``gymnasium.Env`` with ``Text`` spaces and the
``info["player"]`` / ``info["rewards"]`` contract of :mod:`envs.base` in front of it.

``textarena`` is imported only when an environment is built, so importing ``envs`` (which
registers ``selfplay/TextArena-v0``) works without it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from gymnasium import spaces

from envs.base import (CHARSET, MAX_ACTION_CHARS, MAX_OBS_CHARS, Reply, TextEpisodeEnv, action_text,
                       check_reward, forfeit_returns)

#: The release this adapter was written and tested against.
TEXTARENA_VERSION = "0.7.4"
INSTALL_HINT = f"pip install textarena=={TEXTARENA_VERSION}"
_ALLOWED = frozenset(CHARSET)
_ELIDED = "\n[... earlier messages elided ...]\n"


def import_textarena() -> ModuleType:
    """Import ``textarena``, or raise ImportError saying how to install it."""
    try:
        import textarena
    except ImportError as exc:
        raise ImportError(f"TextArena environments need the textarena package: {INSTALL_HINT}") from exc
    return textarena


def fit_text(text: str, max_chars: int = MAX_OBS_CHARS) -> str:
    """Make ``text`` a member of the observation space.

    Characters outside printable ASCII are written as Python escapes (``\\u2660``) rather than
    dropped, so nothing is silently lost. An over-long text keeps its head (TextArena puts the
    rules first) and its tail (the current board comes last) around an elision marker.
    """
    if any(c not in _ALLOWED for c in text):
        text = "".join(c if c in _ALLOWED else c.encode("unicode_escape").decode("ascii") for c in text)
    if len(text) > max_chars:
        if max_chars < 4 * len(_ELIDED):  # too short to split usefully
            return text[:max_chars]
        head = max_chars // 4
        tail = max_chars - head - len(_ELIDED)
        text = text[:head] + _ELIDED + text[len(text) - tail:]
    return text


class TextArenaEnv(TextEpisodeEnv):
    """A TextArena game behind the selfplay environment contract.

    ## Description
    Each ``reset`` builds a fresh TextArena env with ``ta.make(game)`` (its observation wrappers
    keep history across TextArena resets) and resets it with a seed drawn from ``np_random``.
    ``step`` hands the action text to TextArena unchanged; the game's own parser and rules decide.

    ## Roles
    Players ``0..num_players-1`` as TextArena numbers them; ``info["player"]`` is the one TextArena
    asks to move next (``-1`` once the game is over). A player may move twice in a row where
    TextArena grants a retry after an invalid move.

    ## Action Space
    ``Text`` over printable ASCII, as in :mod:`envs.base`. Any string is an action and is passed on
    unchanged (``None`` becomes ``""``). The action set is open-ended here: TextArena exposes no
    generic list of legal moves, so ``info`` has no ``"legal_actions"``.

    ## Observation Space
    ``Text`` over printable ASCII: the text TextArena shows the player to move (with the default
    wrappers, the whole conversation so far), passed through :func:`fit_text`.

    ## Rewards
    Zero until the end; then ``info["rewards"]`` holds TextArena's returns for every player (for
    its two-player zero-sum games such as TicTacToe they are +1/-1 or 0/0) and ``reward`` is the
    acting player's. A game lost by invalid moves is a forfeit, scored as in :mod:`envs.base`
    rather than by TextArena: the offender gets ``invalid_reward`` (default -1, TextArena's loss)
    and every other player ``opponent_invalid_reward`` (default 0), so with the defaults a
    forfeited game is not zero-sum; the final ``info["forfeit"]`` is the offender.

    ## Invalid actions
    TextArena's own rule applies (``invalid_action = "textarena"``): in its two-player games a
    player gets ``error_allowance`` (default 1) retries, then loses, which ends the game as a
    forfeit (see Rewards). In games of more players TextArena eliminates the offender and the
    game goes on; its returns stand there. ``info["invalid"]`` and ``info["invalid_counts"]`` are
    read from TextArena's state (its ``error_count`` and ``game_info[player]["invalid_move"]``);
    for games whose state keeps neither they stay False/0. An action on which the game's own code
    raises (TextArena's TicTacToe calls ``int()`` on any digits in brackets, and Python refuses to
    convert more than 4,300 of them) is an invalid move under the same rule, never an exception
    out of ``step``: it goes through the state's ``set_invalid_move``, and where even that fails,
    its author forfeits the game at once (in a game of any number of players).

    ## Starting State
    TextArena's, seeded from ``np_random`` (so ``reset(seed=s)`` is deterministic). TextArena
    seeds Python's global ``random`` module with it: a TextArena reset moves that global state.

    ## Episode End
    Termination when TextArena reports ``done`` (win, draw, loss by invalid moves, or its own
    turn limit). Never truncated here.

    ## Arguments
    * ``game``: a TextArena env id, e.g. ``"TicTacToe-v0"`` (its default wrappers apply).
    * ``num_players``: passed to TextArena's reset (default 2).
    * ``invalid_reward`` (default None: -1) and ``opponent_invalid_reward`` (default 0.0): the
      returns of a forfeit (see Rewards).
    * ``render_mode``: None or ``"ansi"`` (the current observation, or the final summary).

    ## Version History
    * v0: initial version, written against textarena 0.7.4.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    #: The invalid-action rule is TextArena's own; this names it for the rollout side.
    invalid_action = "textarena"
    #: The worst return of TextArena's games as scored (a loss): the default ``invalid_reward``.
    min_return = -1.0

    def __init__(self, game: str = "TicTacToe-v0", num_players: int = 2,
                 render_mode: str | None = None, invalid_reward: float | None = None,
                 opponent_invalid_reward: float = 0.0) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: expected one of {self.metadata['render_modes']}")
        self.invalid_reward = check_reward("invalid_reward", invalid_reward, optional=True)
        self.opponent_invalid_reward = check_reward("opponent_invalid_reward", opponent_invalid_reward)
        self._ta = import_textarena()
        self._ta.make(game)  # fail here, not at the first reset, on an unknown id
        self.game = game
        self.num_players = num_players
        self.render_mode = render_mode
        # TextArena may show nothing new to a player, so an empty observation is allowed.
        self.observation_space = spaces.Text(max_length=MAX_OBS_CHARS, min_length=0, charset=CHARSET)
        self.action_space = spaces.Text(max_length=MAX_ACTION_CHARS, charset=CHARSET)
        self._ta_env: Any = None
        self._done = True
        self._player = -1
        self._obs = ""
        self._rewards: dict[int, float] = {}
        self._game_info: dict[int, Any] = {}
        self._invalid_counts: list[int] = []
        self._forfeit_by: int | None = None
        self._turn = 0

    # ----- Gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"TextArena games take no reset options, got {sorted(options)}")
        self._ta_env = self._ta.make(self.game)
        self._ta_env.reset(num_players=self.num_players, seed=int(self.np_random.integers(2**31 - 1)))
        self._done = False
        self._rewards, self._game_info = {}, {}
        self._invalid_counts = [0] * self.num_players
        self._forfeit_by = None
        self._turn = 0
        self._fetch_observation()
        return self._obs, self._info(invalid=False)

    def step(self, action: str | Reply | None):
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        text = action_text(action)
        text = "" if text is None else str(text)
        player = self._player
        errors_before = self._error_count()
        try:
            done, ta_info = self._ta_env.step(text)
        except Exception as err:  # any failure of the game's code on this text is its author's
            done, ta_info = self._reject(player, err)
        done = bool(done)
        self._turn += 1
        if done:
            if not self._done:  # (a forfeit in _reject has finished the episode already)
                self._finish(player)
            invalid = bool(self._game_info.get(player, {}).get("invalid_move", False))
        else:
            # A retry after an invalid move raises error_count; a valid move clears it.
            invalid = self._error_count() > errors_before
        if invalid:
            self._invalid_counts[player] += 1
        if not done:
            self._fetch_observation()
        info = self._info(invalid, None if invalid else text, ta_info)
        reward = self._rewards.get(player, 0.0) if done else 0.0
        return self._obs, reward, done, False, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._obs
        return None

    # ----- the parts of the TurnBasedTextEnv surface that TextArena can back ---------------------
    def current_player(self) -> int:
        """The player to act next (``-1`` once the game is over)."""
        return self._player

    def legal_actions(self) -> None:
        """Always None: TextArena games have no generic list of legal actions."""
        return None

    def observation(self, player: int) -> str:
        """The prompt for ``player``; TextArena only renders the view of the player to move."""
        if player != self._player:
            raise ValueError(f"TextArena shows only the player to move ({self._player}), not {player}")
        return self._obs

    # ----- helpers -----------------------------------------------------------------------------
    def _fetch_observation(self) -> None:
        player, obs = self._ta_env.get_observation()
        if not isinstance(obs, str):
            # A "-raw" id yields message tuples (sender, text, type) instead of a rendered string.
            obs = "\n".join(str(m[1]) if isinstance(m, tuple) else str(m) for m in obs)
        self._player = int(player)
        self._obs = fit_text(obs)

    def _reject(self, player: int, err: Exception) -> tuple[bool, dict[str, Any]]:
        """Treat the action the game raised ``err`` on as an invalid move; returns what the
        game's ``step`` would have: (done, info).

        TextArena's own rule first (its state's ``set_invalid_move``, then ``step``, as its games
        do for a move they reject). The game stopped part-way through its ``step``, so that may
        fail as well; then the author forfeits: the episode ends here with -1 for ``player``.
        """
        reason = fit_text(f"the game could not process this move ({type(err).__name__}: {err})", 400)
        try:
            state = self._ta_env.state
            state.set_invalid_move(reason=reason)
            return state.step()
        except Exception:
            self._forfeit(player)
            self._game_info = {p: {"reason": f"Invalid move by player {player}: {reason}",
                                   "invalid_move": p == player} for p in range(self.num_players)}
            self._done, self._player = True, -1
            self._obs = self._final_text(f" Reason: player {player} forfeits: {reason}")
            return True, {}

    def _forfeit(self, offender: int) -> None:
        """``offender`` forfeits: the returns of :mod:`envs.base`'s rule replace TextArena's."""
        offender_return = self.min_return if self.invalid_reward is None else self.invalid_reward
        self._rewards = forfeit_returns(offender, self.num_players, offender_return,
                                        self.opponent_invalid_reward)
        self._forfeit_by = offender

    def _final_text(self, reason: str) -> str:
        scores = ", ".join(f"player {p}: {r:+g}" for p, r in sorted(self._rewards.items()))
        return fit_text(f"The TextArena {self.game} game is over. Returns: {scores}.{reason}")

    def _error_count(self) -> int:
        return int(getattr(getattr(self._ta_env, "state", None), "error_count", 0) or 0)

    def _finish(self, player: int) -> None:
        """The game is over after ``player``'s move: read TextArena's returns (a forfeit's where
        that move lost a two-player game as invalid)."""
        closed = self._ta_env.close()
        # textarena 0.7.4 returns (rewards, game_info); some earlier releases returned rewards alone.
        rewards, game_info = closed if isinstance(closed, tuple) else (closed, {})
        self._rewards = {int(p): float(r) for p, r in (rewards or {}).items()}
        self._game_info = dict(game_info or {})
        own = self._game_info.get(player)
        if self.num_players == 2 and isinstance(own, dict) and own.get("invalid_move"):
            self._forfeit(player)
        self._done = True
        self._player = -1
        reasons = {str(i["reason"]) for i in self._game_info.values()
                   if isinstance(i, dict) and i.get("reason")}
        self._obs = self._final_text(f" Reason: {' '.join(sorted(reasons))}" if reasons else "")

    def _info(self, invalid: bool, action: str | None = None,
              ta_info: dict[str, Any] | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "turn": self._turn,
            "invalid": invalid,
            "invalid_counts": list(self._invalid_counts),
            "player": self._player,
            "textarena": dict(ta_info or {}),
        }
        if action is not None:
            info["action"] = action
        if self._done:
            info["rewards"] = dict(self._rewards)
            info["game_info"] = self._game_info
            if self._forfeit_by is not None:
                info["forfeit"] = self._forfeit_by
        return info


__all__ = ["TextArenaEnv", "TEXTARENA_VERSION", "INSTALL_HINT", "fit_text", "import_textarena"]
