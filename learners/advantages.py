"""Advantage estimators: small classes behind one interface, chosen by ``advantage.type``.

``make_estimator(cfg)`` looks the type up in ``ESTIMATORS`` (an explicit registry, no import
magic). Every estimator fills ``Sample.advantage`` in place from ``Sample.ret``; the learner
then treats the advantage as a per-sample constant over that sample's response tokens.

Pure Python: no torch, no Ray, so the estimator can live wherever the driver wants it and its
state goes into checkpoints as plain JSON.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Any, Iterable

import envs
from selfplay.core.config_schema import AdvantageConfig
from selfplay.core import metric_names as names
from selfplay.core.samples import Sample, opponent_kind

__all__ = ["AdvantageEstimator", "RAE", "GroupNorm", "ESTIMATORS", "make_estimator"]

#: RAE's EMA decay lies in [DECAY_MIN, DECAY_MAX).
DECAY_MIN, DECAY_MAX = 0, 1
#: Where an RAE baseline starts: 0 (SPIRAL) or the mean return of its first batch.
RAE_INITS = ("zero", "first_batch")


def _units(samples: Iterable[Sample], key) -> dict[Any, list[Sample]]:
    """Samples grouped by ``key(sample)``, groups in order of first appearance (dicts keep it)."""
    groups: dict[Any, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[key(s)].append(s)
    return groups


class AdvantageEstimator(ABC):
    """The interface: ``compute`` fills advantages; the rest is state for checkpoints and logs."""

    @abstractmethod
    def compute(self, samples: list[Sample]) -> None:
        """Set ``sample.advantage`` for every sample (in place)."""

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (saved in ``state.json`` of a checkpoint)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def baselines(self) -> dict[tuple[str, str, int], float]:
        """Current baselines keyed by (env_id, opponent, role), for logging; empty if none."""
        return {}

    def last_stats(self) -> dict[str, float]:
        """Figures of the last ``compute`` for logging, by metric name; empty if none."""
        return {}


class RAE(AdvantageEstimator):
    """Role-conditioned advantage estimation (SPIRAL, arXiv 2506.24119, Sec. 3.3).

    For every (env_id, opponent, role) an exponential moving average ``b`` of that role's returns,
    starting at 0. For each (episode, role) in a batch, in order of first appearance::

        A = R - b[key]                                   # the baseline before this return ...
        b[key] <- decay * b[key] + (1 - decay) * R       # ... then the update

    and every sample of that (episode, role) gets ``A``. With ``init="first_batch"`` a key's
    baseline starts instead at the mean return of its units in the first batch that has it (not
    SPIRAL's; for runs whose early returns sit far from 0, e.g. a model that mostly forfeits at the
    start: from 0, every early advantage is negative, and under Adam "push down everything that
    was sampled" is a full-size step; that first batch's advantages then depend on their own
    returns, as a batch-mean baseline's do: a small bias, once). Subtracting the baseline *before* it
    sees ``R`` keeps the advantage unbiased (``b`` does not depend on ``R``); SPIRAL's code does the
    same ("get the baseline before updating to be unbiased"). The baseline is updated once per
    (episode, role), not once per turn, so a long game does not pull it further than a short one.

    Why the opponent is part of the key: returns against ``random`` are systematically higher than
    in self-play, so one shared baseline would give every game against random a positive advantage
    and every self-play game a negative one: variance, not signal. ``opponent`` is ``self``, a
    fixed opponent's name, or ``snapshot`` for any frozen snapshot (one kind, as snapshots come
    and go).

    Why not a group-mean baseline: in zero-sum self-play both roles of an episode are played by
    the same policy and their returns cancel (``R_0 = -R_1``), so the mean over an episode's
    samples is 0 and "normalising" does nothing; worse, the roles differ systematically
    (first-mover advantage, the dealer in poker), and a shared baseline credits a role's
    structural edge to the policy's actions. A separate baseline per role removes each role's
    expected return and leaves only how much better than usual this play was.
    """

    def __init__(self, decay: float = 0.95, init: str = "zero") -> None:
        if not DECAY_MIN <= decay < DECAY_MAX:
            raise ValueError(f"advantage.decay={decay!r}: expected in [{DECAY_MIN}, {DECAY_MAX})")
        if init not in RAE_INITS:
            raise ValueError(f"advantage.baseline_init={init!r}: expected one of {list(RAE_INITS)}")
        self.decay, self.init = decay, init
        self._b: dict[tuple[str, str, int], float] = {}

    @staticmethod
    def key(sample: Sample) -> tuple[str, str, int]:
        """The baseline a sample is credited against: (env_id, opponent kind, role)."""
        return sample.env_id, opponent_kind(sample.opponent), sample.role

    def compute(self, samples: list[Sample]) -> None:
        units = _units(samples, lambda s: (self.key(s), s.episode_id))
        if self.init == "first_batch":
            first: dict[tuple[str, str, int], list[float]] = defaultdict(list)
            for (key, _), group in units.items():
                if key not in self._b:
                    first[key].append(group[0].ret)
            self._b.update({key: sum(rets) / len(rets) for key, rets in first.items()})
        for (key, _), group in units.items():
            ret = group[0].ret  # all turns of one role in one episode share its return
            b = self._b.get(key, 0.0)
            self._b[key] = self.decay * b + (1.0 - self.decay) * ret
            for s in group:
                s.advantage = s.ret - b

    def state_dict(self) -> dict[str, Any]:
        # JSON keys must be strings: "env_id|opponent|role"; ids and names never contain "|".
        return {"decay": self.decay, "init": self.init,
                "baselines": {"|".join(map(str, key)): b for key, b in sorted(self._b.items())}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state.get("decay", self.decay))
        self.init = str(state.get("init", self.init))  # checkpoints from before the option: as configured
        self._b = {}
        for key, b in state.get("baselines", {}).items():
            env, opponent, role = key.split("|")
            self._b[(env, opponent, int(role))] = float(b)

    def baselines(self) -> dict[tuple[str, str, int], float]:
        return dict(self._b)


class GroupNorm(AdvantageEstimator):
    """Group-normalised advantages (GRPO, arXiv 2402.03300).

    Samples sharing ``group_id`` (one SAT instance, one LeaP problem) form a group; a sample with
    no ``group_id`` forms a group with its own episode only. In a game the group is further split
    by role: the two seats of a zero-sum game are different tasks, and in self-play their returns
    cancel, so a group mixing them would baseline each seat against its own negation. A task's
    players (LeaP's reasoning paths, SAT's one solver) are interchangeable and share one group.
    Each (episode, role) in the group contributes one return (its first sample's), so long
    episodes do not weigh more::

        A = (ret - mean(group returns)) / (std(group returns) + eps)     # normalize_std
        A =  ret - mean(group returns)                                   # otherwise

    ``std`` is the population standard deviation (ddof 0). A group of one return has advantage 0:
    there is nothing to compare it with. Stateless, so nothing to checkpoint.
    """

    def __init__(self, normalize_std: bool = True, eps: float = 1e-6) -> None:
        self.normalize_std = normalize_std
        self.eps = eps
        # Groups in the last ``compute`` and how many had one return only (advantage 0 for all:
        # ``trainer.filter_zero_advantage`` drops them).
        self._groups = self._uniform_groups = 0

    def compute(self, samples: list[Sample]) -> None:
        groups = _units(samples, lambda s: (s.env_id, s.group_id if s.group_id is not None
                                            else f"episode:{s.episode_id}",
                                            None if s.env_id in envs.TASKS else s.role))
        self._groups, self._uniform_groups = len(groups), 0
        for group in groups.values():
            units = _units(group, lambda s: (s.episode_id, s.role))
            rets = [unit[0].ret for unit in units.values()]
            mean = sum(rets) / len(rets)
            std = math.sqrt(sum((r - mean) ** 2 for r in rets) / len(rets))
            # All returns equal (every sample of a SAT problem solved, or none): no signal.
            self._uniform_groups += std == 0.0
            for s in group:
                a = 0.0 if len(rets) == 1 else s.ret - mean
                s.advantage = a / (std + self.eps) if self.normalize_std else a

    def last_stats(self) -> dict[str, float]:
        return {names.GROUPS: float(self._groups), names.UNIFORM_GROUPS: float(self._uniform_groups)}


#: ``advantage.type`` -> how to build the estimator from its config.
ESTIMATORS = {
    "rae": lambda cfg: RAE(decay=cfg.decay, init=cfg.baseline_init),
    "grpo": lambda cfg: GroupNorm(normalize_std=cfg.normalize_std),
}


def make_estimator(cfg: AdvantageConfig) -> AdvantageEstimator:
    """The estimator named by ``cfg.type``."""
    try:
        build = ESTIMATORS[cfg.type]
    except KeyError:
        raise ValueError(f"advantage.type={cfg.type!r}: expected one of {sorted(ESTIMATORS)}") from None
    return build(cfg)
