"""`selfplay train` end to end on the tiny model: real Ray, real vLLM, real TensorBoard files.

One run of two steps, then ``--resume`` to a third: the step numbering continues, checkpoints
rotate, and the metrics the README promises are in the event files.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from selfplay.metrics_writer import read_scalars

pytestmark = pytest.mark.slow

OVERRIDES = ["model=tiny", "name=tiny", "rollout.episodes_per_step=4", "rollout.max_new_tokens=8",
             "rollout.kv_cache_gib=1", "rollout.opponents=[random, snapshot]", "pool.snapshot_every=1",
             "pool.eval_games=1", "eval.every=1", "eval.games=1", "checkpoint.every=1",
             "checkpoint.keep_last=2", "trainer.micro_batch_tokens=2048"]


def _train(run_root, *extra):
    cmd = [sys.executable, "-m", "selfplay", "train", "--config", "debug", f"run_root={run_root}",
           *OVERRIDES, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("runs")
    first = _train(root, "trainer.steps=2")
    second = _train(root, "trainer.steps=3", "--resume")
    return root / "tiny", first, second


def test_progress_lines_count_steps_and_resume_continues_the_numbering(run):
    _, first, second = run
    assert "step 1/2 |" in first and "step 2/2 |" in first and "ETA" in first
    assert "resumed from" in second and "step 3/3 |" in second and "step 1/3" not in second


def test_run_directory_holds_config_log_events_and_rotated_checkpoints(run):
    run_dir, _, _ = run
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"] == "tiny" and config["trainer"]["steps"] == 3
    assert "step 3/3" in (run_dir / "train.log").read_text()
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert ckpts == ["step-2", "step-3"]  # keep_last=2
    assert (run_dir / "checkpoints" / "step-3" / "config.json").is_file()  # a Hugging Face folder
    state = json.loads((run_dir / "checkpoints" / "step-3" / "state.json").read_text())
    assert state["step"] == 3 and "advantage" in state and state["pool"]["snapshots"]


def test_tensorboard_has_the_documented_metric_hierarchy(run):
    run_dir, _, _ = run
    scalars = read_scalars(run_dir)
    for tag in ("learner/loss/pg", "learner/grad_norm", "learner/clip_fraction", "learner/entropy",
                "learner/lr", "perf/rollout_tokens_per_s", "perf/weight_sync_s", "learner/tokens_per_s",
                "game/KuhnPoker-v0/self/p0/baseline", "pool/policy/mu", "pool/random/ordinal"):
        assert tag in scalars, (tag, sorted(scalars))
    assert any(t.startswith("game/KuhnPoker-v0/") and t.endswith("/invalid_rate") for t in scalars)
    assert any(t.startswith("eval/KuhnPoker-v0/random/") for t in scalars)
    assert any(t.startswith("pool/snapshot@") for t in scalars)
    assert [s for s, _ in scalars["learner/loss/pg"]] == [1, 2, 3]  # resumed at step 3, not 1
    # The engines' own load time of each publish (it once read a key the engines never return).
    assert scalars["sync/load_s"] and all(v > 0 for _, v in scalars["sync/load_s"])
