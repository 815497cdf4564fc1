"""The configuration schema: one typed root with a section per part of the system.

Each field's docstring states its meaning and bounds; ``selfplay.config`` loads and checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A malformed configuration; the message is one line naming the field and the problem."""


@dataclass
class EnvConfig:
    """One environment in the training mix."""

    id: str = "selfplay/KuhnPoker-v0"
    """Gymnasium id, e.g. selfplay/TicTacToe-v0."""
    weight: float = 1.0
    """Relative share of the episodes drawn from this environment (> 0)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments passed to gymnasium.make (e.g. invalid_action, lenient)."""
    group_size: int = 1
    """Episodes played on each problem (same seed and level); their samples form one advantage
    group for ``advantage.type: grpo`` (SATURN: 8) (>= 1)."""
    answer_prefix: str | None = None
    """Forced-answer mode for a game (``envs.base``): every turn's assistant message opens with
    this text (masked out of the loss), the policy writes only the action up to the closing ``}``
    and a reply counts only as an exact boxed legal action; null (default): free reasoning, then
    ``\\boxed{}``. A string holding ``\\boxed{`` with no ``}`` after it (in YAML ``'\\boxed{'`` or
    ``"\\\\boxed{"``), whose ``$name`` fields the game fills at each turn (Kuhn Poker: ``$card``);
    games only. Passed to the environment as ``kwargs.answer_prefix`` (setting it there is the same)."""
    answer_choices: bool = False
    """Constrained answers (with ``answer_prefix``): the engine samples the one token after the
    prefix among the legal actions' tokens alone (each legal action must be one token), and the
    learner scores the same renormalised distribution. No invalid answer is possible, so every
    sample is a strategy decision. Passed as ``kwargs.answer_choices``."""

    def __post_init__(self) -> None:
        # Every consumer of ``kwargs`` (rollouts, evaluation, start-up checks) sees the prefix; a
        # different value already in ``kwargs`` is left for validation to refuse.
        if self.answer_prefix is not None and "answer_prefix" not in self.kwargs:
            self.kwargs = {**self.kwargs, "answer_prefix": self.answer_prefix}
        if self.answer_choices is not False and "answer_choices" not in self.kwargs:
            self.kwargs = {**self.kwargs, "answer_choices": self.answer_choices}


@dataclass
class RolloutConfig:
    """Rollout workers: engine, sampling and the limits that keep episodes healthy."""

    backend: str = "vllm"
    """Generation engine: vllm or transformers."""
    num_workers: int = 1
    """Rollout actors (each hosts one engine)."""
    episodes_per_step: int = 16
    """Finished episodes collected per training step, over all workers (>= 1)."""
    self_play_fraction: float = 1.0
    """Share of episodes where the policy plays every role; the rest face an opponent (0..1)."""
    opponents: list[str] = field(default_factory=lambda: ["random"])
    """Opponents for non-self-play episodes: random, strong, or snapshot (a frozen past policy
    from the pool; self-play until the first snapshot exists)."""
    temperature: float = 1.0
    """Sampling temperature (> 0)."""
    top_p: float = 1.0
    """Nucleus sampling mass of training rollouts: must be 1. With top_p < 1 vLLM's log-probs are
    renormalised over the nucleus while the learner scores the whole tempered distribution, so the
    PPO ratio would be biased; evaluation has its own ``eval.top_p``."""
    min_p: float = 0.0
    """Min-p truncation of training rollouts: must be 0, for the same reason as ``top_p`` (the
    learner scores the whole tempered distribution); evaluation has ``eval.min_p``."""
    top_k: int = 0
    """Top-k truncation of training rollouts: must be 0 (all tokens), as ``min_p``; evaluation has
    ``eval.top_k``."""
    max_new_tokens: int = 64
    """Maximum response tokens per turn (>= 1)."""
    max_turns: int = 32
    """Maximum policy turns per episode; beyond it the episode ends as truncated (>= 1)."""
    max_prompt_tokens: int = 1536
    """The prompt's own token budget: a turn whose prompt is longer ends the episode as truncated
    (>= 16). The engine's context is this plus ``max_new_tokens``. Checked at start-up against
    every environment's opening prompt."""
    episode_timeout_s: float = 600.0
    """Wall-clock limit of one episode (> 0)."""
    truncated_return: float = 0.0
    """Return given to every role of a truncated or timed-out episode (zero keeps it zero-sum)."""
    kv_cache_gib: float = 2.0
    """vLLM CPU KV-cache size (VLLM_CPU_KVCACHE_SPACE); ignored on GPU."""
    gpu_memory_utilization: float = 0.5
    """vLLM GPU memory share for a worker co-located with the learner (0..1)."""
    enforce_eager: bool = True
    """Skip vLLM graph compilation: minutes faster start-up on CPU."""
    dtype: str = "auto"
    """Engine dtype: auto (bfloat16 on a GPU or a CPU with native bf16, else float32), bfloat16,
    float16 or float32."""
    weight_sync: str = "auto"
    """How new weights reach the engines: auto, cpu (reload through the worker) or nccl."""


