"""Every metric name the project logs, defined once. TensorBoard shows them as a hierarchy:

* ``game/<env>/<opponent>/p<role>/<stat>``: training episodes, per environment, opponent (``self``
  for self-play, ``random``, ``strong`` or a snapshot) and the policy's role; ``<stat>`` is one of
  :data:`ROLE_STATS` or ``baseline`` (the RAE baseline of that key);
* ``game/<env>/{length,invalid_share,truncated_share,timeout_share}``: per environment;
* ``eval/...``: the same for evaluation games against fixed opponents and snapshots;
* ``learner/...``: the optimisation step; ``perf/...``: throughput and timings;
  ``sync/...``: weight publishing; ``pool/<member>/{mu,sigma,ordinal}``: opponent ratings;
  ``eval/KuhnPoker-v0/{exploitability,exact/...}``: Kuhn Poker's exploitability, sampled and
  exact; ``episodes/<env>`` (text): a few whole episodes.
"""

from __future__ import annotations

# learner/
LOSS_PG = "learner/loss/pg"
LOSS_TOTAL = "learner/loss/total"
KL = "learner/kl"
CLIP_FRACTION = "learner/clip_fraction"
APPROX_KL = "learner/approx_kl"
ENTROPY = "learner/entropy"
GRAD_NORM = "learner/grad_norm"
LR = "learner/lr"
LEARNER_TOKENS = "learner/tokens"
RESPONSE_TOKENS = "learner/response_tokens"
MICRO_BATCHES = "learner/micro_batches"
LEARNER_STEP_S = "learner/step_s"
LEARNER_TOKENS_PER_S = "learner/tokens_per_s"
SAMPLES = "learner/samples"
"""Samples trained on this step (after the timeout and zero-advantage filters and subsampling)."""
SAMPLES_COLLECTED = "learner/samples_collected"
DROPPED_TIMEOUT = "learner/dropped/timeout"
"""Samples of episodes cut by the wall-clock limit: never trained on (which episodes time out
depends on machine load, not on the policy)."""
DROPPED_ZERO_ADVANTAGE = "learner/dropped/zero_advantage"
GROUPS = "learner/groups"
UNIFORM_GROUPS = "learner/uniform_groups"
"""Advantage groups whose samples all had the same return: they carry no signal."""

ADVANTAGE_MEAN = "learner/advantage_mean"
#: Loss statistics the policy loss reports per micro-batch, by their key there.
LOSS_STATS = {"pg_loss": LOSS_PG, "kl": KL, "clip_fraction": CLIP_FRACTION,
              "approx_kl": APPROX_KL, "entropy": ENTROPY}

# perf/
ENGINE_START_S = "perf/engine_start_s"
ROLLOUT_S = "perf/rollout_s"
ROLLOUT_TOKENS = "perf/rollout_tokens"
ROLLOUT_TOKENS_PER_S = "perf/rollout_tokens_per_s"
STEP_S = "perf/step_s"
WEIGHT_SYNC_S = "perf/weight_sync_s"
ROLLOUT_IDLE_SHARE = "perf/rollout_idle_share"
"""Share of a step the rollout workers do not generate (mean over workers): waiting for the
learner, the weights, or the slowest worker. With :data:`LEARNER_IDLE_SHARE` it says whether
overlapping rollout and learning would pay."""
LEARNER_IDLE_SHARE = "perf/learner_idle_share"
"""Share of a step the learner neither trains nor publishes weights (waiting for episodes)."""

# cluster/
WORKER_RESTARTS = "cluster/worker_restarts"
"""Rollout-worker restarts so far in this run (a worker died and Ray restarted it)."""
WEIGHT_VERSION = "sync/weight_version"
"""The learner step whose weights the engines hold (0: the model as loaded)."""

# sync/ (weight publishing)
SYNC_MB = "sync/mb"
SYNC_MB_PER_S = "sync/mb_per_s"
SYNC_WRITE_S = "sync/write_s"
SYNC_LOAD_S = "sync/load_s"
SYNC_TOTAL_S = "sync/total_s"
SYNC_SERIALIZE_S = "sync/serialize_s"
SYNC_WORKER_RELOAD_S = "sync/worker_reload_s"
SYNC_NCCL_S = "sync/nccl_s"

PROGRESS_EPISODES = "progress/episodes"
POOL_SIZE = "pool/size"

