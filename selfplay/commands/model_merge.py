"""``selfplay model merge CHECKPOINT_OR_ADAPTER --out DIR``: a LoRA adapter merged into its base.

The source is a checkpoint of a LoRA run (its adapter is in ``adapter/``, :data:`learners.learner.ADAPTER_DIR`)
or a PEFT adapter folder itself (``adapter_config.json`` + ``adapter_model.safetensors``, what
``Learner.save_adapter`` writes). A run with several policies (``policies:``) keeps one adapter per
policy, ``adapter/<policy>/``, and its checkpoint folder's own weights are the base's: ``--policy
NAME`` picks the one to merge. The base is the adapter's ``base_model_name_or_path`` (the
learner writes the base's absolute folder there; a built-in name or cached hub id is resolved as
everywhere else), or ``--base``. The result is a Hugging Face folder (weights, config, tokenizer)
that transformers and vLLM load like any model: every adapted weight is ``W + alpha/r * B @ A``,
summed in float32 and stored in the base's own dtype, every other weight is the base's.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["adapter_folder", "base_of", "merge"]

_ADAPTER_CONFIG = "adapter_config.json"


def adapter_folder(source: str | Path, policy: str | None = None) -> Path:
    """The PEFT folder in ``source``: ``source`` itself or its ``adapter/`` (a checkpoint); of
    several policies' (``<folder>/<policy>/``), ``policy``'s, which must then be given."""
    from learners.lora_adapters import ADAPTER_DIR, policy_folders

    source = Path(source).expanduser()
    candidates = (source, source / ADAPTER_DIR)
    for folder in candidates:
        if (folder / _ADAPTER_CONFIG).is_file():
            if policy is not None:
                raise ValueError(f"{folder}: one adapter (a run without several policies): leave out --policy")
            return folder
    # A checkpoint's adapter/ first: a checkpoint folder itself may look like one of policies.
    for folder in reversed(candidates):
        found = policy_folders(folder)
        if found:
            if policy not in found:
                raise ValueError(f"{folder}: adapters of policies {', '.join(found)}: "
                                 + ("pick one with --policy NAME" if policy is None else
                                    f"no policy {policy!r}"))
            return found[policy]
    raise ValueError(f"{source}: no LoRA adapter there (neither {_ADAPTER_CONFIG} nor "
                     f"{ADAPTER_DIR}/{_ADAPTER_CONFIG}: a checkpoint of a run with trainer.lora.rank > 0, "
                     f"or a folder written by save_adapter)")


def base_of(adapter: Path, base: str | None = None) -> str:
    """The base model's folder: ``base`` if given, else the adapter's ``base_model_name_or_path``;
    a name that is no folder is resolved as a built-in or cached model."""
    from selfplay.model_cache import resolve_model

    name = base or json.loads((adapter / _ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not name:
        raise ValueError(f"{adapter / _ADAPTER_CONFIG}: no base_model_name_or_path; give --base")
    return name if Path(name).expanduser().is_dir() else str(resolve_model(name))


def merge(source: str | Path, out: str | Path, base: str | None = None, policy: str | None = None) -> Path:
    """Merge the adapter of ``source`` (``policy``'s, of several policies) into its base and write
    the model to ``out``; returns it."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    adapter = adapter_folder(source, policy)
    base_path = base_of(adapter, base)
    # Merged in float32 (W + delta rounded once), stored in the dtype the base is stored in.
    dtype = getattr(AutoConfig.from_pretrained(base_path), "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out = Path(out).expanduser()
    merged.to(dtype).save_pretrained(out, safe_serialization=True)
    # A checkpoint holds the tokenizer the run used; an adapter folder alone takes the base's.
    source = Path(source).expanduser()
    has_tokenizer = (source / "tokenizer_config.json").is_file()
    AutoTokenizer.from_pretrained(source if has_tokenizer else base_path).save_pretrained(out)
    return out
