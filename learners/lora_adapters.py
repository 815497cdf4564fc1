"""The learner's LoRA adapters: wrapping the model with peft, their weights in and out.

With ``trainer.lora.rank`` > 0 the learner (:class:`learners.learner.Learner`) wraps its model
with ``peft`` and trains only the adapter; the base stays frozen in the compute dtype. This module
holds the adapter mechanics, as plain functions of the peft model, so the learner keeps the step:

* :func:`adapter_names` maps each policy to its peft adapter: one policy keeps peft's ``default``
  (:data:`ADAPTER_NAME`), several (``policies:``) are named after their policies;
* :func:`wrap_lora` injects one adapter per policy on the one base, :func:`adapter_parameters`
  gives one adapter's parameters (for its own flat buffer, :class:`learners.learner.FlatParams`);
* :func:`merged_weights` is the model as full weights, ``W + alpha/r * B @ A`` under the base's
  Hugging Face names, so every full-weight path (publishing, ``save_model``) works unchanged;
* :func:`save_adapters` writes the adapter as a PEFT folder (with several policies, one folder per
  policy, ``<folder>/<policy>/``: :func:`policy_folders`), :func:`load_adapters` copies such
  folders' weights back into the flat buffers, in place, and :func:`check_checkpoint` refuses a
  checkpoint whose adapters are not this run's (LoRA or not, other policies).

No Ray and no I/O beyond the adapter folders; peft and safetensors are imported on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch
from torch import Tensor

from selfplay.core.config_schema import LoraConfig

__all__ = ["ADAPTER_DIR", "ADAPTER_NAME", "adapter_names", "wrap_lora", "adapter_parameters",
           "merged_weights", "save_adapters", "load_adapters", "check_checkpoint", "policy_folders",
           "is_lora", "adapter_of"]

#: The folder, inside a checkpoint of a LoRA run, of the adapter (PEFT format); with several
#: policies, of one PEFT folder per policy (``adapter/<policy>/``).
ADAPTER_DIR = "adapter"
#: peft's name of the one adapter the learner trains (with several policies each adapter is
#: named after its policy).
ADAPTER_NAME = "default"
#: The files of a PEFT adapter folder.
_ADAPTER_CONFIG, _ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


def adapter_names(policies: Sequence[str]) -> dict[str, str]:
    """peft's adapter of each policy, by policy: one policy keeps peft's ``default`` (today's
    folders and names, whatever the policy is called); several are named after their policies."""
    return dict(zip(policies, policies if len(policies) > 1 else (ADAPTER_NAME,)))


def wrap_lora(model: torch.nn.Module, lora: LoraConfig, adapters: Sequence[str],
              model_path: str) -> torch.nn.Module:
    """``model`` (loaded from ``model_path``) as peft's ``PeftModel``, with one LoRA adapter on
    ``lora.target_modules`` per name in ``adapters`` (the first active; only the active one
    requires grad), in the mode (train or eval) ``model`` is in."""
    import peft

    def config() -> peft.LoraConfig:  # one object per adapter: peft keeps and edits it
        return peft.LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                               target_modules=list(lora.target_modules), bias="none",
                               task_type="CAUSAL_LM")

    # autocast_adapter_dtype=False: the adapter computes in the base's dtype, as the engines'
    # LoRA kernels do; its float32 master lives in FlatParams, like a full model's.
    wrapped = peft.get_peft_model(model, config(), adapter_name=adapters[0], autocast_adapter_dtype=False)
    for name in adapters[1:]:  # initialised in order from the seeded RNG: reproducible
        wrapped.add_adapter(name, config(), autocast_adapter_dtype=False)
    # Where the saved adapter's base is (``selfplay model merge`` and the engines read it):
    # an absolute folder, not the path as it was spelt in this process's working directory.
    base = Path(model_path).expanduser()
    for name in adapters:
        wrapped.peft_config[name].base_model_name_or_path = (
            str(base.resolve()) if base.is_dir() else model_path)
    # peft's new modules (its wrappers, the adapters' dropout) start in train mode: the same
    # mode as the model's, eval unless the learner's gradient checkpointing needs train.
    return wrapped.train(model.training)


def adapter_parameters(model: torch.nn.Module, adapter: str) -> list[torch.nn.Parameter]:
    """The parameters of peft adapter ``adapter``: by name, not by ``requires_grad`` (peft lets
    only the active adapter require grad)."""
    return [t for n, t in model.named_parameters() if adapter_of(n) == adapter]


def save_adapters(model: torch.nn.Module, path: str | Path, adapters: Mapping[str, str]) -> None:
    """Each adapter of ``adapters`` (peft adapter by policy) as a PEFT folder
    (``adapter_config.json``, ``adapter_model.safetensors``), loadable by
    ``peft.PeftModel.from_pretrained(base, path)`` and by vLLM: ``path`` itself with one policy,
    ``path/<policy>/`` each with several (:func:`policy_folders`)."""
    several = len(adapters) > 1
    for adapter in adapters.values():
        # Standalone copies of the adapter's tensors, which are views of the flat buffer.
        tensors = {n: t.detach().clone() for n, t in model.state_dict().items() if adapter_of(n) == adapter}
        # peft writes an adapter other than ``default`` into ``<dir>/<adapter>/`` and
        # ``default`` into ``<dir>`` itself: with several policies every one lands in
        # ``path/<policy>/``, a policy called ``default`` too.
        where = Path(path) / adapter if several and adapter == ADAPTER_NAME else Path(path)
        model.save_pretrained(str(where), state_dict=tensors, safe_serialization=True,
                              selected_adapters=[adapter], save_embedding_layers=False)


def load_adapters(model: torch.nn.Module, path: Path, adapters: Mapping[str, str],
                  device: torch.device) -> None:
    """The weights of the folder(s) :func:`save_adapters` wrote to ``path``, copied in place into
    each adapter's parameters (views of its flat buffer); call under ``torch.no_grad()``."""
    from safetensors.torch import load_file

    several = len(adapters) > 1
    for policy, adapter in adapters.items():
        folder = path / policy if several else path
        saved = load_file(folder / _ADAPTER_WEIGHTS, device=str(device))
        for name, p in model.named_parameters():
            if adapter_of(name) == adapter:
                key = name.replace(f".{adapter}.", ".", 1)  # PEFT files drop the adapter's name
                if key not in saved or saved[key].shape != p.shape:
                    raise ValueError(f"{folder}: no adapter weight {key} of shape {tuple(p.shape)} "
                                     f"(saved with another trainer.lora?)")
                p.copy_(saved[key])  # in place: p is a view of the flat buffer


