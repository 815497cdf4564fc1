"""Exact evaluation of Kuhn Poker policies: expected value, best response, exploitability.

A *policy* is a mapping ``{infoset key: {action: probability}}`` over the 12 information sets
of one hand (:data:`INFOSETS`). A key is ``"<card>:<public history>"`` as made by
:func:`envs.kuhn_poker.infoset_key`: the first actor (P0) decides at ``"J:"`` and
``"J:check,bet"``, the second actor (P1) at ``"J:check"`` and ``"J:bet"``, and likewise for Q
and K. A policy for one seat needs only that seat's six keys; a full two-seat policy has all
twelve. Actions missing from an entry have probability 0. Seats here are positions in the hand
(P0 acts first), which in the default one-hand environment are players 0 and 1.

Everything is computed by walking the 6 equally likely deals and the tiny betting tree, so
values are exact up to float rounding (no sampling).
"""

from __future__ import annotations

from itertools import permutations
from typing import Any, Mapping, NamedTuple

from envs.kuhn_poker import CARDS, DECISIONS, KuhnPokerEnv, equilibrium_policy, hand_payoff, infoset_key

Policy = Mapping[str, Mapping[str, float]]
DEALS: tuple[tuple[str, str], ...] = tuple(permutations(CARDS, 2))  # (P0 card, P1 card), 6 deals


class Infoset(NamedTuple):
    """One information set: its key, the actor's card, the public history, the seat, the actions."""

    key: str
    card: str
    history: tuple[str, ...]
    seat: int
    actions: tuple[str, ...]


INFOSETS: tuple[Infoset, ...] = tuple(
    Infoset(infoset_key(card, history), card, history, len(history) % 2, actions)
    for card in CARDS for history, actions in DECISIONS.items()
)
INFOSET_KEYS: tuple[str, ...] = tuple(i.key for i in INFOSETS)
_BY_KEY = {i.key: i for i in INFOSETS}

__all__ = ["INFOSETS", "INFOSET_KEYS", "Infoset", "Policy", "best_response", "best_response_value",
           "equilibrium_policy", "expected_value", "exploitability", "infoset_prompts", "uniform_policy"]


def _probs(policy: Policy, key: str) -> dict[str, float]:
    """The action distribution at ``key``, checked: legal actions only, non-negative, sums to 1."""
    if key not in policy:
        raise ValueError(f"policy has no entry for information set {key!r}")
    actions = _BY_KEY[key].actions
    dist = dict(policy[key])
    ok = set(dist) <= set(actions) and all(p >= 0 for p in dist.values())
    if not ok or abs(sum(dist.values()) - 1) > 1e-9:
        raise ValueError(f"policy[{key!r}] = {dist}: need probabilities over {actions} summing to 1")
    return {a: float(dist.get(a, 0.0)) for a in actions}


def uniform_policy() -> dict[str, dict[str, float]]:
    """Both actions equally likely at every information set."""
    return {i.key: {a: 1 / len(i.actions) for a in i.actions} for i in INFOSETS}


def expected_value(policy0: Policy, policy1: Policy) -> float:
    """Player 0's (the first actor's) expected chips when ``policy0`` plays P0 and ``policy1`` P1."""

    def value(cards: tuple[str, str], history: tuple[str, ...]) -> float:
        if history not in DECISIONS:
            return float(hand_payoff(cards[0], cards[1], history))
        seat = len(history) % 2
        dist = _probs(policy0 if seat == 0 else policy1, infoset_key(cards[seat], history))
        return sum(p * value(cards, history + (a,)) for a, p in dist.items() if p > 0)

    return sum(value(deal, ()) for deal in DEALS) / len(DEALS)


