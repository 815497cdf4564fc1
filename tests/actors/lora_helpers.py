"""LoRA adapters for the tests, made with peft on the tiny model, as the learner's
``save_adapter`` writes them (``PeftModel.save_pretrained``)."""

from __future__ import annotations

from typing import Any

import torch

#: Every linear layer of the Llama blocks: what ``trainer.lora.target_modules`` names by default.
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA = 8, 16


def make_adapter(base_path: str, folder: str, seed: int, scale: float = 0.05, rank: int = RANK,
                 alpha: float = ALPHA, **config: Any) -> str:
    """Write a PEFT adapter folder for the model at ``base_path`` into ``folder``: peft's own
    initialisation of ``lora_A``, and seeded ``lora_B`` of std ``scale`` (peft starts B at zero,
    which would change nothing); returns ``folder``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)  # lora_A's initialisation
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=alpha, target_modules=TARGETS, **config))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    model.save_pretrained(folder)
    return folder


def load_peft(base_path: str, folder: str) -> Any:
    """The reference: float32 transformers base with the adapter applied by peft (not merged)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    return PeftModel.from_pretrained(base, folder).eval()
