"""Liar's Dice: the rules (:class:`LiarsDiceGame`), the text environment and a heuristic opponent.

One round per episode between two players. Bids are ``(quantity, face)`` pairs ordered by
quantity, then face; 1s are *not* wild, so a bid on face F counts only dice showing F.
"""

from __future__ import annotations

import re
from math import comb
from typing import Any

import numpy as np

from envs.actions import candidate, lenient_match
from envs.base import ANSWER_FORMAT, TurnBasedTextEnv

CALL = "call"
# Spellings of a call that the parser accepts besides "call" itself.
_CALL_WORDS = {"call", "liar", "call liar", "challenge"}
# "bid 3 5", "3 5", "bid 3x5", "3 x 5s", "bid 3 5's": quantity then face. At most four digits
# each, so int() never sees a huge number (Python refuses to parse over 4,300 digits).
_BID = re.compile(r"^(?:bid\s*)?(\d{1,4})\s*(?:x|\*|,|of|\s)\s*(\d{1,4})(?:'?s)?$")


def bid_action(quantity: int, face: int) -> str:
    """The canonical action string for a bid."""
    return f"bid {quantity} {face}"


class LiarsDiceGame:
    """The rules of one round of two-player Liar's Dice; player 0 bids first.

    ``dice[p]`` are player ``p``'s dice (faces 1..``faces``). ``bids`` alternate between the
    players starting with player 0; a call ends the round.
    """

    def __init__(self, dice: list[list[int]], faces: int) -> None:
        self.dice = [sorted(d) for d in dice]
        self.faces = faces
        self.total = sum(len(d) for d in dice)
        self.bids: list[tuple[int, int]] = []
        self.caller: int | None = None

    def to_move(self) -> int:
        """The player whose turn it is."""
        return len(self.bids) % 2

    def current_bid(self) -> tuple[int, int] | None:
        """The standing ``(quantity, face)`` bid, or None before the first bid."""
        return self.bids[-1] if self.bids else None

    def is_over(self) -> bool:
        """A bid has been called."""
        return self.caller is not None

    def legal_bids(self) -> list[tuple[int, int]]:
        """Every bid above the standing one: a higher quantity, or the same one and a higher face."""
        if self.is_over():
            return []
        q0, f0 = self.current_bid() or (0, self.faces)
        return [(q, f) for q in range(max(q0, 1), self.total + 1) for f in range(1, self.faces + 1)
                if (q, f) > (q0, f0)]

    def can_call(self) -> bool:
        """A call is legal once there is a bid to challenge."""
        return not self.is_over() and bool(self.bids)

    def bid(self, quantity: int, face: int) -> None:
        """Raise to ``(quantity, face)``; raises ValueError if that is not a legal raise."""
        if (quantity, face) not in self.legal_bids():
            raise ValueError(f"illegal Liar's Dice bid {(quantity, face)!r}")
        self.bids.append((quantity, face))

    def call(self) -> None:
        """Challenge the standing bid; raises ValueError if there is none."""
        if not self.can_call():
            raise ValueError("illegal Liar's Dice call: no bid to challenge")
        self.caller = self.to_move()

    def count(self, face: int) -> int:
        """How many dice, over all players, show ``face`` (1s are not wild)."""
        return sum(d.count(face) for d in self.dice)

    def winner(self) -> int | None:
        """After a call: the bidder if the bid holds (count >= quantity), else the caller."""
        if self.caller is None:
            return None
        quantity, face = self.bids[-1]
        return 1 - self.caller if self.count(face) >= quantity else self.caller


