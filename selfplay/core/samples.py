"""The data that crosses processes: one sample type from rollout to learner, and episodes.

Only these dataclasses travel between actors (Ray pickles them); keep them plain.

A *role* is a player's position in a game: 0 moves first. It is the index the environments call
``info["player"]`` (the Gymnasium contract), and the ``p<role>`` of metric names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

#: ``opponent`` of a self-play episode (the policy plays every role).
SELF = "self"
#: ``opponent`` kind of every frozen snapshot of the policy; a snapshot's name is ``snapshot@<step>``.
SNAPSHOT = "snapshot"
#: ``opponent`` of evaluation games against the policy as it was at step 0 (the model folder the
#: run started from): head-to-head progress, played at evaluation only, never in training.
INITIAL = "initial"


def opponent_kind(opponent: str) -> str:
    """``snapshot@12`` -> ``snapshot``; any other opponent name is its own kind."""
    return SNAPSHOT if opponent.startswith(SNAPSHOT + "@") else opponent


def snapshot_step(name: str) -> int:
    """``snapshot@12`` -> 12."""
    return int(name.removeprefix(SNAPSHOT + "@"))


@dataclass
class Sample:
    """One policy turn: what the policy saw, what it wrote, and how that turn is credited.

    ``response_ids``, ``logprobs`` and ``loss_mask`` have the same length. ``logprobs`` are the
    behaviour log-probs the engine reported when sampling. ``loss_mask[i] == 0`` marks a token the
    policy did not write (for example an injected peer summary in LeaP); the loss ignores it.
    ``ret`` is the return of this sample's role in its episode; ``advantage`` is filled in by the
    advantage estimator on the learner side.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    loss_mask: list[int]
    env_id: str
    role: int
    ret: float
    episode_id: str
    turn: int = 0
    advantage: float = 0.0
    #: Samples sharing a group (same SAT instance, same LeaP problem) for group baselines.
    group_id: str | None = None
    #: Who played the other roles: ``self``, a fixed opponent's name or ``snapshot@<step>``.
    opponent: str = "self"
    #: A constrained answer (``answer_choices``): every loss token was sampled among these token
    #: ids alone, so the learner scores the same renormalised distribution; () for the whole
    #: vocabulary.
    allowed_ids: tuple[int, ...] = ()
    #: The version of the weights that generated this turn (the learner's step count when they
    #: were published; 0 for the model as loaded); a turn an update interrupted carries the
    #: oldest. Its staleness is the learner's version minus this (:mod:`selfplay.core.staleness`).
    weight_version: int = 0
    #: The policy (LoRA adapter) that generated it: ``default`` unless the run trains several
    #: (``policies:``); the learner trains each adapter on its own samples
    #: (:mod:`selfplay.core.policies`).
    policy: str = "default"

    def __post_init__(self) -> None:
        n = len(self.response_ids)
        if len(self.logprobs) != n or len(self.loss_mask) != n:
            raise ValueError(
                f"Sample {self.episode_id}/{self.turn}: response_ids ({n}), logprobs "
                f"({len(self.logprobs)}) and loss_mask ({len(self.loss_mask)}) must have equal length"
            )

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


@dataclass
class Episode:
    """A finished episode: its policy samples and what happened, for metrics and logs.

    ``rewards`` maps each role to its return. ``policy_roles`` are the roles played by the policy
    being trained (every role in self-play, one against a fixed opponent or a snapshot).
    ``outcome`` is ``"finished"``, ``"invalid"`` (ended by an invalid action: a forfeit, whose
    author is ``forfeit``), ``"truncated"`` (turn or prompt-length limit) or ``"timeout"``.
    """

    env_id: str
    episode_id: str
    samples: list[Sample]
    rewards: dict[int, float]
    policy_roles: list[int]
    opponent: str = "self"
    outcome: str = "finished"
    num_turns: int = 0
    invalid_counts: list[int] = field(default_factory=list)
    transcript: str = ""
    generated_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    #: The problem it was played on, shared by episodes on the same problem (SAT's samples of one
    #: instance, LeaP's problem): what pass@k groups by.
    group_id: str | None = None
    #: The role that forfeited the game by an invalid action (the environment's final
    #: ``info["forfeit"]``), else None.
    forfeit: int | None = None
    #: The seed of its problem (the deal, the SAT instance, the row of a dataset source).
    seed: int | None = None

    def result(self, role: int) -> int:
        """``role``'s result: +1 win, 0 draw, -1 loss. A forfeit is a loss for its author and a
        win for every other role, whatever the returns (by default the opponent of a forfeit
        gets 0, see ``envs.base``); otherwise the sign of the role's return."""
        if self.forfeit is not None:
            return -1 if role == self.forfeit else 1
        ret = self.rewards.get(role, 0.0)
        return (ret > 0) - (ret < 0)

    def summary(self) -> "Episode":
        """This episode without its samples and transcript: what metrics need, a few hundred bytes."""
        return replace(self, samples=[], transcript="")
