"""Kuhn Poker: three cards, ante 1, one bet of 1; one hand by default, or a match of several.

The rules are the pure :class:`KuhnMatch` (plus :func:`hand_payoff` for one finished hand); the
environment is a thin text adapter over it. Unlike SPIRAL's version, chips really move: a hand
is settled by its actual stakes, and a match's return is each player's net chip change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from envs.base import ANSWER_FORMAT, TurnBasedTextEnv

CARDS = ("J", "Q", "K")
_RANK = {card: rank for rank, card in enumerate(CARDS)}
#: The actions legal at each decision point of a hand, keyed by the hand's public history.
DECISIONS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): ("check", "bet"),
    ("check",): ("check", "bet"),
    ("bet",): ("call", "fold"),
    ("check", "bet"): ("call", "fold"),
}
TERMINALS = (("check", "check"), ("bet", "call"), ("bet", "fold"),
             ("check", "bet", "call"), ("check", "bet", "fold"))
_PAST = {"check": "checked", "bet": "bet", "call": "called", "fold": "folded"}


def hand_payoff(first_card: str, second_card: str, history: Sequence[str]) -> int:
    """Chips the first actor of a finished hand wins (negative when it loses)."""
    if history[-1] == "fold":
        # The folder forfeits only its ante; it is whoever acted last.
        return 1 if (len(history) - 1) % 2 == 1 else -1
    stake = 2 if "bet" in history else 1
    return stake if _RANK[first_card] > _RANK[second_card] else -stake


def infoset_key(card: str, history: Sequence[str]) -> str:
    """Canonical information-set key: own card and the hand's public history, e.g. ``"Q:check,bet"``."""
    return f"{card}:{','.join(history)}"


def equilibrium_policy(alpha: float = 1 / 3) -> dict[str, dict[str, float]]:
    """The textbook Nash equilibrium family (Kuhn 1950), keyed by :func:`infoset_key`.

    First actor: J bets with probability alpha, Q always checks and calls a bet with probability
    alpha + 1/3, K bets with probability 3 * alpha. Second actor: J bets 1/3 after a check and
    folds to a bet, Q checks and calls a bet 1/3 of the time, K always bets or calls.
    Every alpha in [0, 1/3] is an equilibrium; the first actor's value is -1/18.
    """
    if not 0.0 <= alpha <= 1 / 3:
        raise ValueError(f"alpha={alpha}: the equilibrium family needs 0 <= alpha <= 1/3")
    bet = {"J": alpha, "Q": 0.0, "K": 3 * alpha}
    call_after_check = {"J": 0.0, "Q": alpha + 1 / 3, "K": 1.0}
    bet_after_check = {"J": 1 / 3, "Q": 0.0, "K": 1.0}
    call_a_bet = {"J": 0.0, "Q": 1 / 3, "K": 1.0}
    policy: dict[str, dict[str, float]] = {}
    for c in CARDS:
        policy[infoset_key(c, ())] = {"check": 1 - bet[c], "bet": bet[c]}
        call = call_after_check[c]
        policy[infoset_key(c, ("check", "bet"))] = {"call": call, "fold": 1 - call}
        policy[infoset_key(c, ("check",))] = {"check": 1 - bet_after_check[c], "bet": bet_after_check[c]}
        policy[infoset_key(c, ("bet",))] = {"call": call_a_bet[c], "fold": 1 - call_a_bet[c]}
    return policy


@dataclass(frozen=True)
class HandRecord:
    """One finished hand: cards by player, who acted first, the actions, and chips won by player."""

    cards: tuple[str, str]
    first: int
    history: tuple[str, ...]
    chips: tuple[int, int]

    @property
    def showdown(self) -> bool:
        return self.history[-1] != "fold"


class KuhnMatch:
    """The rules of a match of ``len(deals)`` hands; ``deals[h]`` is (player 0's card, player 1's).

    The first actor alternates by hand (player 0 in hand 0, player 1 in hand 1, ...), so over an
    even number of hands neither player keeps the first actor's disadvantage of 1/18 per hand.
    """

    def __init__(self, deals: Sequence[tuple[str, str]]) -> None:
        self.deals = [tuple(d) for d in deals]
        self.hand = 0
        self.history: list[str] = []
        self.chips = [0, 0]
        self.records: list[HandRecord] = []

    def over(self) -> bool:
        return self.hand >= len(self.deals)

    def first(self) -> int:
        """The player who acts first in the current hand."""
        return self.hand % 2

    def to_act(self) -> int:
        return (self.first() + len(self.history)) % 2

    def card(self, player: int) -> str:
        return self.deals[self.hand][player]

    def legal(self) -> tuple[str, ...]:
        return DECISIONS[tuple(self.history)]

    def play(self, action: str) -> None:
        """Play a legal action; a hand that ends is settled and the next one starts."""
        if action not in self.legal():
            raise ValueError(f"{action!r} is not legal after {self.history}")
        self.history.append(action)
        history = tuple(self.history)
        if history in DECISIONS:
            return
        first, cards = self.first(), self.deals[self.hand]
        won = hand_payoff(cards[first], cards[1 - first], history)
        chips = (won, -won) if first == 0 else (-won, won)
        self.chips = [self.chips[0] + chips[0], self.chips[1] + chips[1]]
        self.records.append(HandRecord(cards, first, history, chips))
        self.hand += 1
        self.history = []


