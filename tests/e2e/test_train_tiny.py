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

from envs.benchmarks import ARITH
from selfplay.stats.metrics_writer import read_scalars
from tiny_debug import TINY_DEBUG

pytestmark = pytest.mark.slow

OVERRIDES = [*TINY_DEBUG, "name=tiny", "rollout.episodes_per_step=4", "rollout.max_new_tokens=8",
             "rollout.kv_cache_gib=1", "rollout.opponents=[random, snapshot]", "pool.snapshot_every=1",
             "pool.eval_games=1", "eval.every=1", "eval.games=1", "eval.initial_games=1",
             "eval.infoset_samples=4", "checkpoint.every=1",
             "checkpoint.keep_last=2", "trainer.micro_batch_tokens=2048",
             # Two problems of the shipped benchmark at every evaluation, split over the workers.
             f"eval.bench={{arith: '{ARITH},limit=2'}}"]


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
    assert "| bench arith 0." in first and "benchmark arith at step 2: pass@1" in first


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
    # Evaluation starts at step 0 (where the curves start) on a fresh run, not again on resuming;
    # head-to-head against the step-0 policy and Kuhn Poker's sampled figures at every evaluation.
    for tag in ("eval/KuhnPoker-v0/initial/p0/win_rate", "eval/KuhnPoker-v0/initial/p1/return",
                "eval/KuhnPoker-v0/infoset_invalid_share_max", "eval/bench/arith/pass_at_1",
                "eval/bench/arith/answered", "eval/bench/arith/tokens"):
        assert [s for s, _ in scalars[tag]] == [0, 1, 2, 3], tag
    # The tiny model never answers in the format: no exploitability figure, only the invalid share.
    assert "eval/KuhnPoker-v0/exploitability" not in scalars
    assert all(v == 1.0 for _, v in scalars["eval/KuhnPoker-v0/infoset_invalid_share_max"])
    assert [s for s, _ in scalars["learner/loss/pg"]] == [1, 2, 3]  # resumed at step 3, not 1
    # The engines' own load time of each publish (it once read a key the engines never return):
    # logged at every publish, and a part of that publish's whole time, not more.
    loads, totals = scalars["sync/load_s"], scalars["perf/weight_sync_s"]
    assert [s for s, _ in loads] == [s for s, _ in totals] and {s for s, _ in loads} == {1, 2, 3}
    assert all(0 < load <= total for (_, load), (_, total) in zip(loads, totals))


def test_weight_sync_and_learner_figures_add_up(run):
    """Each publish (after every step, and once more on resuming) writes the policy's weights, in
    the engines' dtype, to a RAM file the engines then load: its size is the checkpoint's weights
    at that dtype, writing and loading are disjoint parts of the publish, and each rate is at least
    its amount over a time measured around it (event files hold float32: hence the tolerances)."""
    import torch
    from safetensors.torch import load_file

    from selfplay.core.precision import resolve_dtype, torch_dtype

    run_dir, _, _ = run
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    device = "cuda" if config["cluster"]["worker_gpus"] > 0 else "cpu"
    dtype = torch_dtype(resolve_dtype(config["rollout"]["dtype"], device)[0])
    weights = load_file(run_dir / "checkpoints" / "step-3" / "model.safetensors")
    nbytes = sum(t.numel() * (t.new_empty(0, dtype=dtype) if t.is_floating_point() else t).element_size()
                 for t in weights.values())
    scalars = read_scalars(run_dir)

    def series(*tags):
        steps = [s for s, _ in scalars[tags[0]]]
        assert all([s for s, _ in scalars[t]] == steps for t in tags), tags  # one row per call
        return zip(*[[v for _, v in scalars[t]] for t in tags])

    sync = list(series("sync/mb", "sync/write_s", "sync/load_s", "sync/mb_per_s", "perf/weight_sync_s"))
    assert len(sync) >= 3
    for mb, write_s, load_s, mb_per_s, total_s in sync:
        assert mb == pytest.approx(nbytes / 1e6, rel=1e-6)
        assert 0 < write_s and 0 < load_s and write_s + load_s <= total_s
        assert mb_per_s >= mb / total_s * (1 - 1e-5)  # its megabytes over at most the whole publish
    # Each learner step is part of its loop step, whose time the driver measures on its own: the
    # learner's rate is at least its tokens over that time (a wrong unit or time would fall below).
    learner = list(series("learner/tokens", "learner/step_s", "learner/tokens_per_s", "perf/step_s"))
    assert len(learner) == 3
    for tokens, step_s, tokens_per_s, loop_s in learner:
        assert 0 < step_s <= loop_s
        assert tokens_per_s >= tokens / loop_s
