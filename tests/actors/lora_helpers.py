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


#: The adapters the shared LoRA engine serves (``vllm_lora`` in conftest.py): ``default``, the one
#: shared policy that a request naming no adapter runs with (tests/actors/test_lora_engines.py),
#: and two more for tests/actors/test_multi_lora.py. Each module loads its own names only.
SHARED_ADAPTERS = ("default", "first", "second")


def lora_ids(name: str, *versions: int) -> set[int]:
    """The vLLM ids the shared engine gives these versions of adapter ``name``: ``version *
    len(adapters) + index + 1``."""
    return {v * len(SHARED_ADAPTERS) + SHARED_ADAPTERS.index(name) + 1 for v in versions}


def held(engine: Any) -> dict[str, set[int]]:
    """The adapter ids vLLM holds now, by the adapter name each id belongs to (the formula above):
    a test compares what it loaded with what it found, whatever other tests left in the engine."""
    import asyncio

    adapters = engine.settings.adapters
    by_name: dict[str, set[int]] = {name: set() for name in adapters}
    for i in asyncio.run(engine.loaded_adapters()):
        by_name[adapters[(i - 1) % len(adapters)]].add(i)
    return by_name