def _parse_cards(cards: Any) -> list[tuple[str, str]]:
    """Accept one pair ``["K", "J"]`` or a list of pairs; validate and upper-case them."""
    if isinstance(cards, (list, tuple)) and len(cards) == 2 and all(isinstance(c, str) for c in cards):
        cards = [cards]
    deals = []
    for pair in cards:
        pair = tuple(str(c).upper() for c in pair)
        if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(CARDS):
            raise ValueError(f"cards {pair}: need two different cards out of {CARDS}")
        deals.append(pair)
    return deals


class KuhnPokerEnv(TurnBasedTextEnv):
    """Kuhn Poker for two language-model players.

    ## Description
    The smallest interesting poker (Kuhn 1950). A deck of three cards J < Q < K; each player
    antes 1 chip and gets one private card. The first actor checks or bets 1; after a check the
    second actor checks (showdown for a pot of 2) or bets 1; a player facing a bet calls
    (showdown for a pot of 4) or folds (the bettor takes the pot). The higher card wins a
    showdown. The first actor's equilibrium value is -1/18 chip per hand.

    ## Action Space
    ``Text``: one of ``check``, ``bet``, ``call``, ``fold``; ``info["legal_actions"]`` lists the
    two legal now (check/bet, or call/fold when facing a bet).

    ## Observation Space
    ``Text`` (ASCII): the prompt for the player to act: rules, its own card (never the
    opponent's), the actions so far, in a match the earlier hands (cards only where shown down)
    and the chip count, the legal actions and the answer format.

    ## Rewards
    Zero until the end; then every player's net chip change: +-1 or +-2 for one hand, the sum
    over hands for a match (zero-sum). An invalid action under ``invalid_action="lose"``
    forfeits the whole match at once (``envs.base``; the hands left are not played): the
    offender gets ``invalid_reward`` (default ``min_return`` = -2 * num_hands, the worst a match
    can go) and the opponent ``opponent_invalid_reward`` (default 0). These replace the chip
    count: chips either player won in earlier hands count for neither. With the defaults a
    forfeited match is not zero-sum; the final ``info["forfeit"]`` is the offender.

    ## Starting State
    Each hand's two cards are dealt from ``np_random`` at reset;
    ``reset(options={"cards": ["K", "J"]})`` fixes them (player 0's card first), and for a
    match a list of pairs fixes the first hands in order (the rest stay random).

    ## Episode End
    Terminates when the last hand is settled, or at an invalid action under ``"lose"``. Never
    truncates.

    ## Arguments
    ``invalid_action`` ("lose" or "random"), ``lenient`` (fall back to the last legal action
    named anywhere in the text), ``render_mode`` (None or "ansi"), ``num_hands`` (default 1),
    ``invalid_reward`` (default None: -2 * num_hands) and ``opponent_invalid_reward`` (default
    0.0), the returns of a forfeit (see Rewards), ``answer_prefix`` (default None; e.g.
    ``"\\boxed{"``: forced-answer mode, see ``envs.base``; ``$card`` in it is the acting player's
    card, so ``"\\boxed{$card"`` puts the card right before the action: ``\\boxed{Kbet}``),
    ``answer_choices`` (constrained answers, with a prefix).

    ## Roles
    Player 0 and player 1. Player 0 acts first in hands 1, 3, 5, ...; player 1 in hands 2, 4, ...
    With one hand (the default), player 0 is always the first actor.

    ## Prompt and answer format
    The prompt ends with ``envs.base.ANSWER_FORMAT``; answers are taken from the last
    ``\\boxed{..}``, else the last ``[..]``, else a short bare answer (``bet``, ``[bet]``,
    ``\\boxed{bet}`` all work).

    ## Version History
    * v0: initial version.
    """

    title = "Kuhn Poker"
    min_return = -2.0
    #: A forced-answer prefix may hold ``$card``, the acting player's card (e.g. ``\\boxed{$card``:
    #: the card is then the last token before the action, see :meth:`answer_values`).
    answer_fields = {"card": CARDS}

    def __init__(self, invalid_action: str = "lose", lenient: bool = False,
                 render_mode: str | None = None, num_hands: int = 1,
                 invalid_reward: float | None = None, opponent_invalid_reward: float = 0.0,
                 answer_prefix: str | None = None,
                 answer_choices: bool = False) -> None:
        super().__init__(invalid_action=invalid_action, lenient=lenient, render_mode=render_mode,
                         invalid_reward=invalid_reward, opponent_invalid_reward=opponent_invalid_reward,
                         answer_prefix=answer_prefix, answer_choices=answer_choices)
        if isinstance(num_hands, bool) or not isinstance(num_hands, int) or num_hands < 1:
            raise ValueError(f"num_hands={num_hands!r}: expected an integer >= 1")
        self.num_hands = num_hands
        # The worst possible match: losing a called bet in every hand.
        self.min_return = -2.0 * num_hands
        self.match = KuhnMatch([("J", "Q")] * num_hands)  # replaced at every reset

    # ----- hooks ---------------------------------------------------------------------------------
    def _new_game(self, options: dict[str, Any]) -> None:
        # Deal every hand first so that fixing some hands never shifts the draws of the others.
        deals = []
        for _ in range(self.num_hands):
            i, j = self.np_random.choice(len(CARDS), size=2, replace=False)
            deals.append((CARDS[int(i)], CARDS[int(j)]))
        if options.get("cards") is not None:
            fixed = _parse_cards(options["cards"])
            if len(fixed) > self.num_hands:
                raise ValueError(f"{len(fixed)} deals given for {self.num_hands} hand(s)")
            deals[:len(fixed)] = fixed
        self.match = KuhnMatch(deals)

    def current_player(self) -> int:
        return self.match.to_act()

    def legal_actions(self) -> list[str]:
        return list(self.match.legal())

    def answer_values(self) -> dict[str, str]:
        return {"card": self.match.card(self.match.to_act())}

    def _apply(self, action: str) -> None:
        self.match.play(action)

    def _is_over(self) -> bool:
        return self.match.over()

    def _returns(self) -> dict[int, float]:
        return {0: float(self.match.chips[0]), 1: float(self.match.chips[1])}

    def observation(self, player: int) -> str:
        m = self.match
        lines = [
            f"You are player {player} in a game of Kuhn Poker against player {1 - player}.",
            "Rules: the deck has three cards, J < Q < K. Each player antes 1 chip and gets one "
            "private card. The first to act may check or bet 1 chip. After a check, the other "
            "player may check (showdown) or bet 1 chip. A player facing a bet may call "
            "(showdown) or fold (the bettor wins the pot). At a showdown the higher card wins "
            "the pot: 1 chip from the loser if nobody bet, 2 chips after a called bet.",
        ]
        if self.num_hands > 1:
            lines.append(f"This match has {self.num_hands} hands; chips carry over and the "
                         "first to act alternates (player 0 starts hand 1). Your score is your "
                         f"net chips at the end. Your net chips so far: {m.chips[player]:+d}.")
            lines += [f"Hand {h + 1}: {_summary(r)}" for h, r in enumerate(m.records)]
            lines.append(f"Hand {m.hand + 1} of {self.num_hands}:")
        order = "first" if m.first() == player else "second"
        lines.append(f"You act {order}. Your card: {m.card(player)}.")
        acted = [f"player {(m.first() + i) % 2} {_PAST[a]}" for i, a in enumerate(m.history)]
        lines.append("Actions so far: " + (", ".join(acted) if acted else "none") + ".")
        lines.append("Legal actions: " + ", ".join(m.legal()))
        lines.append(ANSWER_FORMAT)
        return "\n".join(lines)

    def final_observation(self) -> str:
        hands = [f"Hand {h + 1}: {_summary(r)}" for h, r in enumerate(self.match.records)]
        return "\n".join(hands + [super().final_observation()])


def _summary(record: HandRecord) -> str:
    """One line per finished hand; cards are named only if they were shown down."""
    acted = ", ".join(f"player {(record.first + i) % 2} {_PAST[a]}" for i, a in enumerate(record.history))
    shown = (f" Showdown: player 0 had {record.cards[0]}, player 1 had {record.cards[1]}."
             if record.showdown else "")
    winner = 0 if record.chips[0] > 0 else 1
    return f"{acted}.{shown} Player {winner} won {abs(record.chips[0])} chip(s)."


class EquilibriumKuhnOpponent:
    """Plays the Nash equilibrium (``equilibrium_policy(alpha)``) from its seat in each hand."""

    name = "strong"

    def __init__(self, alpha: float = 1 / 3) -> None:
        self.policy = equilibrium_policy(alpha)

    def act(self, env: KuhnPokerEnv, rng: np.random.Generator) -> str:
        m = env.match
        probs = self.policy[infoset_key(m.card(m.to_act()), m.history)]
        legal = m.legal()
        u = rng.random()
        for action in legal[:-1]:
            u -= probs[action]
            if u < 0:
                return action
        return legal[-1]