@dataclass
class AdvantageConfig:
    """Advantage estimator, chosen by ``type`` from a registry."""

    type: str = "rae"
    """rae (role-conditioned EMA baselines, SPIRAL) or grpo (group-normalised)."""
    decay: float = 0.95
    """EMA decay of the RAE role baselines (0 <= decay < 1)."""
    baseline_init: str = "zero"
    """rae: where each baseline starts: zero (SPIRAL) or first_batch (the mean return of the
    first batch that has its key; for runs whose early returns are far from 0)."""
    normalize_std: bool = True
    """grpo: divide by the group's standard deviation."""


@dataclass
class LoraConfig:
    """LoRA adapters on a frozen base (``peft``): only the adapter trains and only the adapter
    travels to the engines. ``rank`` 0 (the default) is full fine-tuning."""

    rank: int = 0
    """Rank r of every adapter matrix pair (>= 0; 0: LoRA off)."""
    alpha: float = 32.0
    """Scaling numerator: the update is ``alpha / rank * B @ A`` (> 0)."""
    dropout: float = 0.0
    """Dropout on the adapter's input (0 <= dropout < 1; keep 0 for RL: the learner's log-probs
    must be the engine's)."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                "gate_proj", "up_proj", "down_proj"])
    """Module names (suffixes) that get an adapter: attention and MLP projections of Llama/Qwen-style
    models."""
    publish: str = "adapter"
    """What reaches the engines after each step: adapter (only the adapter, a few MB; the engines
    serve the base with LoRA on: vLLM's multi-LoRA batching) or merged (the merged full weights,
    as in full fine-tuning; the engines run without LoRA). On a CPU vLLM's LoRA kernels generate
    about 3x slower, which costs more than publishing the full weights saves: merged is faster
    there; on GPUs and across nodes adapter is."""

    @property
    def adapter_sync(self) -> bool:
        """Whether the engines serve adapters (LoRA on and ``publish: adapter``)."""
        return self.rank > 0 and self.publish == "adapter"


@dataclass
class TrainerConfig:
    """The learner's optimisation and the length of the run."""

    steps: int = 10
    """Training steps (>= 1)."""
    lr: float = 1e-6
    """AdamW learning rate (> 0)."""
    weight_decay: float = 0.0
    """AdamW weight decay (>= 0)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps (>= 0)."""
    clip_eps: float = 0.2
    """PPO ratio clipping range (> 0)."""
    kl_coef: float = 0.0
    """KL penalty to the frozen reference model; 0 disables the reference (>= 0)."""
    grad_clip: float = 1.0
    """Maximum gradient norm (> 0)."""
    micro_batch_tokens: int = 4096
    """Tokens per forward/backward micro-batch; gradients accumulate over a step (>= 64)."""
    logits_chunk_tokens: int = 1024
    """Loss tokens whose full-vocabulary logits exist at once: the output head, log-softmax and
    entropy run this many positions at a time and the backward pass recomputes each chunk, so a
    micro-batch's logits take ``logits_chunk_tokens x vocabulary`` memory, not ``micro_batch_tokens
    x vocabulary`` (>= 1)."""
    loss_agg: str = "token_mean"
    """How a step's per-token losses add up (``learners/loss_agg.py``): token_mean (every token
    weighs the same; DAPO), seq_mean_token_mean (the mean over sequences of each one's token mean;
    OpenRLHF, SATURN), seq_mean_token_sum (the mean over sequences of each one's token sum) or
    seq_mean_token_sum_norm (that sum divided by ``loss_agg_length``; Dr. GRPO, OAT, SPIRAL). A
    sequence is one turn sample."""
    loss_agg_length: int = 0
    """The fixed length L that divides each sequence's token sum in seq_mean_token_sum_norm (Dr.
    GRPO: the generation budget) (>= 1 for that mode; unused otherwise)."""
    epochs: int = 1
    """Passes over each step's samples, one optimiser step each (>= 1; SPIRAL: 2)."""
    samples_per_step: int = 0
    """Turn samples trained on per step, drawn uniformly without replacement from those collected
    (after the filters), as SPIRAL subsamples to 128; 0 trains on all (>= 0)."""
    filter_zero_advantage: bool = False
    """Drop samples whose advantage is exactly 0 before training: they carry no gradient but
    dilute the token-level mean (SPIRAL does this)."""
    max_staleness: int = 0
    """Bounded staleness k (``selfplay.core.staleness``): 0 is the synchronous on-policy loop
    (rollout waits for each update); with k >= 1 the rollout workers keep generating while the
    learner trains, never more than k steps ahead of it, and a sample trains only if the weights
    that generated its turn are at most k versions behind the learner's (older ones are dropped
    and counted, ``learner/dropped/stale``) (>= 0; AReaL's ``max_head_offpolicyness``, prime-rl's
    ``async_level``)."""
    off_policy: str = "none"
    """Off-policy correction of the PPO loss: none (the ratio against the engine's behaviour
    log-probs, as always), tis (the ratio against the learner's own log-probs at the start of the
    update, each token weighted by their ratio to the behaviour log-probs truncated at
    ``importance_cap``; verl's TIS) or decoupled (the same ratio, weighted by the untruncated
    ratio, tokens whose weight exceeds ``importance_cap`` masked out; AReaL's decoupled PPO). Both
    cost one extra forward pass without gradients per step."""
    importance_cap: float = 2.0
    """tis: the truncation of the importance weight; decoupled: tokens whose weight exceeds it
    are left out (0: keep every token) (> 0 for tis, >= 0 for decoupled)."""
    dtype: str = "auto"
    """Learner dtype: auto (bfloat16 on a GPU or a CPU with native bf16, else float32), bfloat16,
    float16 or float32."""
    gradient_checkpointing: bool = False
    """Trade compute for memory in the learner's forward pass."""
    device: str = "auto"
    """auto, cpu or cuda."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA instead of full fine-tuning (``trainer.lora.rank=16``)."""