def check_checkpoint(path: Path, lora_rank: int, policies: Sequence[str]) -> None:
    """Refuse (``ValueError``) the checkpoint folder ``path`` unless it was written as this run
    would write it: with an ``adapter/`` exactly when ``lora_rank`` > 0, and with several
    ``policies`` one adapter folder per policy (with one, a single PEFT folder)."""
    has_adapter = (path / ADAPTER_DIR).is_dir()
    if has_adapter != (lora_rank > 0):
        raise ValueError(f"{path}: checkpoint written {'with' if has_adapter else 'without'} "
                         f"LoRA, but trainer.lora.rank={lora_rank}")
    if has_adapter:
        several = len(policies) > 1
        saved = sorted(policy_folders(path / ADAPTER_DIR))
        if saved != (sorted(policies) if several else []):
            raise ValueError(f"{path}: checkpoint of " + (f"policies {', '.join(saved)}" if saved else
                                                          "one policy (no policies:)")
                             + ", but this run trains " + (f"policies {', '.join(policies)}"
                                                           if several else "one policy"))


def policy_folders(folder: str | Path) -> dict[str, Path]:
    """The per-policy PEFT folders ``folder/<policy>/`` that :func:`save_adapters` writes with
    several policies, by policy; empty where ``folder`` is one PEFT folder itself (one policy),
    or where any of its subfolders is no PEFT folder (it is something else)."""
    folder = Path(folder)
    if (folder / _ADAPTER_CONFIG).is_file() or not folder.is_dir():
        return {}
    subs = [sub for sub in sorted(folder.iterdir()) if sub.is_dir()]
    if not all((sub / _ADAPTER_CONFIG).is_file() for sub in subs):
        return {}
    return {sub.name: sub for sub in subs}


def is_lora(name: str) -> bool:
    """Whether a state-dict entry belongs to a LoRA adapter (``...q_proj.lora_A.default.weight``)."""
    return any(part.startswith("lora_") for part in name.split("."))


def adapter_of(name: str) -> str | None:
    """The adapter a parameter or state-dict entry belongs to (``...lora_A.<adapter>.weight``),
    None for the base's."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.startswith("lora_"):
            return parts[i + 1]
    return None


@torch.no_grad()
def merged_weights(model: torch.nn.Module, copy: bool = True,
                   adapters: Sequence[str] | None = None) -> Iterator[tuple[str, Tensor]]:
    """``(HF name, CPU tensor)`` of a Hugging Face model with peft's LoRA layers injected, each
    adapted weight merged: ``W + alpha/r * B @ A``, summed in float32 and rounded once to W's
    dtype. The model is not modified (one merged tensor exists at a time), so training goes on
    with W and the adapter apart. Names are the base's (``q_proj.weight``, not
    ``q_proj.base_layer.weight``); tied weights once, as ``Learner.named_weights``, whose
    ``copy`` applies to the weights without adapter (a merged one is a fresh tensor anyway).
    ``adapters``: those merged (default: the active ones); ``()``: none, the base's weights."""
    from peft.tuners.lora import LoraLayer

    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if is_lora(name) or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        prefix, inside, leaf = name.partition(".base_layer.")
        if not inside:
            yield name, tensor.detach().to("cpu", copy=copy)
            continue
        value = tensor.detach()
        if leaf == "weight" and (adapters is None or len(adapters) > 0):  # a bias (bias="none") is the base's own
            layer = layers[prefix]
            chosen = layer.active_adapters if adapters is None else adapters
            delta = sum(layer.get_delta_weight(a).float() for a in chosen)
            value = (value.float() + delta).to(value.dtype)
        yield f"{prefix}.{leaf}", value.to("cpu", copy=True)
