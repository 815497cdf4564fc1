"""Opponent pool: frozen snapshots of the policy and fixed opponents, each with a skill rating.

Why ratings: in self-play the policy plays itself, so its win rate is ~50% forever whether it is
improving or not. Ratings learned from games against a fixed anchor ("random", "strong") and
against its own past snapshots show whether it actually gets stronger: a rising policy rating
above its older snapshots is progress, a flat one is not.

Members are ``"policy"`` (the learning policy), the fixed opponents named at construction, and
snapshots ``"snapshot@<step>"`` (each holding a checkpoint folder given by the caller). Ratings are
openskill's Plackett-Luce (mu, sigma); ``ordinal = mu - 3 sigma`` is a conservative skill estimate.
A game's result for a player is the sign of its return (positive win, zero draw, negative loss),
except that a game forfeited by an invalid action is a loss for its author and a win for the
other side whatever the returns (``Episode.result``, as in ``selfplay.stats.episode_stats``).
Metrics: ``pool/<member>/{mu,sigma,ordinal}`` and ``pool/size`` (the number of snapshots). Pure
Python: no Ray, torch or I/O; the state is plain JSON.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from openskill.models import PlackettLuce

from selfplay.core import metric_names as names
from selfplay.core.samples import SNAPSHOT, Episode

__all__ = ["OpponentPool", "POLICY", "SNAPSHOT_PREFIX"]

POLICY = "policy"
SNAPSHOT_PREFIX = SNAPSHOT + "@"


class OpponentPool:
    """Rated pool of the policy, fixed opponents and at most ``max_snapshots`` snapshots.

    Evicted snapshot names (oldest first) collect until ``pop_evicted()`` hands them to the
    caller, which then frees their engines.
    """

    def __init__(self, max_snapshots: int = 3, fixed: Sequence[str] = ("random", "strong")) -> None:
        if isinstance(max_snapshots, bool) or not isinstance(max_snapshots, int) \
                or max_snapshots < 1:
            raise ValueError(f"max_snapshots must be an integer >= 1, got {max_snapshots!r}")
        if isinstance(fixed, str):
            raise ValueError(f"fixed must be a sequence of names, not the string {fixed!r}")
        fixed = tuple(fixed)
        for name in fixed:
            if not isinstance(name, str) or not name or "/" in name:
                raise ValueError(f"fixed: {name!r} is not a non-empty name without '/'")
            if name == POLICY or name.startswith(SNAPSHOT_PREFIX):
                raise ValueError(f"fixed: {name!r} is reserved for the policy or its snapshots")
        if len(set(fixed)) != len(fixed):
            raise ValueError(f"fixed has duplicate names: {list(fixed)}")
        self.max_snapshots = max_snapshots
        self.fixed = fixed
        self.model = PlackettLuce()
        self._ratings = {name: self.model.rating(name=name) for name in (POLICY, *fixed)}
        self._snapshots: dict[str, tuple[int, str]] = {}  # name -> (step, path), oldest first
        self._evicted: list[str] = []

    # -- membership ------------------------------------------------------------------------
    @property
    def members(self) -> list[str]:
        """All rated names: policy, fixed opponents, then snapshots oldest first."""
        return list(self._ratings)

    @property
    def snapshots(self) -> list[str]:
        """Snapshot names, oldest first."""
        return list(self._snapshots)

    def add_snapshot(self, step: int, path: str) -> str:
        """Add ``snapshot@<step>`` rated as the current policy (it *is* the current policy);
        evict the oldest snapshots beyond ``max_snapshots``. Returns the new name."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        if not isinstance(path, str) or not path:
            raise ValueError(f"path must be a non-empty string, got {path!r}")
        name = f"{SNAPSHOT_PREFIX}{step}"
        if name in self._snapshots:
            raise ValueError(f"step {step}: {name} is already in the pool")
        policy = self._ratings[POLICY]
        self._ratings[name] = self.model.rating(mu=policy.mu, sigma=policy.sigma, name=name)
        self._snapshots[name] = (step, path)
        while len(self._snapshots) > self.max_snapshots:
            oldest = next(iter(self._snapshots))
            del self._snapshots[oldest], self._ratings[oldest]
            self._evicted.append(oldest)
        return name

    def pop_evicted(self) -> list[str]:
        """Snapshot names evicted since the last call, oldest first (the list is then cleared)."""
        evicted, self._evicted = self._evicted, []
        return evicted

    def snapshot_path(self, name: str) -> str:
        """The checkpoint folder of snapshot ``name``."""
        if name not in self._snapshots:
            raise ValueError(f"name: {name!r} is not a snapshot in the pool {self.snapshots}")
        return self._snapshots[name][1]

    def snapshot_folders(self) -> dict[str, str]:
        """``{name: folder}`` of every snapshot, oldest first: what the rollout workers host."""
        return {name: path for name, (_, path) in self._snapshots.items()}

    def sample_snapshot(self, rng: np.random.Generator) -> str | None:
        """A snapshot drawn uniformly from the pool, or None when there is none."""
        names = self.snapshots
        return names[int(rng.integers(len(names)))] if names else None

    # -- ratings -----------------------------------------------------------------------------
    def record(self, a: str, b: str, score_a: float) -> None:
        """Update both ratings from one game: ``score_a`` > 0 a won, == 0 draw, < 0 a lost."""
        for arg, name in (("a", a), ("b", b)):
            if name not in self._ratings:
                raise ValueError(f"{arg}: {name!r} is not a pool member {self.members}")
        if a == b:
            raise ValueError(f"a and b must differ, both are {a!r}")
        if not math.isfinite(score_a):
            raise ValueError(f"score_a must be finite, got {score_a!r}")
        # openskill ranks: lower is better, equal ranks are a tie.
        ranks = [0, 0] if score_a == 0 else ([0, 1] if score_a > 0 else [1, 0])
        [[new_a], [new_b]] = self.model.rate([[self._ratings[a]], [self._ratings[b]]], ranks=ranks)
        self._ratings[a], self._ratings[b] = new_a, new_b

    def record_episodes(self, episodes: list[Episode]) -> int:
        """Rate the policy against named opponents: one game per policy role, scored by that
        role's result (``Episode.result``: the sign of its return, or who forfeited). Self-play
        episodes are ignored, and so are episodes against a snapshot evicted while they were in
        flight; an unknown fixed name raises ValueError.
        Returns the number of games recorded."""
        games = 0
        for e in episodes:
            if e.opponent == "self":
                continue
            if e.opponent.startswith(SNAPSHOT_PREFIX) and e.opponent not in self._snapshots:
                continue
            for role in e.policy_roles:
                self.record(POLICY, e.opponent, e.result(role))
                games += 1
        return games

    def rating(self, name: str) -> tuple[float, float]:
        """(mu, sigma) of member ``name``."""
        if name not in self._ratings:
            raise ValueError(f"name: {name!r} is not a pool member {self.members}")
        r = self._ratings[name]
        return r.mu, r.sigma

    def metrics(self) -> dict[str, float]:
        """``pool/<member>/{mu,sigma,ordinal}`` for every member and ``pool/size`` (snapshots)."""
        out: dict[str, float] = {}
        for name, r in self._ratings.items():
            out[names.pool_metric(name, "mu")] = float(r.mu)
            out[names.pool_metric(name, "sigma")] = float(r.sigma)
            out[names.pool_metric(name, "ordinal")] = float(r.ordinal())
        out[names.POOL_SIZE] = float(len(self._snapshots))
        return out

    # -- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state: ratings in member order, snapshots oldest first, and the
        evictions not yet popped."""
        return {
            "ratings": [[name, r.mu, r.sigma] for name, r in self._ratings.items()],
            "snapshots": [[name, step, path] for name, (step, path) in self._snapshots.items()],
            "evicted": list(self._evicted),
        }

    @staticmethod
    def folders_in(state: dict[str, Any] | None) -> set[str]:
        """The snapshot folders a saved ``state_dict()`` lists (none for None)."""
        return {str(path) for _, _, path in (state or {}).get("snapshots", [])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output. Its fixed opponents must match this pool's, and it
        may hold at most ``max_snapshots`` snapshots."""
        snapshots = {name: (int(step), str(path)) for name, step, path in state["snapshots"]}
        ratings = {name: (float(mu), float(sigma)) for name, mu, sigma in state["ratings"]}
        if len(snapshots) > self.max_snapshots:
            raise ValueError(f"state holds {len(snapshots)} snapshots, max_snapshots is "
                             f"{self.max_snapshots}")
        expected = [POLICY, *self.fixed, *snapshots]
        if sorted(ratings) != sorted(expected):
            raise ValueError(f"state rates {sorted(ratings)}, this pool expects {sorted(expected)}")
        self._ratings = {name: self.model.rating(mu=mu, sigma=sigma, name=name)
                         for name, (mu, sigma) in ratings.items()}
        self._snapshots = snapshots
        self._evicted = list(state["evicted"])