class LiarsDiceEnv(TurnBasedTextEnv):
    """One round of two-player Liar's Dice for language models.

    ## Description
    Each player rolls ``dice_per_player`` dice with ``faces`` faces and sees only their own.
    Players alternate: either bid ``Q F`` (at least Q of all dice on the table show face F) or
    call the previous bid. A bid must raise the standing one: a higher quantity with any face, or
    the same quantity with a higher face. On a call the dice are revealed; if at least Q dice show
    F the bidder wins, otherwise the caller wins. **1s are not wild**: a bid on F counts only Fs.

    ## Roles
    Player 0 bids first; player 1 answers. Each player's dice are private.

    ## Action Space
    ``Text``: any string. The legal actions, in ``info["legal_actions"]``, are every raise
    ``"bid Q F"`` (with 1 <= Q <= all dice, 1 <= F <= faces) and ``"call"`` once a bid stands.
    The parser also accepts ``"3 5"``, ``"bid 3x5"``, ``"bid 3 5s"`` and ``"liar"`` / ``"challenge"``
    for a call, but no other variations.

    ## Observation Space
    ``Text``: the prompt for the player to move (printable ASCII only). It shows that player's own
    dice and only the *number* of the opponent's dice.

    ## Prompt and answer format
    The prompt states the rules in short, the player's dice, the bids so far, the standing bid,
    the legal actions, and ``envs.base.ANSWER_FORMAT``; answers look like ``\\boxed{bid 3 5}`` or
    ``\\boxed{call}``.

    ## Rewards
    The round's winner gets +1, the loser -1. An invalid action under ``invalid_action="lose"``
    forfeits the round (``envs.base``): the offender gets ``invalid_reward`` (default -1, the
    worst return) and the opponent ``opponent_invalid_reward`` (default 0), so with the defaults a
    forfeited round is not zero-sum; the final ``info["forfeit"]`` is the offender.

    ## Starting State
    Dice rolled uniformly from ``self.np_random``, or fixed for tests by
    ``reset(options={"dice": [[..], [..]]})``.

    ## Episode End
    Termination on a call or on an invalid action under the ``"lose"`` rule. Bids strictly rise,
    so a round has at most ``2 * dice_per_player * faces + 1`` moves; never truncated.

    ## Arguments
    * ``invalid_action``: ``"lose"`` (default) or ``"random"`` (a random legal action is played).
    * ``invalid_reward`` (default None: -1) and ``opponent_invalid_reward`` (default 0.0):
      the returns of a forfeit (see Rewards).
    * ``lenient``: also accept the legal action named last anywhere in the text.
    * ``render_mode``: None or ``"ansi"``.
    * ``dice_per_player`` (default 5, at least 1) and ``faces`` (default 6, 2 to 9).
    * ``answer_prefix`` (default None; e.g. ``"\\boxed{"``): forced-answer mode (``envs.base``).

    ## Version History
    * v0: initial version (one round, 1s not wild).
    """

    title = "Liar's Dice"
    min_return = -1.0

    def __init__(self, invalid_action: str = "lose", lenient: bool = False,
                 render_mode: str | None = None, dice_per_player: int = 5, faces: int = 6,
                 invalid_reward: float | None = None, opponent_invalid_reward: float = 0.0,
                 answer_prefix: str | None = None,
                 answer_choices: bool = False) -> None:
        super().__init__(invalid_action=invalid_action, lenient=lenient, render_mode=render_mode,
                         invalid_reward=invalid_reward, opponent_invalid_reward=opponent_invalid_reward,
                         answer_prefix=answer_prefix, answer_choices=answer_choices)
        if dice_per_player < 1:
            raise ValueError(f"dice_per_player={dice_per_player}: expected at least 1")
        if not 2 <= faces <= 9:
            # One digit per face keeps bids unambiguous to read ("bid 12 3").
            raise ValueError(f"faces={faces}: expected 2 to 9")
        self.dice_per_player = dice_per_player
        self.faces = faces
        self.game = LiarsDiceGame([[1] * dice_per_player] * 2, faces)

    def _new_game(self, options: dict[str, Any]) -> None:
        dice = options.get("dice")
        if dice is None:
            rolled = self.np_random.integers(1, self.faces + 1, size=(2, self.dice_per_player))
            dice = [[int(v) for v in row] for row in rolled]
        else:
            self._check_dice(dice)
        self.game = LiarsDiceGame([[int(v) for v in d] for d in dice], self.faces)

    def _check_dice(self, dice: Any) -> None:
        try:
            ok = (len(dice) == 2 and all(len(d) == self.dice_per_player for d in dice)
                  and all(isinstance(v, (int, np.integer)) and 1 <= v <= self.faces
                          for d in dice for v in d))
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"options['dice']={dice!r}: expected 2 lists of {self.dice_per_player} "
                             f"faces in 1..{self.faces}")

    def current_player(self) -> int:
        return self.game.to_move()

    def legal_actions(self) -> list[str]:
        actions = [bid_action(q, f) for q, f in self.game.legal_bids()]
        return actions + [CALL] if self.game.can_call() else actions

    def parse_action(self, text: str) -> str | None:
        """Map free text to a canonical legal action (accepting the documented variations)."""
        legal = self.legal_actions()
        found = _canonical(candidate(text))
        if found in legal:
            return found
        return lenient_match(text, legal) if self.lenient else None

    def _apply(self, action: str) -> None:
        if action == CALL:
            self.game.call()
        else:
            _, quantity, face = action.split()
            self.game.bid(int(quantity), int(face))

    def _is_over(self) -> bool:
        return self.game.is_over()

    def _returns(self) -> dict[int, float]:
        winner = self.game.winner()
        return {winner: 1.0, 1 - winner: -1.0}

    def observation(self, player: int) -> str:
        game, n = self.game, self.dice_per_player
        history = "; ".join(f"player {i % 2}: {bid_action(q, f)}"
                            for i, (q, f) in enumerate(game.bids))
        bid = game.current_bid()
        standing = (f"at least {bid[0]} dice show {bid[1]} (bid by player {1 - player})." if bid
                    else "none; you open the bidding (a call is not allowed yet).")
        return "\n".join([
            f"You are playing Liar's Dice as player {player} against player {1 - player}.",
            f"Rules: each player rolls {n} dice with faces 1-{self.faces} and sees only their own; "
            f"there are {game.total} dice in all. Player 0 bids first, then players alternate. On "
            "your turn either bid \"bid Q F\", claiming that at least Q of all dice show face F, or "
            "\"call\" to challenge the previous bid. A bid must raise the previous one: a higher Q "
            "(any face), or the same Q with a higher F. 1s are not wild. On a call all dice are "
            "revealed: if at least Q dice show F the bidder wins, otherwise the caller wins. The "
            "winner gets +1, the loser -1.",
            "",
            f"Your dice: {' '.join(str(v) for v in game.dice[player])}",
            f"Your opponent has {n} hidden dice.",
            f"Bids so far: {history or 'none'}.",
            f"Standing bid: {standing}",
            f"Legal actions: {', '.join(self.legal_actions())}",
            ANSWER_FORMAT,
        ])

    def final_observation(self) -> str:
        """The returns, then every player's dice, which are revealed once the round is over."""
        shown = "; ".join(f"player {p}: {' '.join(str(v) for v in d)}"
                          for p, d in enumerate(self.game.dice))
        return f"{super().final_observation()} Dice: {shown}."