@dataclass
class EvalConfig:
    """Evaluation against fixed opponents every ``every`` steps."""

    every: int = 0
    """Evaluate every N steps; 0 disables periodic evaluation (>= 0)."""
    games: int = 8
    """Games per (environment, opponent, role) (>= 1)."""
    opponents: list[str] = field(default_factory=lambda: ["random"])
    """Fixed opponents to evaluate against."""
    temperature: float = 0.0
    """Evaluation sampling temperature (0 = greedy)."""
    top_p: float = 1.0
    """Evaluation nucleus sampling mass (0 < top_p <= 1; ignored when greedy)."""
    min_p: float = 0.0
    """Evaluation min-p: drop tokens less likely than min_p times the most likely one (0 <= min_p
    <= 1; 0: off; ignored when greedy; LeaP: 0.05). Both engines honour it."""
    top_k: int = 0
    """Evaluation top-k: sample among the k most likely tokens (>= 0; 0: all; ignored when greedy;
    LeaP: 40). Both engines honour it."""
    log_episodes: int = 2
    """Full episodes written to TensorBoard as text per evaluation."""
    initial_games: int = 4
    """Games per (environment, role) against the policy as it was at step 0 (the model the run
    started from): win rate and return with 95% intervals show self-play progress in games
    without an exact solution (0 = skip) (>= 0)."""
    infoset_samples: int = 32
    """Kuhn Poker: replies sampled at each of the 12 information sets, as in training, for the
    sampled exploitability (0 = skip it) (>= 0)."""
    bench: dict[str, Any] = field(default_factory=dict)
    """Held-out benchmarks answered every ``every`` steps, ``{NAME: SOURCE}``: a JSONL file of
    question/answer rows, a ``datasets`` folder or a cached dataset id, with ``,key=value``
    options or as a mapping (:mod:`selfplay.core.bench_spec`); logged as
    ``eval/bench/<NAME>/{pass_at_1,answered,tokens}``."""


