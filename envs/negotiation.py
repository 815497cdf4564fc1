"""Simple Negotiation: two players with private valuations trade resources for a few turns.

The rules are the pure :class:`NegotiationGame`; the environment is a thin text adapter. Unlike
SPIRAL's version, any feasible offer is legal (not three sampled ones), and an offer's
feasibility is the only test: give up to what you own, ask up to what the other player owns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from envs.actions import candidate, normalise
from envs.base import ANSWER_FORMAT, TurnBasedTextEnv

RESOURCES = ("wood", "stone", "wheat", "sheep", "gold")
MAX_QUANTITY = 5  # starting quantities are drawn from 0..MAX_QUANTITY
MAX_VALUE = 10  # values per unit are drawn from 1..MAX_VALUE
BARE_OFFER_CHARS = 200  # a single-line answer up to this long is read as a bare offer

_ITEM = r"[0-9]{1,6}\s*[a-z]+"  # six digits at most: int() of a huge digit string raises
_SIDE = re.compile(rf"{_ITEM}(?:\s+{_ITEM})*")
_OFFER = re.compile(r"(?:i\s+)?(?:offer|propose|trade|give)?:?\s*(.+?)\s+for\s+(.+)")
_SEPARATORS = re.compile(r"\s*(?:,|;|&|\+|\band\b)\s*")
_DENY = ("deny", "reject", "decline")


@dataclass(frozen=True)
class Offer:
    """``proposer`` gives ``give`` and receives ``ask``; both are quantities per resource."""

    proposer: int
    give: tuple[int, ...]
    ask: tuple[int, ...]

    def text(self) -> str:
        """Canonical form, e.g. ``offer 2 wood 1 gold for 3 sheep``."""
        return f"offer {_side_text(self.give)} for {_side_text(self.ask)}"


def _side_text(amounts: Sequence[int]) -> str:
    items = [f"{n} {r}" for r, n in zip(RESOURCES, amounts) if n > 0]
    return " ".join(items) if items else "nothing"


def _parse_side(text: str) -> tuple[int, ...] | None:
    """``"2 wood, 1 gold"`` -> quantities per resource; plurals and repeats tolerated."""
    text = _SEPARATORS.sub(" ", text).strip()
    if text in ("nothing", "none"):
        return (0,) * len(RESOURCES)
    if not _SIDE.fullmatch(text):
        return None
    amounts = [0] * len(RESOURCES)
    for count, name in re.findall(r"([0-9]+)\s*([a-z]+)", text):
        if name not in RESOURCES and name.endswith("s"):
            name = name[:-1]
        if name not in RESOURCES:
            return None
        amounts[RESOURCES.index(name)] += int(count)
    return tuple(amounts)


def value_of(amounts: Sequence[int], values: Sequence[int]) -> int:
    return sum(n * v for n, v in zip(amounts, values))


class NegotiationGame:
    """The rules: alternate turns (player 0 first), each an offer or an answer to the pending one.

    An accepted offer is carried out at once and the game goes on; it ends after ``max_turns``
    actions. An offer is pending only until the other player's next action (a counter-offer
    denies it).
    """

    def __init__(self, inventories: Sequence[Sequence[int]], values: Sequence[Sequence[int]],
                 max_turns: int) -> None:
        self.start = [tuple(int(n) for n in inv) for inv in inventories]
        self.inventories = [list(inv) for inv in self.start]
        self.values = [tuple(int(v) for v in vals) for vals in values]
        self.max_turns = max_turns
        self.turn = 0
        self.pending: Offer | None = None
        self.history: list[tuple[int, str]] = []

    def to_act(self) -> int:
        return self.turn % 2

    def over(self) -> bool:
        return self.turn >= self.max_turns

    def feasible(self, offer: Offer) -> bool:
        """Something changes hands and each side owns what it would give."""
        if not any(offer.give) and not any(offer.ask):
            return False
        mine, theirs = self.inventories[offer.proposer], self.inventories[1 - offer.proposer]
        return (all(g <= m for g, m in zip(offer.give, mine))
                and all(a <= t for a, t in zip(offer.ask, theirs)))

    def can_accept(self) -> bool:
        offer = self.pending
        return offer is not None and offer.proposer != self.to_act() and self.feasible(offer)

    def play(self, action: str | Offer) -> None:
        """Play ``"accept"``, ``"deny"`` or an :class:`Offer`; raises ValueError if not legal."""
        player = self.to_act()
        if isinstance(action, Offer):
            if action.proposer != player or not self.feasible(action):
                raise ValueError(f"infeasible offer {action}")
            self.pending, text = action, action.text()
        elif action == "accept" and self.can_accept():
            offer = self.pending
            for r, (give, ask) in enumerate(zip(offer.give, offer.ask)):
                self.inventories[offer.proposer][r] += ask - give
                self.inventories[1 - offer.proposer][r] += give - ask
            self.pending, text = None, "accept"
        elif action == "deny" and self.pending is not None:
            self.pending, text = None, "deny"
        else:
            raise ValueError(f"{action!r} is not legal now")
        self.history.append((player, text))
        self.turn += 1

    def gain(self, player: int) -> int:
        """Change of ``player``'s inventory value at its own valuation."""
        values = self.values[player]
        return value_of(self.inventories[player], values) - value_of(self.start[player], values)

    def scale(self) -> int:
        """The largest ``|gain(0) - gain(1)|`` any trades could reach in this deal.

        ``gain(0) - gain(1) = sum_r (v0_r + v1_r) * d_r`` where player 0's change ``d_r`` lies in
        ``[-own0_r, own1_r]``, so the extremes are all of one player's goods going to the other.
        """
        both = [a + b for a, b in zip(*self.values)]
        return max(value_of(self.start[0], both), value_of(self.start[1], both), 1)

    def returns(self) -> tuple[float, float]:
        r0 = (self.gain(0) - self.gain(1)) / self.scale()
        return r0, -r0