def _canonical(cand: str | None) -> str | None:
    """Rewrite a normalised candidate into canonical form ("bid Q F" or "call"), or None."""
    if cand is None:
        return None
    if cand in _CALL_WORDS:
        return CALL
    m = _BID.match(cand)
    return bid_action(int(m.group(1)), int(m.group(2))) if m else None


def _p_at_least(need: int, n: int, p: float) -> float:
    """P(X >= need) for X ~ Binomial(n, p)."""
    if need <= 0:
        return 1.0
    return sum(comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(need, n + 1))


class HeuristicLiarsDiceOpponent:
    """Plays from its own dice and the odds of the hidden ones; never looks at the opponent's dice.

    It treats each hidden die as showing a face with probability 1/faces. For each face it
    considers the smallest legal raise and the chance that raise is true; it calls when the
    standing bid is more likely false than its best raise is true, otherwise it makes that raise
    (ties go to the face it holds most of, then ``rng``).
    """

    name = "strong"

    def act(self, env: LiarsDiceEnv, rng: np.random.Generator) -> str:
        """A canonical legal action for ``env.current_player()``."""
        game = env.game
        own = game.dice[game.to_move()]
        hidden = game.total - len(own)

        def p_true(quantity: int, face: int) -> float:
            return _p_at_least(quantity - own.count(face), hidden, 1 / game.faces)

        raises = []
        q0, f0 = game.current_bid() or (1, 0)
        for face in range(1, game.faces + 1):
            quantity = q0 if face > f0 else q0 + 1
            if quantity <= game.total:
                raises.append((p_true(quantity, face), own.count(face), quantity, face))
        bid = game.current_bid()
        best_p = max((r[0] for r in raises), default=0.0)
        # With no raise left (the top bid stands) a call is the only legal action.
        if bid is not None and (not raises or 1 - p_true(*bid) > best_p):
            return CALL
        top = max((r[0], r[1]) for r in raises)
        choices = [r for r in raises if (r[0], r[1]) == top]
        _, _, quantity, face = choices[int(rng.integers(len(choices)))]
        return bid_action(quantity, face)


__all__ = ["LiarsDiceGame", "LiarsDiceEnv", "HeuristicLiarsDiceOpponent", "bid_action"]
