"""`selfplay train --config kuhn_two_policies` end to end on the tiny model (real Ray, real vLLM
serving both adapters): each seat's adapter trains on its own turns, evaluation plays them
head-to-head, and the checkpoint holds one PEFT adapter per policy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from selfplay.stats.metrics_writer import read_scalars

pytestmark = pytest.mark.slow

OVERRIDES = ["model=tiny", "name=two", "rollout.episodes_per_step=4", "rollout.max_new_tokens=8",
             "rollout.kv_cache_gib=1", "trainer.steps=2", "trainer.lr=1e-2", "trainer.micro_batch_tokens=2048",
             "trainer.lora.rank=8", "eval.every=2", "eval.games=1", "eval.initial_games=0",
             "eval.infoset_samples=0", "checkpoint.every=2"]


def test_two_policies_train_on_their_own_turns_and_meet_head_to_head(tmp_path, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cmd = [sys.executable, "-m", "selfplay", "train", "--config", "kuhn_two_policies",
           f"run_root={tmp_path}", *OVERRIDES]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    scalars = {k: dict(v) for k, v in read_scalars(tmp_path / "two").items()}
    # Both adapters trained at every step, each on its own seat's turns.
    for name in ("first", "second"):
        assert set(scalars[f"learner/{name}/samples"]) == {1, 2}
        assert all(v > 0 for v in scalars[f"learner/{name}/samples"].values())
    for step in (1, 2):
        assert (scalars["learner/first/samples"][step] + scalars["learner/second/samples"][step]
                == scalars["learner/samples"][step])
    # Head-to-head: seat 0's adapter against the other adapter, and seat 1's likewise.
    assert 2 in scalars["eval/KuhnPoker-v0/policy@second/p0/win_rate"]
    assert 2 in scalars["eval/KuhnPoker-v0/policy@first/p1/win_rate"]
    # One PEFT adapter per policy, each trained away from B = 0, and different from each other.
    adapters = tmp_path / "two" / "checkpoints" / "step-2" / "adapter"
    weights = []
    for name in ("first", "second"):
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapters / name)
        lora_b = [p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n]
        assert lora_b and any(float(p.abs().max()) > 0 for p in lora_b)
        weights.append(torch.cat([p.flatten() for p in lora_b]))
    assert not torch.equal(weights[0], weights[1])