def _best_response(policy: Policy, seat: int) -> tuple[float, dict[str, dict[str, float]]]:
    """Value and a pure best-response policy for ``seat`` against ``policy`` in the other seat."""
    sign = 1 if seat == 0 else -1
    response: dict[str, dict[str, float]] = {}

    def values(card: str, history: tuple[str, ...], reach: dict[str, float]) -> dict[str, float]:
        """For each opponent card ``o``: the responder's payoff below ``history``, weighted by
        ``reach[o]``, the probability that the opponent holding ``o`` played its part of
        ``history``.

        The responder's information set at ``history`` holds exactly the two deals that differ
        in the opponent's card. Its best action maximises the *reach-weighted* sum over them: an
        opponent card that rarely leads here must count for little (weighting only at the
        opponent's nodes above, after the choice, gives a lower bound, not the best response).
        Perfect recall makes this backward pass exact.
        """
        if history not in DECISIONS:
            deals = {o: (card, o) if seat == 0 else (o, card) for o in reach}
            return {o: r * sign * hand_payoff(*deals[o], history) for o, r in reach.items()}
        actions = DECISIONS[history]
        if len(history) % 2 == seat:
            options = {a: values(card, history + (a,), reach) for a in actions}
            best = max(actions, key=lambda a: sum(options[a].values()))
            response[infoset_key(card, history)] = {a: float(a == best) for a in actions}
            return options[best]
        out = dict.fromkeys(reach, 0.0)
        for a in actions:
            child = values(card, history + (a,),
                           {o: r * _probs(policy, infoset_key(o, history))[a] for o, r in reach.items()})
            for o in out:
                out[o] += child[o]
        return out

    # The full backward pass visits every responder information set, reached or not.
    total = sum(sum(values(card, (), {o: 1.0 for o in CARDS if o != card}).values()) for card in CARDS)
    return total / len(DEALS), response


def best_response_value(policy: Policy, seat: int) -> float:
    """The expected chips of a best response playing ``seat`` (0 = first actor) against ``policy``
    playing the other seat, from the responder's point of view."""
    if seat not in (0, 1):
        raise ValueError(f"seat={seat!r}: expected 0 or 1")
    return _best_response(policy, seat)[0]


def best_response(policy: Policy, seat: int) -> dict[str, dict[str, float]]:
    """A pure best response for ``seat`` against ``policy`` in the other seat (ties: first action)."""
    if seat not in (0, 1):
        raise ValueError(f"seat={seat!r}: expected 0 or 1")
    return _best_response(policy, seat)[1]


def exploitability(policy: Policy) -> float:
    """Exploitability of a full two-seat policy, in chips per hand.

    Defined as OpenSpiel's NashConv / 2: ``(best_response_value(policy, 0) +
    best_response_value(policy, 1)) / 2``, the average gain a best responder gets when the
    policy plays the other seat. The policy's own values cancel because the game is zero-sum,
    so this is 0 exactly at a Nash equilibrium and positive otherwise.
    """
    return (best_response_value(policy, 0) + best_response_value(policy, 1)) / 2


def infoset_prompts(env_kwargs: dict[str, Any] | None = None) -> dict[str, tuple[str, list[str]]]:
    """The prompt and legal actions a player sees at each of the 12 information sets.

    Built by driving a real :class:`KuhnPokerEnv` (``env_kwargs`` passed through, first hand
    only) with a fixed deal along the public history, so a language model can be scored on the
    legal actions of each prompt and its answers turned into a policy for the functions above.
    """
    prompts: dict[str, tuple[str, list[str]]] = {}
    for info in INFOSETS:
        # The opponent's card is hidden from the prompt, so any other card gives the same text.
        other = next(c for c in CARDS if c != info.card)
        cards = [info.card, other] if info.seat == 0 else [other, info.card]
        env = KuhnPokerEnv(**(env_kwargs or {}))
        obs, step_info = env.reset(seed=0, options={"cards": cards})
        for action in info.history:
            obs, _, _, _, step_info = env.step(action)
        assert step_info["player"] == info.seat and tuple(step_info["legal_actions"]) == info.actions
        prompts[info.key] = (obs, list(step_info["legal_actions"]))
    return prompts
