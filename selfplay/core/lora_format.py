"""The wire format of adapter-only weight sync (``trainer.lora.rank > 0``): a PEFT adapter folder.

The learner writes its LoRA adapter as ``PeftModel.save_pretrained`` does (``adapter_config.json``
plus ``adapter_model.safetensors``) into a folder in ``/dev/shm``; vLLM loads that folder as it is
(a ``LoRARequest``), and the transformers engine merges it into its own weights with
:func:`merged_weights`. The object-store transport moves the folder's files as bytes
(:func:`read_folder_files`, :func:`write_folder_files`). With several policies (``policies:``) the
learner's folder holds one such adapter folder per policy, ``<folder>/<name>/``.

Shared by both ends (no Ray, no vLLM, no peft): the folder is the whole contract.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Mapping

import torch

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
#: What PEFT puts before the wrapped model's own parameter names (``PeftModel.base_model.model``).
PEFT_PREFIX = "base_model.model."
_A, _B = ".lora_A.weight", ".lora_B.weight"


@dataclass(frozen=True)
class LoraPair:
    """One adapted linear layer: its weight's Hugging Face name and ``delta = scale * B @ A``."""

    weight_name: str
    """E.g. ``model.layers.0.self_attn.q_proj.weight``."""
    lora_a: torch.Tensor
    """``[r, in_features]``."""
    lora_b: torch.Tensor
    """``[out_features, r]``."""
    scale: float

    def delta(self) -> torch.Tensor:
        """``scale * B @ A`` in float32 (``[out_features, in_features]``, the weight's shape)."""
        return self.scale * (self.lora_b.float() @ self.lora_a.float())


def lora_scale(config: Mapping) -> float:
    """The factor PEFT applies to ``B @ A``: ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA."""
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def check_config(config: Mapping) -> None:
    """Refuse what :func:`lora_pairs` cannot merge exactly (none of it is what our learner writes):
    per-module ranks or alphas, DoRA, transposed (Conv1D) weights, trained biases."""
    unsupported = {"rank_pattern": bool(config.get("rank_pattern")),
                   "alpha_pattern": bool(config.get("alpha_pattern")),
                   "use_dora": bool(config.get("use_dora")),
                   "fan_in_fan_out": bool(config.get("fan_in_fan_out")),
                   "bias": config.get("bias", "none") != "none"}
    bad = [key for key, is_set in unsupported.items() if is_set]
    if bad:
        raise ValueError(f"LoRA adapter: {', '.join(bad)} not supported (plain LoRA only)")


def weight_name(peft_name: str) -> str:
    """The Hugging Face weight a PEFT LoRA tensor adapts:
    ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`` ->
    ``model.layers.0.self_attn.q_proj.weight``."""
    for suffix in (_A, _B):
        if peft_name.endswith(suffix):
            module = peft_name[:-len(suffix)]
            return module.removeprefix(PEFT_PREFIX) + ".weight"
    raise ValueError(f"{peft_name!r} is not a LoRA A or B matrix (expected *{_A} or *{_B})")


def lora_pairs(config: Mapping, tensors: Mapping[str, torch.Tensor]) -> list[LoraPair]:
    """The adapted layers of a PEFT adapter (its config and its saved tensors), sorted by name.
    Anything else in the file (``modules_to_save`` copies, embedding adapters) is refused, as is an
    A without its B."""
    check_config(config)
    scale = lora_scale(config)
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        side = "a" if name.endswith(_A) else "b" if name.endswith(_B) else None
        if side is None:
            raise ValueError(f"LoRA adapter: tensor {name!r} is not a LoRA A or B matrix "
                             "(embedding adapters and modules_to_save are not supported)")
        halves.setdefault(weight_name(name), {})[side] = tensor
    pairs = []
    for name, half in sorted(halves.items()):
        if set(half) != {"a", "b"}:
            raise ValueError(f"LoRA adapter: {name} has only its lora_{''.join(half).upper()} matrix")
        pairs.append(LoraPair(name, half["a"], half["b"], scale))
    return pairs


