"""`selfplay train` with the learner sharded over 2 ranks (FSDP2 on gloo, real Ray and vLLM,
the tiny model): it runs on this 2-core machine as it is, snapshots and checkpoints are written
by the ranks together, the model folder loads in transformers, and --resume continues."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tiny_debug import TINY_DEBUG

pytestmark = pytest.mark.slow

OVERRIDES = [*TINY_DEBUG, "name=sharded", "cluster.learner_ranks=2", "rollout.episodes_per_step=4",
             "rollout.max_new_tokens=8", "rollout.kv_cache_gib=1", "rollout.opponents=[random, snapshot]",
             "pool.snapshot_every=1", "pool.eval_games=0", "eval.every=0", "checkpoint.every=1"]


def _train(run_root, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "selfplay", "train", "--config", "debug",
                           f"run_root={run_root}", *OVERRIDES, *extra],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def test_two_learner_ranks_train_checkpoint_and_resume(tmp_path, tiny_model) -> None:
    from transformers import AutoModelForCausalLM

    first = _train(tmp_path, "trainer.steps=2")
    assert "learner memory per rank: tiny" in first and "2 ranks" in first
    assert "step 2/2 |" in first
    second = _train(tmp_path, "trainer.steps=3", "--resume")
    assert "resumed from" in second and "step 3/3 |" in second
    ckpt = tmp_path / "sharded" / "checkpoints" / "step-3"
    assert (ckpt / "sharded" / ".metadata").is_file()  # optimizer and master weights, sharded
    assert json.loads((ckpt / "state.json").read_text())["step"] == 3
    AutoModelForCausalLM.from_pretrained(ckpt)  # the gathered model folder loads anywhere
    assert (tmp_path / "sharded" / "snapshots" / "step-3" / "config.json").is_file()