def _amounts(given: Any) -> tuple[int, ...]:
    """Per-resource quantities from a list in RESOURCES order or a ``{name: quantity}`` dict."""
    if isinstance(given, dict):
        given = [given.get(r, given.get(r.capitalize(), 0)) for r in RESOURCES]
    amounts = tuple(int(n) for n in given)
    if len(amounts) != len(RESOURCES) or min(amounts) < 0:
        raise ValueError(f"{given}: need {len(RESOURCES)} non-negative quantities for {RESOURCES}")
    return amounts


class SimpleNegotiationEnv(TurnBasedTextEnv):
    """Simple Negotiation: trade resources whose worth only you know.

    ## Description
    Five resources (Wood, Stone, Wheat, Sheep, Gold); each player owns some and values each unit
    privately. The players alternate, ``max_turns`` actions in all, player 0 first. A turn is an
    offer of any feasible quantities, or an answer to the waiting offer: accept (the trade
    happens at once and play goes on) or deny; a new offer also denies a waiting one.

    ## Action Space
    ``Text``, open-ended (``legal_actions()`` is None): ``offer <give> for <ask>``, each side a
    list of ``<quantity> <resource>`` or ``nothing`` (not both), canonically
    ``offer 2 wood 1 gold for 3 sheep``; case, spacing, plurals, commas and "and" are tolerated.
    ``accept`` / ``deny`` (or reject, decline) only while an offer waits. Unparseable or
    infeasible offers (more than you own, or than the other owns) are invalid.

    ## Observation Space
    ``Text`` (ASCII): rules, own values and inventory, the other's inventory (never its values),
    the history, the waiting offer, the action grammar, the answer format and a feasible example.

    ## Rewards
    Zero until the end. With ``g_p`` player p's change of inventory value at its own values,
    ``r0 = (g0 - g1) / S`` and ``r1 = -r0`` (zero-sum: a trade pays if you gain more than the
    other), where ``S`` is the deal's largest possible ``|g0 - g1|`` (all of one player's goods
    going to the other), so returns lie in [-1, 1]. An invalid action under ``"lose"`` forfeits
    the game (``envs.base``): the offender gets ``invalid_reward`` (default ``min_return`` = -1,
    at least as bad as the worst possible trading) and the opponent ``opponent_invalid_reward``
    (default 0; trades already made count for neither), so with the defaults a forfeited game is
    not zero-sum; the final ``info["forfeit"]`` is the offender.

    ## Starting State
    Quantities 0..5 and values 1..10 per resource and player from ``np_random`` (a player with
    nothing gets 1 unit). ``reset(options={"inventories": [[..], [..]], "values": [[..], [..]]})``
    fixes them (lists in resource order, or ``{name: n}`` dicts).

    ## Episode End
    Terminates after ``max_turns`` actions, or at an invalid action under ``"lose"``.

    ## Arguments
    ``invalid_action``, ``lenient`` (unused: there is no action list to fall back on),
    ``render_mode``, ``max_turns=8``, ``public_inventories=True`` (show the other's quantities;
    offers must fit them, so hiding them turns legality into a guess), ``invalid_reward``
    (default None: -1) and ``opponent_invalid_reward`` (default 0.0), the returns of a forfeit
    (see Rewards); ``answer_prefix`` (default None; e.g. ``"\\boxed{"``: forced-answer mode, see
    ``envs.base``; an offer then gets up to 32 tokens).

    ## Roles
    Player 0 (moves on odd-numbered turns, first) and player 1.

    ## Prompt and answer format
    The prompt ends with ``envs.base.ANSWER_FORMAT`` plus one line with a feasible example such
    as ``For example: \\boxed{offer 1 wood for 1 sheep}``.

    ## Version History
    * v0: initial version.
    """

    title = "Simple Negotiation"
    min_return = -1.0

    def __init__(self, invalid_action: str = "lose", lenient: bool = False,
                 render_mode: str | None = None, max_turns: int = 8,
                 public_inventories: bool = True, invalid_reward: float | None = None,
                 opponent_invalid_reward: float = 0.0, answer_prefix: str | None = None) -> None:
        super().__init__(invalid_action=invalid_action, lenient=lenient, render_mode=render_mode,
                         invalid_reward=invalid_reward, opponent_invalid_reward=opponent_invalid_reward,
                         answer_prefix=answer_prefix)
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns={max_turns!r}: expected an integer >= 1")
        self.max_turns = max_turns
        self.public_inventories = public_inventories
        self.game = NegotiationGame([[1] * len(RESOURCES)] * 2, [[1] * len(RESOURCES)] * 2, max_turns)

    # ----- hooks ---------------------------------------------------------------------------------
    def _new_game(self, options: dict[str, Any]) -> None:
        # Draw everything first so that fixing one part never shifts the draws of the other.
        n = len(RESOURCES)
        inventories = [list(self.np_random.integers(0, MAX_QUANTITY + 1, size=n)) for _ in range(2)]
        values = [list(self.np_random.integers(1, MAX_VALUE + 1, size=n)) for _ in range(2)]
        for inv in inventories:  # everyone starts with something, so an offer always exists
            if not sum(inv):
                inv[int(self.np_random.integers(n))] = 1
        if options.get("inventories") is not None:
            inventories = [_amounts(i) for i in options["inventories"]]
        if options.get("values") is not None:
            values = [_amounts(v) for v in options["values"]]
        if len(inventories) != 2 or len(values) != 2 or not sum(map(sum, inventories)):
            raise ValueError("need two inventories (not both empty) and two value lists")
        self.game = NegotiationGame(inventories, values, self.max_turns)

    def current_player(self) -> int:
        return self.game.to_act()

    def legal_actions(self) -> None:
        return None

    def parse_action(self, text: str) -> str | None:
        """The canonical action ``text`` commits to, or None if unparseable or not legal now."""
        cand = candidate(text)
        single_line = isinstance(text, str) and "\n" not in text.strip()
        if cand is None and single_line and len(text) <= BARE_OFFER_CHARS:
            # A bare offer may be longer than a generic bare answer (actions.BARE_MAX_CHARS), as
            # canonical offers from opponents are; the strict grammar keeps prose out.
            cand = normalise(text)
        if cand == "accept":
            return "accept" if self.game.can_accept() else None
        if cand in _DENY:
            return "deny" if self.game.pending is not None else None
        offer = self._parse_offer(cand or "")
        return offer.text() if offer is not None else None

    def _parse_offer(self, cand: str) -> Offer | None:
        m = _OFFER.fullmatch(cand)
        give, ask = (_parse_side(m.group(1)), _parse_side(m.group(2))) if m else (None, None)
        offer = Offer(self.game.to_act(), give, ask) if give is not None and ask is not None else None
        return offer if offer is not None and self.game.feasible(offer) else None

    def random_action(self) -> str:
        """Accept or deny a waiting offer (a third each), else a random feasible offer."""
        g, rng = self.game, self.np_random
        if g.pending is not None:
            choice = int(rng.integers(3))
            if choice == 0 and g.can_accept():
                return "accept"
            if choice == 1:
                return "deny"
        me = g.to_act()
        mine, theirs = g.inventories[me], g.inventories[1 - me]
        for _ in range(100):
            # Each resource joins a side with probability 0.3, in a random feasible quantity.
            give = tuple(int(rng.integers(1, m + 1)) if m and rng.random() < 0.3 else 0 for m in mine)
            ask = tuple(int(rng.integers(1, t + 1)) if t and rng.random() < 0.3 else 0 for t in theirs)
            if any(give) or any(ask):
                return Offer(me, give, ask).text()
        return _example_offer(g, me).text()

    def _apply(self, action: str) -> None:
        # Only "accept", "deny" or canonical offers (parsed or generated) reach here.
        self.game.play(action if action in ("accept", "deny") else self._parse_offer(action))

    def _is_over(self) -> bool:
        return self.game.over()

    def _returns(self) -> dict[int, float]:
        r0, r1 = self.game.returns()
        return {0: r0, 1: r1}

    def observation(self, player: int) -> str:
        g, other = self.game, 1 - player
        own, values = g.inventories[player], g.values[player]
        lines = [
            f"You are player {player} in Simple Negotiation against player {other}.",
            f"Rules: the players take turns, {g.max_turns} turns in all; this is turn {g.turn + 1}. "
            "On your turn, make one offer, or answer the offer waiting for you with accept (the "
            "trade happens at once) or deny; a new offer also denies it. You may give up to what "
            "you own and ask up to what the other player owns. Each player values each resource "
            "differently and knows only its own values.",
            "Score: your gain is the change in your inventory's value at your values; your "
            "result is your gain minus the other player's gain at its values.",
            f"Your values per unit: {_listing(values)}",
            f"Your inventory: {_listing(own)} (worth {value_of(own, values)}; "
            f"at the start {value_of(g.start[player], values)}).",
        ]
        if self.public_inventories:
            lines.append(f"Player {other}'s inventory: {_listing(g.inventories[other])}.")
        lines.append("History:" + ("" if g.history else " none."))
        lines += [f"  turn {t + 1}, player {p}: {a}" for t, (p, a) in enumerate(g.history)]
        waiting = g.pending is not None and g.pending.proposer == other
        lines.append(f"Offer waiting for you: you would get {_side_text(g.pending.give)} and give "
                     f"{_side_text(g.pending.ask)}." if waiting else "No offer is waiting for you.")
        lines.append('Actions: "offer <what you give> for <what you ask>", each side a list of '
                     'quantities and resources or "nothing" (e.g. "offer 2 wood 1 gold for 3 sheep")'
                     + ('; or "accept" or "deny".' if waiting else "."))
        lines += [ANSWER_FORMAT, f"For example: \\boxed{{{_example_offer(g, player).text()}}}"]
        return "\n".join(lines)