def read_adapter(folder: str) -> list[LoraPair]:
    """The adapted layers of the PEFT folder ``folder`` (:func:`lora_pairs`)."""
    from safetensors.torch import load_file

    with open(os.path.join(folder, CONFIG_FILE)) as f:
        config = json.load(f)
    return lora_pairs(config, load_file(os.path.join(folder, WEIGHTS_FILE)))


def merged_weights(base: Mapping[str, torch.Tensor], pairs: list[LoraPair]) -> dict[str, torch.Tensor]:
    """``W = W_base + scale * B @ A`` for every adapted weight, in the base weight's dtype (summed in
    float32). ``base`` holds the unadapted weights by Hugging Face name; a pair naming a weight it
    lacks, or of another shape, raises."""
    merged = {}
    for pair in pairs:
        if pair.weight_name not in base:
            raise KeyError(f"LoRA adapter: {pair.weight_name!r} is not a weight of the model")
        w = base[pair.weight_name]
        delta = pair.delta()
        if tuple(delta.shape) != tuple(w.shape):
            raise ValueError(f"LoRA adapter: {pair.weight_name} is {tuple(w.shape)}, the adapter's "
                             f"B @ A is {tuple(delta.shape)}")
        merged[pair.weight_name] = (w.float() + delta.to(w.device)).to(w.dtype)
    return merged


def _check_file_name(name: str) -> list[str]:
    """The parts of a relative file name of an adapter folder: ``file`` or ``subfolder/file`` (one
    PEFT adapter per policy, one level down). Anything else (absolute, ``.``/``..``, deeper,
    backslashes) is refused: the names come from another process and must stay inside the folder."""
    parts = name.split("/")
    if len(parts) > 2 or any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise ValueError(f"adapter file name {name!r} is not a plain file name or subfolder/file name")
    return parts


def _folder_entries(folder: str) -> list[tuple[str, str]]:
    """``(name, path)`` of every file of ``folder`` and of its subfolders, sorted by name; a folder
    deeper down is refused (:func:`_check_file_name`)."""
    entries = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            entries.append((name, path))
        elif os.path.isdir(path):
            for inner in sorted(os.listdir(path)):
                inner_path = os.path.join(path, inner)
                if os.path.isdir(inner_path):
                    raise ValueError(f"adapter folder {folder}: {name}/{inner} is a folder two levels "
                                     "down (one subfolder per adapter at most)")
                if os.path.isfile(inner_path):
                    entries.append((f"{name}/{inner}", inner_path))
    return entries


def read_folder_files(folder: str) -> dict[str, bytes]:
    """Every file of an adapter folder as bytes (the object-store transport's payload), by name
    relative to the folder: ``adapter_config.json``, or ``first/adapter_config.json`` for a
    folder that holds one adapter subfolder per policy."""
    files = {}
    for name, path in _folder_entries(folder):
        with open(path, "rb") as f:
            files[name] = f.read()
    return files


def write_folder_files(folder: str, files: Mapping[str, bytes]) -> int:
    """Write ``files`` (as :func:`read_folder_files` returns them) into a new folder ``folder``;
    returns the bytes written. File names or ``subfolder/file`` names only: anything that could
    leave the folder, or go deeper, is refused before anything is written."""
    checked = [(_check_file_name(name), data) for name, data in files.items()]
    os.makedirs(folder)
    total = 0
    for parts, data in checked:
        if len(parts) == 2:
            os.makedirs(os.path.join(folder, parts[0]), exist_ok=True)
        with open(os.path.join(folder, *parts), "wb") as f:
            f.write(data)
        total += len(data)
    return total


def folder_bytes(folder: str) -> int:
    """The size of a folder's files, one level of subfolders included (an adapter's ``sync/mb``)."""
    return sum(os.path.getsize(path) for _, path in _folder_entries(folder))