@dataclass
class CheckpointConfig:
    """When and how many checkpoints to keep."""

    every: int = 0
    """Checkpoint every N steps (and always at the end); 0 = only at the end (>= 0)."""
    keep_last: int = 2
    """Checkpoints kept on disk (>= 1)."""


@dataclass
class CurriculumConfig:
    """A level curriculum for one environment with levels (SAT): train at the current level,
    validate every ``every`` steps on fresh problems, move up once pass@1 reaches ``gate``."""

    env: str = ""
    """The environment id it drives, e.g. selfplay/SAT-v0; empty disables the curriculum."""
    levels: list[dict[str, Any]] = field(default_factory=list)
    """Ordered levels, each the environment's reset options (SAT: {n: 3, k: 5, l: 5})."""
    start: int = 0
    """Index of the first level (>= 0)."""
    every: int = 5
    """Validate every N training steps (>= 1)."""
    gate: float = 0.5
    """pass@1 on the validation problems that moves the curriculum up (0 < gate <= 1; SATURN:
    0.5 for 1.5B, 0.75 for 7B)."""
    instances: int = 8
    """Fresh problems per validation (>= 1)."""
    samples: int = 1
    """Samples per validation problem; pass@1 is their mean (>= 1)."""


@dataclass
class ClusterConfig:
    """Where Ray runs and how the actors are laid out on it (one placement group: a bundle for each
    learner rank, one per rollout worker). The same config runs locally and on a cluster; only these
    resources change."""

    address: str | None = None
    """Ray address; None starts a local Ray (debug mode, bound to 127.0.0.1) unless RAY_ADDRESS is
    set."""
    num_cpus: int | None = None
    """CPUs for a local Ray; None: all of this machine's (>= 1 or null)."""
    learner_ranks: int = 1
    """Processes of the learner (>= 1). Above 1 the learner is sharded with PyTorch FSDP2 over
    that many ranks (NCCL on GPUs, gloo on CPUs), each holding 1/N of the float32 master weights,
    gradients and AdamW state; N ranks make the same update as one."""
    learner_gpus: float = 0.0
    """GPUs for each learner rank (>= 0; a sharded learner's ranks take 1 each on GPUs)."""
    learner_memory_gib: float | None = None
    """Device memory of one learner rank, for the memory plan's check at start-up and in
    ``--dry-run`` (> 0); None: the plan is printed but not checked."""
    worker_gpus: float = 0.0
    """GPUs for each rollout worker (>= 0; above 1 a whole number, vLLM's tensor-parallel size)."""
    learner_cpus: float | None = None
    """CPUs the learner reserves (> 0); None: 1 on a cluster, and in a local Ray an even share of
    its CPUs among the learner and the workers (a fraction: Ray only books CPUs, it does not pin
    them, so two workers and a learner fit a 2-core machine)."""
    worker_cpus: float | None = None
    """CPUs each rollout worker reserves (> 0); None: as for ``learner_cpus``."""
    placement_strategy: str = "PACK"
    """Ray placement-group strategy for the bundles: PACK (as few nodes as fit), SPREAD (as many
    as possible), STRICT_PACK (one node) or STRICT_SPREAD (one node per bundle)."""
    placement_timeout_s: float = 120.0
    """How long to wait for the cluster to place the layout before the run stops with one line
    saying what did not fit (> 0)."""
    learner_cores: str | int | None = None
    """CPU cores the learner's process runs on, e.g. ``"1"`` or ``"2-7"`` (Linux affinity; torch
    uses that many threads); None: no pinning, all CPUs of the node divided among the ranks in the
    synchronous loop, and on a local machine in the asynchronous loop (``trainer.max_staleness``
    >= 1) the last half of the CPUs, so rollout and learning do not fight for the same cores."""
    worker_cores: str | int | None = None
    """CPU cores the rollout workers (and vLLM's engine process) run on, the same notation; vLLM on
    CPU binds its threads to them (``VLLM_CPU_OMP_THREADS_BIND``); None: no pinning, except in the
    local asynchronous loop: the first half of the CPUs."""
    max_worker_restarts: int = 3
    """Times one rollout worker may die (killed, out of memory) and be restarted by Ray with the
    current weights before the run ends (>= 0)."""