# Kuhn Poker's exact figures, in the evaluation namespace. The sampled ones are the played
# policy's (replies generated as in training); the exact ones score the probability of each
# action's answer: ``\\boxed{a}`` at temperature 1 (free answers), or the action's tokens after the
# prefilled prefix at the training temperature (forced answers, where they are the played policy).
KUHN_EXPLOITABILITY = "eval/KuhnPoker-v0/exploitability"
KUHN_EXPLOITABILITY_LOW = "eval/KuhnPoker-v0/exploitability_low"
KUHN_EXPLOITABILITY_HIGH = "eval/KuhnPoker-v0/exploitability_high"
KUHN_INVALID_SHARE_MAX = "eval/KuhnPoker-v0/infoset_invalid_share_max"
KUHN_EXACT_EXPLOITABILITY = "eval/KuhnPoker-v0/exact/exploitability"
KUHN_EXACT_VALUE_P0 = "eval/KuhnPoker-v0/exact/value_p0_vs_equilibrium"
KUHN_EXACT_VALUE_P1 = "eval/KuhnPoker-v0/exact/value_p1_vs_equilibrium"

#: Per (environment, opponent, role) statistics of episodes.
ROLE_STATS = ("return", "win_rate", "draw_rate", "loss_rate", "invalid_rate", "episodes")
#: Evaluation adds 95% intervals (Wilson for rates, normal for the mean return) and the
#: non-losing rate (TicTacToe against the perfect player: the best a policy can do).
INTERVAL_STATS = ("win_rate_low", "win_rate_high", "non_loss_rate", "non_loss_rate_low",
                  "non_loss_rate_high", "return_low", "return_high")
#: Episode outcomes counted as shares per environment (besides ``finished``).
OUTCOME_SHARES = ("invalid", "truncated", "timeout")


def short_env(env_id: str) -> str:
    """``selfplay/KuhnPoker-v0`` -> ``KuhnPoker-v0``."""
    return env_id.split("/")[-1]


def role_metric(env_id: str, opponent: str, role: int, stat: str, prefix: str = "game") -> str:
    """``game/KuhnPoker-v0/random/p1/win_rate``."""
    return f"{prefix}/{short_env(env_id)}/{opponent}/p{role}/{stat}"


def baseline(env_id: str, opponent: str, role: int) -> str:
    """The RAE baseline of (environment, opponent, role), beside that key's other statistics."""
    return role_metric(env_id, opponent, role, "baseline")


def env_metric(env_id: str, stat: str, prefix: str = "game") -> str:
    """``game/KuhnPoker-v0/length``."""
    return f"{prefix}/{short_env(env_id)}/{stat}"


def episode_stat(group: str, stat: str) -> str:
    """The key of a figure an environment reports at the end of an episode (``info["stats"]``),
    under the environment's ``stats_prefix``: ``leap/pass_at_1``; :func:`env_metric` then files it
    under its environment."""
    return f"{group}/{stat}" if group else stat


def pool_metric(member: str, stat: str) -> str:
    """``pool/snapshot@4/ordinal``."""
    return f"pool/{member}/{stat}"


def episode_text(env_id: str) -> str:
    """Tag of the whole episodes logged as text."""
    return f"episodes/{env_id}"


def curriculum_metric(env_id: str, stat: str) -> str:
    """``curriculum/SAT-v0/level`` (index of the current level) and ``.../pass_at_1``."""
    return f"curriculum/{short_env(env_id)}/{stat}"


def worker_metric(index: int, stat: str) -> str:
    """``perf/worker/1/tokens_per_s``: one rollout worker's figures (a slow node shows here)."""
    return f"perf/worker/{index}/{stat}"


def worker_index(name: str, stat: str) -> int | None:
    """The worker of a :func:`worker_metric` name for ``stat``, or None for any other name."""
    parts = name.split("/")
    if len(parts) == 4 and name == worker_metric(int(parts[2]) if parts[2].isdigit() else -1, stat):
        return int(parts[2])
    return None


def sync_stat(name: str) -> str:
    """``sync/load_s`` -> ``load_s``: a weight-sync figure's own name (benchmarks re-file it)."""
    return name.removeprefix("sync/")


def bench_metric(stat: str) -> str:
    """``bench/floor_s``: a benchmark's figure."""
    return f"bench/{stat}"


def eval_bench_metric(bench: str, stat: str) -> str:
    """``eval/bench/math500/pass_at_1``: a held-out benchmark's figure (``eval.bench``)."""
    return f"eval/bench/{bench}/{stat}"


def eval_bench_of(name: str, stat: str) -> str | None:
    """The benchmark of an :func:`eval_bench_metric` name for ``stat``, or None for any other name."""
    parts = name.split("/")
    return parts[2] if len(parts) == 4 and name == eval_bench_metric(parts[2], stat) else None
