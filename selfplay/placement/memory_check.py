"""The learner's memory plan for a run (:mod:`learners.memory_plan` applied to the config): checked
before every ``selfplay train`` starts anything (a plan that cannot fit the learner's device
memory is one config-error line) and printed by ``--dry-run``.

The architecture is the model's own ``config.json``, read offline (:func:`model_config`): a local
folder, a built-in model, a hub id in the local Hugging Face cache, or the copy shipped with
selfplay. The device memory is ``cluster.learner_memory_gib``, else what this machine has for the
learner (:func:`learner_memory`). Where either cannot be had, one line says so and the run goes
on unchecked. A config marked ``evaluation_only`` is refused by ``selfplay train``
(:func:`check_trainable`); ``selfplay eval`` takes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from learners.memory_plan import GIB, MEMORY_FIELD
from selfplay.config import Config, ConfigError
from selfplay.placement.ray_session import cluster_address

_SET_IT = f"set {MEMORY_FIELD}"


def check_trainable(cfg: Config) -> None:
    """:class:`ConfigError` (one line) for a config marked evaluation-only: ``selfplay train``
    refuses it before anything starts."""
    if cfg.evaluation_only:
        raise ConfigError(
            f"evaluation_only=true: config {cfg.name!r} is for selfplay eval only (its learner does "
            f"not fit the devices it is written for: selfplay train --dry-run prints the plan); "
            f"run selfplay eval with it, or train a copy whose plan fits with evaluation_only=false")


def model_config(model: str) -> tuple[dict, str]:
    """``model``'s config.json, parsed, and where it was read, looking only on this machine: a
    folder holding one (or the file itself), a built-in model (its prepared folder, else the
    architecture it is built with), a hub id in the local Hugging Face cache, else the copy that
    ships with selfplay (``learners/model_configs/<name>``). :class:`LookupError`, one line, if
    none of these has it."""
    from learners.memory_plan import shipped_config, shipped_models
    from selfplay.model_cache import (BUILTIN, _hub_cache, builtin_config, hub_cached_config,
                                      is_prepared, model_dir)

    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LookupError(f"model={model!r}: the folder has no config.json")
        path = path / "config.json"
    if path.is_file():
        return _read(path), str(path)
    if model in BUILTIN:
        if is_prepared(model):
            return _read(model_dir(model) / "config.json"), str(model_dir(model) / "config.json")
        return builtin_config(model), f"the built-in {model}'s architecture (not prepared yet)"
    cached = hub_cached_config(model)
    if cached is not None:
        return _read(Path(cached)), f"the Hugging Face cache ({cached})"
    shipped = shipped_config(model)
    if shipped is not None:
        return shipped, "shipped with selfplay (learners/model_configs)"
    raise LookupError(f"model={model!r}: no config.json on this machine: not a folder, not a "
                      f"built-in model, not in the Hugging Face cache ({_hub_cache()}) and not "
                      f"shipped with selfplay (shipped: {', '.join(shipped_models())})")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise LookupError(f"{path}: not readable as JSON ({err})") from None


def host_ram_gib(meminfo: Path = Path("/proc/meminfo"),
                 cgroup_max: Path = Path("/sys/fs/cgroup/memory.max")) -> float | None:
    """This host's RAM in GiB: ``MemTotal`` of /proc/meminfo (psutil where that cannot be read),
    lowered to the cgroup's limit where one is set (a container sees the host's MemTotal, but is
    killed at its own limit); None where nothing can be read."""
    total = None
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024  # the figure is in kB
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            total = psutil.virtual_memory().total
        except ImportError:
            pass
    try:
        limit = cgroup_max.read_text().strip()
    except OSError:
        limit = "max"
    if limit.isdigit():
        total = min(total, int(limit)) if total is not None else int(limit)
    return None if total is None else total / GIB


def gpu_memory_gib() -> tuple[float | None, str]:
    """The memory of the smallest GPU this process sees (``torch.cuda.get_device_properties``)
    and which it is; (None, why) where there is none to read."""
    try:
        import torch
    except ImportError:
        return None, f"torch is not installed here to read the learner GPU's memory: {_SET_IT}"
    if not torch.cuda.is_available():
        return None, f"no CUDA device visible here to read the learner GPU's memory: {_SET_IT}"
    cards = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    card = min(cards, key=lambda c: c.total_memory)
    which = "this machine's GPU" if len(cards) == 1 else f"the smallest of this machine's {len(cards)} GPUs"
    return round(card.total_memory / GIB, 2), f"{which} ({card.name})"


def learner_memory(cfg: Config, ram_gib: float | None = None,
                   gpu: tuple[float | None, str] | None = None) -> tuple[float | None, str]:
    """The device memory (GiB) one learner rank may use and where that figure comes from, or
    (None, why not): ``cluster.learner_memory_gib`` where given; else, for a run on this machine,
    the memory of a GPU here for a GPU learner, or this host's RAM shared by the learner's ranks
    for a CPU one (an upper bound: the rollout engines take their share of it too). ``ram_gib``
    and ``gpu`` stand in for the measurements (tests)."""
    cl = cfg.cluster
    if cl.learner_memory_gib is not None:
        return cl.learner_memory_gib, MEMORY_FIELD
    address = cluster_address(cfg)
    if address:
        return None, f"the learner runs on the cluster at {address}, not on this machine: {_SET_IT}"
    if cl.learner_gpus > 0:
        return gpu if gpu is not None else gpu_memory_gib()
    ram = ram_gib if ram_gib is not None else host_ram_gib()
    if ram is None:
        return None, f"this host's RAM could not be read (/proc/meminfo, psutil): {_SET_IT}"
    ranks = cl.learner_ranks
    if ranks == 1:
        return round(ram, 2), "this host's RAM"
    return round(ram / ranks, 2), f"this host's RAM ({ram:.2f} GiB) shared by {ranks} learner ranks"


def memory_plan(cfg: Config, model: str | None = None,
                device: tuple[float | None, str] | None = None) -> tuple[Any, str]:
    """The learner's memory plan per rank (:mod:`learners.memory_plan`) for ``model`` (a path or
    a name :func:`model_config` finds; default the config's model) against ``device`` (GiB and
    where from; default :func:`learner_memory`), and where its config.json was read.
    :class:`LookupError` (one line) where no architecture config can be read."""
    import dataclasses

    from learners.memory_plan import Architecture, plan_memory
    from selfplay.core.precision import local_device, resolve_dtype

    model = model or cfg.model
    config, where = model_config(model)
    try:
        arch = Architecture.from_config(config, _display_name(model))
    except (KeyError, TypeError, ValueError) as err:
        raise LookupError(f"model={model!r}: its config.json ({where}) does not describe a decoder "
                          f"this plan knows ({type(err).__name__}: {err})") from None
    t, cl = cfg.trainer, cfg.cluster
    device_gib, source = device if device is not None else learner_memory(cfg)
    dtype, _ = resolve_dtype(t.dtype, "cuda" if cl.learner_gpus > 0 else local_device())
    try:
        plan = plan_memory(arch, cl.learner_ranks, t.micro_batch_tokens, t.gradient_checkpointing,
                           device_gib, dtype, reference=t.kl_coef > 0,
                           logits_chunk_tokens=t.logits_chunk_tokens,
                           lora=t.lora if t.lora.rank > 0 else None,
                           adapters=max(len(cfg.policies), 1))
    except ValueError as err:  # LoRA on modules the plan does not know: no plan, said in one line
        raise LookupError(str(err)) from None
    plan = dataclasses.replace(plan, device_source=source)
    return plan, where


def _display_name(model: str) -> str:
    """What the plan calls the model: a folder's name, a hub id's last part, a built-in's name."""
    path = Path(model).expanduser()
    if path.is_file():
        path = path.parent
    return path.name if path.is_dir() else model.rstrip("/").split("/")[-1]


def plan_report(cfg: Config, model: str | None = None,
                device: tuple[float | None, str] | None = None) -> tuple[str, str | None]:
    """The memory plan as text (one line where there is none), and the one-line error if it
    cannot fit the learner's device memory (else None)."""
    try:
        plan, where = memory_plan(cfg, model, device)
    except LookupError as err:
        return f"learner memory plan: none, the learner's memory is not checked: {err}", None
    text = f"{plan.table()}\n  (architecture: {where})"
    try:
        plan.check(MEMORY_FIELD)
    except ValueError as err:
        return text, str(err)
    return text, None


def check_memory(cfg: Config, model: str | None = None) -> str:
    """The memory plan as text; :class:`ConfigError` (one line) if it cannot fit."""
    text, error = plan_report(cfg, model)
    if error:
        raise ConfigError(error)
    return text