def _listing(amounts: Sequence[int]) -> str:
    return ", ".join(f"{r.capitalize()} {n}" for r, n in zip(RESOURCES, amounts))


def _unit(resource: int | None, units: int = 1) -> tuple[int, ...]:
    """``units`` of one resource (none at all for None)."""
    return tuple(units if r == resource else 0 for r in range(len(RESOURCES)))


def _example_offer(game: NegotiationGame, player: int) -> Offer:
    """A small feasible offer: 1 unit of your first resource for 1 of another the other owns."""
    mine, theirs = game.inventories[player], game.inventories[1 - player]
    give = next((r for r, n in enumerate(mine) if n), None)
    asks = [r for r, n in enumerate(theirs) if n]
    ask = next((r for r in asks if r != give), asks[0] if asks else None)
    return Offer(player, _unit(give), _unit(ask))


class HeuristicNegotiationOpponent:
    """Accepts offers that raise its own value; otherwise offers its least-valued goods for its
    most-valued one (as many units as still leave it better off), else asks for a gift."""

    name = "strong"

    def act(self, env: SimpleNegotiationEnv, rng: np.random.Generator) -> str:
        g = env.game
        me = g.to_act()
        values, mine, theirs = g.values[me], g.inventories[me], g.inventories[1 - me]
        if g.can_accept() and value_of(g.pending.give, values) > value_of(g.pending.ask, values):
            return "accept"
        owned = [r for r, n in enumerate(mine) if n]
        wanted = [r for r, n in enumerate(theirs) if n]
        cheap = min(owned, key=lambda r: values[r], default=None)
        dear = max(wanted, key=lambda r: values[r], default=None)
        if cheap is not None and dear is not None and values[cheap] < values[dear]:
            # The most units of the cheap good still worth less to it than one dear unit.
            units = min(mine[cheap], (values[dear] - 1) // max(values[cheap], 1) or 1)
            return Offer(me, _unit(cheap, units), _unit(dear)).text()
        if g.pending is not None:
            return "deny"
        # Nothing worth trading: ask for a gift, or (owning everything) give away the cheapest.
        return Offer(me, _unit(None if dear is not None else cheap), _unit(dear)).text()
