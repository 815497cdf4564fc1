"""Exact evaluation of Kuhn Poker policies: expected value, best response, exploitability.

A *policy* is a mapping ``{infoset key: {action: probability}}`` over the 12 information sets
of one hand (:data:`INFOSETS`). A key is ``"<card>:<public history>"`` as made by
:func:`envs.kuhn_poker.infoset_key`: the first actor (P0) decides at ``"J:"`` and
``"J:check,bet"``, the second actor (P1) at ``"J:check"`` and ``"J:bet"``, and likewise for Q
and K. A policy for one seat needs only that seat's six keys; a full two-seat policy has all
twelve. Actions missing from an entry have probability 0. Seats here are positions in the hand
(P0 acts first), which in the default one-hand environment are players 0 and 1.

Everything is computed by walking the 6 equally likely deals and the tiny betting tree, so
values are exact up to float rounding. :func:`sampled_exploitability` applies the same exact
computation to the action frequencies of sampled replies (a model's played policy), with a
bootstrap interval and a refusal to score a policy that mostly fails the answer format.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

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
           "decision_points", "equilibrium_policy", "expected_value", "exploitability", "infoset_env", "infoset_prompts",
           "MAX_INVALID_SHARE", "SampledExploitability", "sampled_exploitability", "uniform_policy"]


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


def decision_points() -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Each information set as the reset options (a fixed deal) and the public actions that lead
    to it. The opponent's card is hidden from the prompt, so any other card gives the same text."""
    points = {}
    for info in INFOSETS:
        other = next(c for c in CARDS if c != info.card)
        points[info.key] = ({"cards": [info.card, other] if info.seat == 0 else [other, info.card]},
                            list(info.history))
    return points


def infoset_env(info: Infoset, env_kwargs: dict[str, Any] | None = None) -> tuple[KuhnPokerEnv, str, dict[str, Any]]:
    """A real :class:`KuhnPokerEnv` (``env_kwargs`` passed through, first hand only) driven to
    ``info`` (:func:`decision_points`): the env, the observation and the ``info`` dict of the
    player to act there."""
    options, history = decision_points()[info.key]
    env = KuhnPokerEnv(**(env_kwargs or {}))
    obs, step_info = env.reset(seed=0, options=options)
    for action in history:
        obs, _, _, _, step_info = env.step(action)
    assert step_info["player"] == info.seat and tuple(step_info["legal_actions"]) == info.actions
    return env, obs, step_info


def infoset_prompts(env_kwargs: dict[str, Any] | None = None) -> dict[str, tuple[str, list[str]]]:
    """The prompt and legal actions a player sees at each of the 12 information sets
    (:func:`infoset_env`), so a language model can be scored on the legal actions of each prompt
    and its answers turned into a policy for the functions above."""
    prompts: dict[str, tuple[str, list[str]]] = {}
    for info in INFOSETS:
        _, obs, step_info = infoset_env(info, env_kwargs)
        prompts[info.key] = (obs, list(step_info["legal_actions"]))
    return prompts


# ----- exploitability of a sampled policy --------------------------------------------------------

#: Above this share of invalid replies at any information set, a sampled exploitability is not
#: reported: a policy that mostly fails the format must never score well on its valid remainder.
MAX_INVALID_SHARE = 0.05


@dataclass(frozen=True)
class SampledExploitability:
    """Exploitability of the action frequencies of sampled replies, with a bootstrap interval.

    ``exploitability``, ``low`` and ``high`` are None (not applicable) when some information set
    has an invalid share above ``max_invalid``; ``invalid_share`` is per information set.
    """

    exploitability: float | None
    low: float | None
    high: float | None
    invalid_share: dict[str, float]
    replies: int
    policy: dict[str, dict[str, float]]

    @property
    def applicable(self) -> bool:
        return self.exploitability is not None

    def describe(self) -> str:
        """One line: the figure and its 95% interval, or why there is none."""
        worst = max(self.invalid_share, key=self.invalid_share.get)
        if self.exploitability is None:
            return (f"n/a (invalid share {self.invalid_share[worst]:.2f} at {worst!r} > "
                    f"{MAX_INVALID_SHARE}; {self.replies} replies per information set)")
        return (f"{self.exploitability:.3f} [95% CI {self.low:.3f}, {self.high:.3f}] "
                f"({self.replies} replies per information set, max invalid share "
                f"{self.invalid_share[worst]:.2f})")


def _frequencies(actions: Sequence[str | None], legal: tuple[str, ...]) -> dict[str, float] | None:
    """Valid replies' action frequencies over ``legal`` (None if there is no valid reply)."""
    valid = [a for a in actions if a is not None]
    if not valid:
        return None
    return {a: valid.count(a) / len(valid) for a in legal}


def sampled_exploitability(replies: Mapping[str, Sequence[str | None]], boots: int = 1000,
                           seed: int = 0, max_invalid: float = MAX_INVALID_SHARE) -> SampledExploitability:
    """Exploitability of the policy that sampled ``replies`` (``{infoset key: [the action each
    reply named, None if invalid]}``, every information set present, the same number of replies
    each), computed exactly on the valid replies' renormalised frequencies, with a 95% percentile
    bootstrap interval: each information set's replies are resampled with replacement ``boots``
    times (the basic bootstrap, which corrects for the plug-in estimate's upward bias: near an
    equilibrium sampling noise alone looks exploitable)."""
    missing = [k for k in INFOSET_KEYS if k not in replies]
    if missing:
        raise ValueError(f"replies: no replies for information sets {missing}")
    counts = {len(replies[k]) for k in INFOSET_KEYS}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"replies: need the same number (>= 1) of replies at every information set, got {sorted(counts)}")
    n = counts.pop()
    invalid = {k: sum(a is None for a in replies[k]) / n for k in INFOSET_KEYS}
    policy = {i.key: _frequencies(replies[i.key], i.actions) for i in INFOSETS}
    if max(invalid.values()) > max_invalid or any(p is None for p in policy.values()):
        return SampledExploitability(None, None, None, invalid, n, {k: v for k, v in policy.items() if v})
    rng = np.random.default_rng(seed)
    # Each information set's valid replies as 0/1 for its first action; an invalid reply drawn
    # in a resample is dropped from the renormalisation, like in the point estimate.
    coded = {i.key: np.array([-1 if a is None else int(a != i.actions[0]) for a in replies[i.key]])
             for i in INFOSETS}
    estimates = []
    for _ in range(boots):
        boot = {}
        for i in INFOSETS:
            draw = rng.choice(coded[i.key], size=n)
            valid = draw[draw >= 0]
            p = float((valid == 0).mean()) if valid.size else 1 / len(i.actions)
            boot[i.key] = {i.actions[0]: p, i.actions[1]: 1 - p}
        estimates.append(exploitability(boot))
    # The basic (reflected) bootstrap interval: the plug-in estimate sits above the truth by
    # about as much as the resamples sit above the estimate, so the percentile interval would
    # miss an equilibrium policy (true value 0) every time. Exploitability is never negative.
    point = exploitability(policy)
    q_low, q_high = np.percentile(estimates, [2.5, 97.5])
    return SampledExploitability(point, max(0.0, 2 * point - float(q_high)), max(0.0, 2 * point - float(q_low)),
                                 invalid, n, policy)
