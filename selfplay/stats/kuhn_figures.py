"""Kuhn Poker's evaluation figures by metric name (pure): the sampled exploitability of the played
policy and the exact figures of a policy read from a model's probabilities."""

from __future__ import annotations

from envs import kuhn_eval
from selfplay.core import metric_names as names


def sampled_metrics(figures: kuhn_eval.SampledExploitability) -> dict[str, float]:
    """The sampled exploitability and its 95% interval (absent when not applicable: too many
    invalid replies) and the largest invalid share over the information sets (always)."""
    out = {names.KUHN_INVALID_SHARE_MAX: max(figures.invalid_share.values())}
    if figures.applicable:
        out.update({names.KUHN_EXPLOITABILITY: figures.exploitability,
                    names.KUHN_EXPLOITABILITY_LOW: figures.low,
                    names.KUHN_EXPLOITABILITY_HIGH: figures.high})
    return out


def exact_metrics(policy: kuhn_eval.Policy) -> dict[str, float]:
    """Exact figures of a full two-seat policy: value in each seat against the equilibrium, and
    exploitability."""
    eq = kuhn_eval.equilibrium_policy()
    return {names.KUHN_EXACT_VALUE_P0: kuhn_eval.expected_value(policy, eq),
            names.KUHN_EXACT_VALUE_P1: -kuhn_eval.expected_value(eq, policy),
            names.KUHN_EXACT_EXPLOITABILITY: kuhn_eval.exploitability(policy)}


__all__ = ["exact_metrics", "sampled_metrics"]
