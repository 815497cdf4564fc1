"""Typed configuration: dataclasses loaded from YAML, with dotted command-line overrides.

``load_config("debug", ["trainer.lr=1e-6"])`` reads ``selfplay/configs/debug.yaml`` (or any YAML
path), applies the overrides, checks every key and type, and runs the cross-field checks. Any
problem raises :class:`ConfigError` with one line naming the key, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from selfplay.core.config_schema import (
    CONFIG_FORMAT, AdvantageConfig, CheckpointConfig, ClusterConfig, Config, ConfigError,
    CurriculumConfig, EnvConfig, EvalConfig, LoraConfig, PolicyConfig, PoolConfig, RolloutConfig, TrainerConfig,
)
from selfplay.core.precision import DTYPE_NAMES

__all__ = [
    "AdvantageConfig", "CheckpointConfig", "ClusterConfig", "Config", "ConfigError", "CurriculumConfig", "EnvConfig",
    "EvalConfig", "LoraConfig", "PolicyConfig", "PoolConfig", "RolloutConfig", "TrainerConfig", "load_config", "to_dict", "shipped_configs",
]


# ----- loading -----------------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; returns the (lightly coerced) value."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}={value!r}: expected {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r}: expected a mapping for {tp.__name__}")
        return _build(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}={value!r}: expected a list")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r}: expected a mapping")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-6" as a string
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ConfigError(f"{key}={value!r}: expected {tp.__name__}, got {type(value).__name__}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"{full}: unknown key (expected one of: {', '.join(names)})")
        kwargs[key] = _convert(value, hints[key], full)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"trainer.lr=1e-6"`` -> (["trainer", "lr"], 1e-06). Values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. trainer.lr=1e-6")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {key}={raw!r}: not valid YAML ({err.problem})") from None
    return key.strip().split("."), value


def _set_dotted(data: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{'.'.join(path)}: {part!r} is not an index of the list {'.'.join(path[:i])}")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"{'.'.join(path)}: {'.'.join(path[:i + 1])} is not a section")
    last = path[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"{'.'.join(path)}: {last!r} is not an index of the list")
        node[int(last)] = value
    else:
        node[last] = value


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package (``selfplay/configs/*.yaml``)."""
    folder = resources.files("selfplay") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_yaml(name_or_path: str) -> dict[str, Any]:
    """Read a shipped config by name, or any YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"config file {name_or_path!r}: no such file")
        text = path.read_text()
    else:
        res = resources.files("selfplay") / "configs" / f"{name_or_path}.yaml"
        if not res.is_file():
            close = difflib.get_close_matches(str(name_or_path), shipped_configs(), n=1)
            raise ConfigError(f"config {name_or_path!r}: not a file and not one of {shipped_configs()}"
                              + (f"; did you mean {close[0]}?" if close else ""))
        text = res.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config {name_or_path!r}: not valid YAML ({err})".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {name_or_path!r}: expected a mapping at the top level")
    return data


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Load, override and validate a configuration."""
    data = read_yaml(name_or_path) if name_or_path else {}
    for text in overrides or []:
        path, value = parse_override(text)
        _set_dotted(data, path, value)
    cfg = _build(Config, data)
    validate(cfg)
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved configuration as plain data (what is written to the run directory)."""
    return dataclasses.asdict(cfg)



# ----- validation: bounds of every field and cross-field checks ----------------------------------
# Each allowed value is defined where it is used (engines, estimators, weight publishing, dtypes,
# opponents); validation refers to those definitions. This module is the application layer, so it
# may import the rollout and learning sides (their modules named here import no torch or Ray).


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {expected}")


def check_env_ids(env_ids: list[str], key: str) -> None:
    """Every id must be registered with Gymnasium (importing ``envs`` registers ours); ``key``
    names the setting, with ``{i}`` standing for the index."""
    import gymnasium as gym

    import envs

    known = [*envs.GAMES, *envs.TASKS, "selfplay/TextArena-v0"]
    for i, env_id in enumerate(env_ids):
        if env_id not in gym.registry:
            close = difflib.get_close_matches(env_id, known, n=1)
            raise ConfigError(f"{key.format(i=i)}={env_id!r}: not a registered environment"
                              + (f"; did you mean {close[0]}?" if close else "")
                              + f" (known: {', '.join(known)})")


def check_answer_prefix(env: EnvConfig, key: str) -> None:
    """An environment's forced-answer prefix (``key``: ``envs[i]``): the same as any
    ``kwargs.answer_prefix``, a string holding ``\\boxed{`` whose ``$name`` fields the game fills,
    and for an environment whose constructor takes it (the games)."""
    import inspect

    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    from envs.base import ANSWER_BOX, answer_prefix_problem

    prefix = env.kwargs.get("answer_prefix", env.answer_prefix)
    field = f"{key}.answer_prefix" if env.answer_prefix is not None else f"{key}.kwargs.answer_prefix"
    if env.answer_prefix is not None and prefix != env.answer_prefix:
        raise ConfigError(f"{key}.answer_prefix={env.answer_prefix!r}: expected the same as "
                          f"{key}.kwargs.answer_prefix={prefix!r} (set one of them)")
    if prefix is None:
        return
    creator = load_env_creator(gym.spec(env.id).entry_point)
    problem = answer_prefix_problem(prefix, getattr(creator, "answer_fields", {}))
    if problem:
        hint = f" (in YAML: '{ANSWER_BOX}')" if ANSWER_BOX in problem else ""
        raise ConfigError(f"{field}={prefix!r}: {problem}{hint}")
    try:
        takes = inspect.signature(creator).parameters
    except (TypeError, ValueError):
        takes = {}
    _check("answer_prefix" in takes, field, prefix, f"null for {env.id} (forced answers are for "
           f"the games: its environment takes no answer_prefix)")
    choices = env.kwargs.get("answer_choices", env.answer_choices)
    if choices is not False:
        _check(isinstance(choices, bool), f"{key}.answer_choices", choices, "true or false")
        _check("answer_choices" in takes, f"{key}.answer_choices", choices,
               f"false for {env.id} (its legal actions are open-ended: nothing to choose among)")


def check_answer_choices_without_prefix(env: EnvConfig, key: str) -> None:
    """``answer_choices`` constrains what follows the forced-answer prefix: refuse it without one."""
    choices = env.kwargs.get("answer_choices", env.answer_choices)
    if choices is not False and env.kwargs.get("answer_prefix", env.answer_prefix) is None:
        raise ConfigError(f"{key}.answer_choices={choices!r}: needs {key}.answer_prefix (e.g. "
                          f"'\\boxed{{'): the choice is the token written after the prefix")


def check_benches(bench: dict[str, Any], max_new_tokens: int) -> None:
    """``eval.bench``'s entries are well formed (their files are read at start-up), and each one's
    answer budget fits the engines' context (``rollout.max_new_tokens``)."""
    from selfplay.core.bench_spec import parse_bench

    for name, value in bench.items():
        try:
            spec = parse_bench(name, value)
        except ValueError as err:
            raise ConfigError(f"eval.bench.{name}: {err}") from None
        _check(spec.max_new_tokens is None or spec.max_new_tokens <= max_new_tokens,
               f"eval.bench.{name}.max_new_tokens", spec.max_new_tokens,
               f"<= rollout.max_new_tokens={max_new_tokens} in training (the engines' context holds "
               f"that many; selfplay eval raises it for the benchmark)")


def check_several_policies(cfg: Config) -> None:
    """``policies:``: each a LoRA adapter served by vLLM beside the others, covering every matchup."""
    from envs import num_players
    from envs.opponents import FIXED_OPPONENTS
    from selfplay.core.policies import check_policies
    from selfplay.core.samples import SNAPSHOT

    t, r = cfg.trainer, cfg.rollout
    why = f"with policies ({len(cfg.policies)} adapters on one base)"
    _check(t.lora.rank > 0, "trainer.lora.rank", t.lora.rank, f"> 0 {why}: each policy is a LoRA adapter")
    _check(t.lora.publish == "adapter", "trainer.lora.publish", t.lora.publish,
           f"adapter {why}: the engine serves every adapter; merged weights are one policy's")
    _check(r.backend == "vllm", "rollout.backend", r.backend,
           f"vllm {why}: the transformers engine merges one adapter into its weights, vLLM serves several at once")
    _check(cfg.pool.snapshot_every == 0 and SNAPSHOT not in r.opponents, "pool.snapshot_every",
           cfg.pool.snapshot_every, f"0 and no 'snapshot' opponent {why}: a snapshot is one policy's weights")
    opponents = (r.opponents if r.self_play_fraction < 1 else []) + (cfg.eval.opponents if cfg.eval.every else [])
    check_policies(cfg.policies, {e.id: num_players(e.id) for e in cfg.envs}, opponents, FIXED_OPPONENTS)


def validate(cfg: Config) -> None:
    """Bounds and cross-field checks; raises ConfigError naming the first bad field."""
    from actors.engine import BACKENDS
    from envs.opponents import FIXED_OPPONENTS
    from learners.advantages import make_estimator
    from learners.loss_agg import LOSS_AGGS, NEEDS_LENGTH
    from learners.off_policy import OFF_POLICY
    from selfplay.core.samples import SNAPSHOT
    from selfplay.core.weight_format import WEIGHT_SYNCS
    from selfplay.core.cores import parse_cores
    from selfplay.placement.layout import PLACEMENT_STRATEGIES

    _check(cfg.format_version == CONFIG_FORMAT, "format_version", cfg.format_version,
           f"{CONFIG_FORMAT}, the format this selfplay reads (in format 1 rollout.max_prompt_tokens "
           f"counted the answer too: subtract rollout.max_new_tokens, then set format_version: "
           f"{CONFIG_FORMAT})")
    _check(bool(cfg.name) and "/" not in cfg.name, "name", cfg.name, "a non-empty name without '/'")
    _check(bool(cfg.model), "model", cfg.model, "a model name, folder or hub id")
    _check(len(cfg.envs) >= 1, "envs", cfg.envs, "at least one environment")
    for i, env in enumerate(cfg.envs):
        _check(env.weight > 0, f"envs[{i}].weight", env.weight, "> 0")
        _check(env.group_size >= 1, f"envs[{i}].group_size", env.group_size, ">= 1")
    check_env_ids([env.id for env in cfg.envs], "envs[{i}].id")
    for i, env in enumerate(cfg.envs):
        check_answer_choices_without_prefix(env, f"envs[{i}]")
        check_answer_prefix(env, f"envs[{i}]")
    r = cfg.rollout
    _check(r.backend in BACKENDS, "rollout.backend", r.backend, f"one of {BACKENDS}")
    _check(r.num_workers >= 1, "rollout.num_workers", r.num_workers, ">= 1")
    _check(r.episodes_per_step >= 1, "rollout.episodes_per_step", r.episodes_per_step, ">= 1")
    _check(0.0 <= r.self_play_fraction <= 1.0, "rollout.self_play_fraction", r.self_play_fraction, "in [0, 1]")
    opponents = (*FIXED_OPPONENTS, SNAPSHOT)
    for o in r.opponents:
        _check(o in opponents, "rollout.opponents", o, f"each one of {opponents}")
    _check(r.self_play_fraction == 1.0 or len(r.opponents) > 0, "rollout.opponents", r.opponents,
           "at least one opponent when rollout.self_play_fraction < 1")
    _check(r.temperature > 0, "rollout.temperature", r.temperature, "> 0")
    _check(r.top_p == 1.0, "rollout.top_p", r.top_p,
           "1.0 for training (below 1 vLLM's log-probs renormalise over the nucleus and bias the "
           "PPO ratio; eval.top_p sets evaluation's)")
    _check(r.min_p == 0.0, "rollout.min_p", r.min_p,
           "0 for training (the learner scores the whole tempered distribution: truncating it "
           "biases the PPO ratio; eval.min_p sets evaluation's)")
    _check(r.top_k == 0, "rollout.top_k", r.top_k,
           "0 for training (the learner scores the whole tempered distribution: truncating it "
           "biases the PPO ratio; eval.top_k sets evaluation's)")
    _check(r.max_new_tokens >= 1, "rollout.max_new_tokens", r.max_new_tokens, ">= 1")
    _check(r.max_turns >= 1, "rollout.max_turns", r.max_turns, ">= 1")
    _check(r.max_prompt_tokens >= 16, "rollout.max_prompt_tokens", r.max_prompt_tokens, ">= 16")
    _check(r.episode_timeout_s > 0, "rollout.episode_timeout_s", r.episode_timeout_s, "> 0")
    _check(r.kv_cache_gib > 0, "rollout.kv_cache_gib", r.kv_cache_gib, "> 0")
    _check(0 < r.gpu_memory_utilization <= 1, "rollout.gpu_memory_utilization", r.gpu_memory_utilization, "in (0, 1]")
    _check(r.dtype in DTYPE_NAMES, "rollout.dtype", r.dtype, f"one of {DTYPE_NAMES}")
    _check(r.weight_sync in WEIGHT_SYNCS, "rollout.weight_sync", r.weight_sync, f"one of {WEIGHT_SYNCS}")
    try:
        make_estimator(cfg.advantage)  # its type and bounds are the estimator's own
    except ValueError as err:
        raise ConfigError(str(err)) from None
    t = cfg.trainer
    _check(t.steps >= 1, "trainer.steps", t.steps, ">= 1")
    _check(t.lr > 0, "trainer.lr", t.lr, "> 0")
    _check(t.weight_decay >= 0, "trainer.weight_decay", t.weight_decay, ">= 0")
    _check(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), "trainer.betas", t.betas, "two numbers in [0, 1)")
    _check(t.warmup_steps >= 0, "trainer.warmup_steps", t.warmup_steps, ">= 0")
    _check(t.clip_eps > 0, "trainer.clip_eps", t.clip_eps, "> 0")
    _check(t.kl_coef >= 0, "trainer.kl_coef", t.kl_coef, ">= 0")
    _check(t.grad_clip > 0, "trainer.grad_clip", t.grad_clip, "> 0")
    _check(t.micro_batch_tokens >= 64, "trainer.micro_batch_tokens", t.micro_batch_tokens, ">= 64")
    _check(t.logits_chunk_tokens >= 1, "trainer.logits_chunk_tokens", t.logits_chunk_tokens, ">= 1")
    _check(t.loss_agg in LOSS_AGGS, "trainer.loss_agg", t.loss_agg, f"one of {LOSS_AGGS}")
    _check(t.loss_agg_length >= 0, "trainer.loss_agg_length", t.loss_agg_length, ">= 0")
    _check(t.loss_agg not in NEEDS_LENGTH or t.loss_agg_length >= 1, "trainer.loss_agg_length",
           t.loss_agg_length, f">= 1 with trainer.loss_agg={t.loss_agg} (the fixed length each "
           f"sequence's token sum is divided by, e.g. rollout.max_new_tokens)")
    _check(t.epochs >= 1, "trainer.epochs", t.epochs, ">= 1")
    _check(t.samples_per_step >= 0, "trainer.samples_per_step", t.samples_per_step, ">= 0")
    _check(isinstance(t.max_staleness, int) and t.max_staleness >= 0, "trainer.max_staleness",
           t.max_staleness, ">= 0 (0: synchronous)")
    _check(t.off_policy in OFF_POLICY, "trainer.off_policy", t.off_policy, f"one of {OFF_POLICY}")
    _check(t.importance_cap > 0 or (t.off_policy != "tis" and t.importance_cap == 0), "trainer.importance_cap",
           t.importance_cap, "> 0 (0, no cap, is for trainer.off_policy=decoupled only)")
    lo = t.lora
    _check(isinstance(lo.rank, int) and lo.rank >= 0, "trainer.lora.rank", lo.rank, ">= 0 (0: full fine-tuning)")
    _check(lo.alpha > 0, "trainer.lora.alpha", lo.alpha, "> 0")
    _check(0 <= lo.dropout < 1, "trainer.lora.dropout", lo.dropout, "in [0, 1)")
    _check(bool(lo.target_modules), "trainer.lora.target_modules", lo.target_modules, "at least one module name")
    _check(lo.publish in ("adapter", "merged"), "trainer.lora.publish", lo.publish, "adapter or merged")
    _check(lo.rank == 0 or r.weight_sync != "nccl", "rollout.weight_sync", r.weight_sync,
           "cpu or auto when trainer.lora.rank > 0 (LoRA adapters travel as a PEFT folder, not over NCCL)")
    _check(t.dtype in DTYPE_NAMES, "trainer.dtype", t.dtype, f"one of {DTYPE_NAMES}")
    _check(t.device in ("auto", "cpu", "cuda"), "trainer.device", t.device, "one of auto, cpu, cuda")
    e = cfg.eval
    _check(e.every >= 0, "eval.every", e.every, ">= 0")
    _check(e.games >= 1, "eval.games", e.games, ">= 1")
    for o in e.opponents:
        _check(o in FIXED_OPPONENTS, "eval.opponents", o, f"each one of {FIXED_OPPONENTS}")
    _check(e.temperature >= 0, "eval.temperature", e.temperature, ">= 0")
    _check(0 < e.top_p <= 1, "eval.top_p", e.top_p, "in (0, 1]")
    _check(0 <= e.min_p <= 1, "eval.min_p", e.min_p, "in [0, 1]")
    _check(e.top_k >= 0, "eval.top_k", e.top_k, ">= 0 (0: all tokens)")
    _check(e.log_episodes >= 0, "eval.log_episodes", e.log_episodes, ">= 0")
    _check(e.initial_games >= 0, "eval.initial_games", e.initial_games, ">= 0")
    _check(e.infoset_samples >= 0, "eval.infoset_samples", e.infoset_samples, ">= 0")
    check_benches(e.bench, r.max_new_tokens)
    c = cfg.checkpoint
    _check(c.every >= 0, "checkpoint.every", c.every, ">= 0")
    _check(c.keep_last >= 1, "checkpoint.keep_last", c.keep_last, ">= 1")
    p = cfg.pool
    _check(p.snapshot_every >= 0, "pool.snapshot_every", p.snapshot_every, ">= 0")
    _check(p.max_snapshots >= 1, "pool.max_snapshots", p.max_snapshots, ">= 1")
    _check(p.eval_games >= 0, "pool.eval_games", p.eval_games, ">= 0")
    _check(SNAPSHOT not in r.opponents or p.snapshot_every > 0, "rollout.opponents", r.opponents,
           "no 'snapshot' unless pool.snapshot_every > 0")
    cu = cfg.curriculum
    if cu.env:
        _check(cu.env in [e.id for e in cfg.envs], "curriculum.env", cu.env, "one of the envs' ids")
        _check(len(cu.levels) >= 1, "curriculum.levels", cu.levels, "at least one level")
        _check(0 <= cu.start < max(len(cu.levels), 1), "curriculum.start", cu.start,
               f"an index of the {len(cu.levels)} levels")
        _check(cu.every >= 1, "curriculum.every", cu.every, ">= 1")
        _check(0 < cu.gate <= 1, "curriculum.gate", cu.gate, "in (0, 1]")
        _check(cu.instances >= 1, "curriculum.instances", cu.instances, ">= 1")
        _check(cu.samples >= 1, "curriculum.samples", cu.samples, ">= 1")
    cl = cfg.cluster
    _check(cl.num_cpus is None or cl.num_cpus >= 1, "cluster.num_cpus", cl.num_cpus, ">= 1 or null")
    _check(isinstance(cl.learner_ranks, int) and cl.learner_ranks >= 1, "cluster.learner_ranks",
           cl.learner_ranks, "an integer >= 1")
    _check(cl.learner_gpus >= 0, "cluster.learner_gpus", cl.learner_gpus, ">= 0")
    _check(cl.learner_ranks == 1 or cl.learner_gpus in (0, 1), "cluster.learner_gpus", cl.learner_gpus,
           "0 or 1 when cluster.learner_ranks > 1 (each rank of a sharded learner uses one device)")
    _check(cl.learner_memory_gib is None or cl.learner_memory_gib > 0, "cluster.learner_memory_gib",
           cl.learner_memory_gib, "> 0 or null")
    _check(cl.learner_ranks == 1 or r.weight_sync != "nccl", "rollout.weight_sync", r.weight_sync,
           "cpu or auto when cluster.learner_ranks > 1 (NCCL weight transfer from a sharded learner "
           "is not built yet; its weights reach the engines through a RAM file or the object store)")
    _check(cl.learner_ranks == 1 or t.lora.rank == 0, "trainer.lora.rank", t.lora.rank,
           "0 when cluster.learner_ranks > 1 (LoRA is the single-process learner's; the sharded "
           "learner trains full weights)")
    _check(cl.worker_gpus >= 0, "cluster.worker_gpus", cl.worker_gpus, ">= 0")
    _check(cl.worker_gpus <= 1 or float(cl.worker_gpus).is_integer(), "cluster.worker_gpus",
           cl.worker_gpus, "a fraction up to 1, or a whole number of GPUs (vLLM's tensor-parallel size)")
    _check(cl.learner_cpus is None or cl.learner_cpus > 0, "cluster.learner_cpus", cl.learner_cpus, "> 0 or null")
    _check(cl.worker_cpus is None or cl.worker_cpus > 0, "cluster.worker_cpus", cl.worker_cpus, "> 0 or null")
    _check(cl.placement_strategy in PLACEMENT_STRATEGIES, "cluster.placement_strategy",
           cl.placement_strategy, f"one of {PLACEMENT_STRATEGIES}")
    _check(cl.placement_timeout_s > 0, "cluster.placement_timeout_s", cl.placement_timeout_s, "> 0")
    for key, cores in (("cluster.learner_cores", cl.learner_cores), ("cluster.worker_cores", cl.worker_cores)):
        _check(cores is None or parse_cores(str(cores)) is not None, key, cores,
               'cores as "0", "0,2" or "2-7", or null')
    _check(cl.max_worker_restarts >= 0, "cluster.max_worker_restarts", cl.max_worker_restarts, ">= 0")
    _check(r.weight_sync != "nccl" or cl.worker_gpus > 0, "rollout.weight_sync", r.weight_sync,
           "cpu or auto when cluster.worker_gpus is 0 (NCCL needs GPUs)")
    if cfg.policies:
        check_several_policies(cfg)
