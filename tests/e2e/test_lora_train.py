"""`selfplay train` with LoRA end to end on the tiny model (real Ray, real vLLM serving adapters):
the adapter is what trains and what the engines receive, and the checkpoint's adapter loads with
``PeftModel.from_pretrained`` (exact resume with adapters: tests/learners/test_lora.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from selfplay.stats.metrics_writer import read_scalars
from tiny_debug import TINY_DEBUG

pytestmark = pytest.mark.slow

OVERRIDES = [*TINY_DEBUG, "name=lora", "rollout.episodes_per_step=4", "rollout.max_new_tokens=8",
             "rollout.kv_cache_gib=1", "eval.every=0", "checkpoint.every=1", "trainer.micro_batch_tokens=2048",
             "trainer.lora.rank=8", "trainer.lr=1e-2", "trainer.max_staleness=1"]


def _train(run_root, *extra: str) -> str:
    cmd = [sys.executable, "-m", "selfplay", "train", "--config", "debug", f"run_root={run_root}", *OVERRIDES, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def test_lora_run_publishes_adapters_and_its_checkpoint_loads_with_peft(tmp_path, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _train(tmp_path, "trainer.steps=2")
    run_dir = tmp_path / "lora"
    scalars = read_scalars(run_dir)
    # Only the adapter travels: a rank-8 adapter of the tiny model is far below its full weights.
    assert [s for s, _ in scalars["sync/mb"]] == [1, 2] and max(v for _, v in scalars["sync/mb"]) < 1.0
    adapter = run_dir / "checkpoints" / "step-2" / "adapter"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().max()) > 0 for p in lora_b)  # trained away from B = 0
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    merged = model.merge_and_unload()
    assert not torch.equal(merged.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight)
