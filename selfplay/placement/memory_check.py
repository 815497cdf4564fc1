"""The learner's memory plan for a run (:mod:`learners.memory_plan` applied to the config): checked
before every ``selfplay train`` starts anything (a plan that cannot fit
``cluster.learner_memory_gib`` is one config-error line) and printed by ``--dry-run``."""

from __future__ import annotations

from typing import Any

from selfplay.config import Config, ConfigError


def memory_plan(cfg: Config, model: str | None = None) -> Any:
    """The learner's memory plan per rank (:mod:`learners.memory_plan`) for ``model`` (a folder,
    or the config's model: a hub id whose architecture ships with selfplay), or None when its
    architecture is not known offline."""
    from learners.memory_plan import load_architecture, plan_memory
    from selfplay.core.precision import local_device, resolve_dtype

    from selfplay.model_cache import BUILTIN, is_prepared, model_dir

    if model is None and cfg.model in BUILTIN and is_prepared(cfg.model):
        model = str(model_dir(cfg.model))  # its config.json, without preparing anything here
    try:
        arch = load_architecture(model or cfg.model)
    except (ValueError, OSError):
        return None
    t, cl = cfg.trainer, cfg.cluster
    dtype, _ = resolve_dtype(t.dtype, "cuda" if cl.learner_gpus > 0 else local_device())
    return plan_memory(arch, cl.learner_ranks, t.micro_batch_tokens, t.gradient_checkpointing,
                       cl.learner_memory_gib, dtype, reference=t.kl_coef > 0)


def plan_report(cfg: Config, model: str | None = None) -> tuple[str, str | None]:
    """The memory plan as text, and the one-line error if it cannot fit
    ``cluster.learner_memory_gib`` (else None)."""
    plan = memory_plan(cfg, model)
    if plan is None:
        return f"learner memory plan: no architecture config for {model or cfg.model} offline", None
    try:
        plan.check("cluster.learner_memory_gib")
    except ValueError as err:
        return plan.table(), str(err)
    return plan.table(), None


def check_memory(cfg: Config, model: str | None = None) -> str:
    """The memory plan as text; :class:`ConfigError` (one line) if it cannot fit."""
    text, error = plan_report(cfg, model)
    if error:
        raise ConfigError(error)
    return text