@dataclass
class PoolConfig:
    """Frozen snapshots of the policy as opponents, rated with openskill against fixed ones."""

    snapshot_every: int = 0
    """Freeze a snapshot every N steps; 0 disables snapshots (>= 0)."""
    max_snapshots: int = 3
    """Snapshots kept (the oldest is dropped) (>= 1)."""
    eval_games: int = 2
    """Evaluation games against each snapshot per role, for the ratings (>= 0)."""


@dataclass
class PolicyConfig:
    """One named policy of several on the same base model (``policies:``): a LoRA adapter of its
    own, with its own optimiser and advantage baselines, playing the roles and opponent kinds it
    is mapped to. Every (role, opponent) a run can play must map to exactly one policy."""

    name: str = "default"
    """The adapter's name (letters, digits, ``_`` and ``-``; unique); its files are
    ``adapter/<name>/`` in checkpoints."""
    roles: list[int] = field(default_factory=list)
    """The roles (player ids: 0, 1, ...) it plays; empty: every role."""
    opponents: list[str] = field(default_factory=list)
    """The opponent kinds it plays against (``self``, ``random``, ``strong``); empty: every kind."""


#: The meaning of config fields this code implements. 1 (configs without ``format_version``
#: written by earlier versions are read as the current one): ``rollout.max_prompt_tokens`` was the
#: prompt plus the answer budget. 2: it is the prompt's own budget.
CONFIG_FORMAT = 2


@dataclass
class Config:
    """The root of a run's configuration."""

    format_version: int = CONFIG_FORMAT
    """The config format this file was written for; another version is refused at load, so a
    field never silently changes meaning. Resolved configs (run directories) record it."""
    evaluation_only: bool = False
    """True: a config for ``selfplay eval`` only, whose learner does not fit the devices it is
    written for (its memory plan, ``selfplay train --dry-run``); ``selfplay train`` refuses it
    with one line. A shipped config that is says so in its first line."""

    name: str = "run"
    """Run name; files go under <run_root>/<name>/."""
    run_root: str = "runs"
    """Directory holding run directories, made absolute at start-up: relative to the current
    folder, except in a job's temporary copy of its working dir (``ray job submit``), which Ray
    deletes: there under ``~/selfplay/``. On a multi-node cluster: a filesystem every node sees."""
    seed: int = 0
    """Seed for every RNG in the run."""
    model: str = "smollm2-135m-instruct"
    """Built-in model name (smollm2-135m-instruct, tiny), a Hugging Face folder, or a hub id."""
    envs: list[EnvConfig] = field(default_factory=lambda: [EnvConfig()])
    """Environments in the training mix."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    policies: list[PolicyConfig] = field(default_factory=list)
    """Several policies on one base, by role or opponent kind, each a LoRA adapter of its own
    (needs ``trainer.lora.rank > 0``); empty (default): one policy plays every role (self-play)."""

    @property
    def run_dir(self) -> Path:
        return Path(self.run_root) / self.name
