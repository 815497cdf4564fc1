"""Several policies on one base model (``policies:``): which adapter plays a role, and checks.

A policy is a LoRA adapter of its own, mapped to the roles and opponent kinds it plays
(:class:`selfplay.core.config_schema.PolicyConfig`). Without ``policies:`` one policy, peft's
``default`` adapter (or the full model), plays every role: self-play with a shared policy.

Who plays a role is decided once, when an episode is planned (``EpisodeSpec.adapters``); each
turn's sample carries the adapter that generated it (``Sample.policy``), and the learner trains
each adapter on its own samples only, with its own optimiser and baselines. Pure: no Ray, no I/O.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from selfplay.core.config_schema import ConfigError, PolicyConfig
from selfplay.core.samples import INITIAL, SELF, opponent_kind

#: The adapter name of the one shared policy (peft's default) and ``Sample.policy`` without
#: ``policies:``.
DEFAULT_POLICY = "default"
#: An evaluation opponent played by another policy of the run: ``policy@<name>``.
POLICY_PREFIX = "policy@"

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def policy_names(policies: Sequence[PolicyConfig]) -> list[str]:
    """The adapters a run trains, in config order: ``[default]`` without ``policies:``."""
    return [p.name for p in policies] or [DEFAULT_POLICY]


def policy_opponent(name: str) -> str:
    """The evaluation opponent ``policy@<name>``: the roles it plays are written by adapter ``name``."""
    return POLICY_PREFIX + name


def opponent_policy(opponent: str) -> str | None:
    """``policy@b`` -> ``b``; None for any other opponent."""
    return opponent.removeprefix(POLICY_PREFIX) if opponent.startswith(POLICY_PREFIX) else None


def _kind(opponent: str) -> str:
    # Evaluation-only opponents (the step-0 policy, another adapter) face the adapter that plays
    # the role in self-play: the policy's own matchup.
    if opponent == INITIAL or opponent.startswith(POLICY_PREFIX):
        return SELF
    return opponent_kind(opponent)


def matching(policies: Sequence[PolicyConfig], role: int, opponent: str) -> list[str]:
    """The names of the policies mapped to ``role`` against ``opponent`` (any name or kind)."""
    kind = _kind(opponent)
    return [p.name for p in policies
            if (not p.roles or role in p.roles) and (not p.opponents or kind in p.opponents)]


def policy_for(policies: Sequence[PolicyConfig], role: int, opponent: str) -> str:
    """The adapter that plays ``role`` against ``opponent``; :data:`DEFAULT_POLICY` without
    ``policies:``. Exactly one policy must match (:func:`check_policies` ensures it at start-up)."""
    if not policies:
        return DEFAULT_POLICY
    names = matching(policies, role, opponent)
    if len(names) != 1:
        raise ValueError(f"role {role} against {opponent!r}: "
                         + (f"policies {', '.join(names)} all match" if names else "no policy matches"))
    return names[0]


def role_adapters(policies: Sequence[PolicyConfig], roles: Iterable[int], opponent: str) -> dict[int, str]:
    """``{role: adapter}`` for the roles the policy side plays; empty without ``policies:`` (the
    engine's one adapter, or its full weights, plays)."""
    return {r: policy_for(policies, r, opponent) for r in roles} if policies else {}


def describe(policies: Sequence[PolicyConfig]) -> str:
    """One line for the start-up log and ``--dry-run``: who plays what."""
    if not policies:
        return "policies: one, shared by every role (self-play)"

    def what(p: PolicyConfig) -> str:
        roles = f"role(s) {', '.join(map(str, p.roles))}" if p.roles else "every role"
        return f"{p.name} ({roles} against {', '.join(p.opponents) if p.opponents else 'any opponent'})"

    return f"policies: {len(policies)} LoRA adapters on one base: " + "; ".join(what(p) for p in policies)


def check_policies(policies: Sequence[PolicyConfig], players: dict[str, int], opponents: Iterable[str],
                   fixed: Iterable[str]) -> None:
    """Refuse, in one line naming the field, ``policies:`` that leave a matchup without a policy
    or give it two: every role of every environment (``players``: env id -> number of roles)
    against itself and each opponent in ``opponents`` (training's and evaluation's) must map to
    exactly one policy. Each policy's opponent kinds must be ``self`` or one of ``fixed``."""
    names = [p.name for p in policies]
    for i, p in enumerate(policies):
        key = f"policies[{i}]"
        if not isinstance(p.name, str) or not _NAME.match(p.name):
            raise ConfigError(f"{key}.name={p.name!r}: expected letters, digits, _ or - (an adapter's folder name)")
        if p.name in names[:i]:
            raise ConfigError(f"{key}.name={p.name!r}: two policies have this name")
        bad = [r for r in p.roles if not isinstance(r, int) or r < 0]
        if bad:
            raise ConfigError(f"{key}.roles={p.roles!r}: expected player ids 0, 1, ...")
        kinds = (SELF, *fixed)
        bad_kinds = [o for o in p.opponents if o not in kinds]
        if bad_kinds:
            raise ConfigError(f"{key}.opponents={p.opponents!r}: each one of {kinds}")
    kinds = [SELF, *sorted({opponent_kind(o) for o in opponents} - {SELF})]
    for env_id, n in players.items():
        for role in range(n):
            for kind in kinds:
                found = matching(policies, role, kind)
                if len(found) != 1:
                    raise ConfigError(
                        f"policies: role {role} of {env_id} against {kind} "
                        + (f"matches {', '.join(found)}: give each matchup one policy" if found else
                           "matches no policy: every role against itself and each opponent needs one"))
    unused = [p.name for p in policies
              if not any(matching([p], r, k) for n in players.values() for r in range(n) for k in kinds)]
    if unused:
        raise ConfigError(f"policies: {', '.join(unused)} never play(s) in this config's games and opponents")
