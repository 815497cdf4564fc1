"""The asynchronous loop end to end on the tiny model (real Ray, real vLLM), and its exact resume.

One run of three steps with ``trainer.max_staleness=2``: the log names the mode, TensorBoard has
the staleness trained on (at most 2) and both sides' idle shares. Then the run is cut back to its
first checkpoint, as if it had been killed right after writing it while the batches of steps 2
and 3 were being generated, and ``--resume`` plays those steps again. The batches in flight were
planned before the pool held its first snapshot: the checkpoint keeps those plans, so the resumed
run replays the same episodes (ids, problem seeds, opponents: none lost, none repeated, same
order), which also equal the run's own schedule (:func:`actors.schedule.plan_training`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from actors.schedule import plan_training
from selfplay.config import load_config
from selfplay.stats.episode_ledger import EpisodeLedger
from selfplay.stats.metrics_writer import read_scalars
from tiny_debug import TINY_DEBUG

pytestmark = pytest.mark.slow

OVERRIDES = [*TINY_DEBUG, "name=async", "rollout.episodes_per_step=6", "rollout.max_new_tokens=8",
             "rollout.kv_cache_gib=1", "rollout.self_play_fraction=0.5", "rollout.opponents=[random, snapshot]",
             "pool.snapshot_every=1", "pool.eval_games=0", "eval.every=0", "checkpoint.every=1",
             "checkpoint.keep_last=3", "trainer.micro_batch_tokens=2048", "trainer.steps=3",
             "trainer.max_staleness=2", "trainer.off_policy=tis"]


def _train(run_root, *extra: str) -> str:
    cmd = [sys.executable, "-m", "selfplay", "train", "--config", "debug", f"run_root={run_root}", *OVERRIDES,
           *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def _consumed(run_dir) -> list[tuple]:
    return [(r["step"], r["episode_id"], r["seed"], r["opponent"]) for r in EpisodeLedger(run_dir).read()]


def test_async_run_logs_staleness_and_resumes_exactly(tmp_path, tiny_model):
    log = _train(tmp_path)
    run_dir = tmp_path / "async"
    assert "loop: asynchronous, at most 2 step(s) ahead of the learner" in log
    scalars = read_scalars(run_dir)
    lags = [v for _, v in scalars["learner/staleness_max"]]
    assert len(lags) == 3 and max(lags) <= 2 and lags[0] == 0  # step 1 trains the initial weights' batch
    assert [v for _, v in scalars["learner/dropped/stale"]] == [0.0, 0.0, 0.0]
    assert all(0 <= v <= 1 for _, v in scalars["perf/rollout_idle_share"] + scalars["perf/learner_idle_share"])
    assert "learner/importance_weight/mean" in scalars
    first = _consumed(run_dir)

    # The schedule: every step's episodes as planned, in order, none twice.
    cfg = load_config("debug", OVERRIDES)
    planned = [(s + 1, spec.episode_id, spec.seed) for s in range(3)
               for spec in sorted(plan_training(cfg.envs, cfg.rollout, cfg.seed, 6, s, 0), key=lambda p: p.episode_id)]
    assert [c[:3] for c in first] == planned
    # Steps 2 and 3 were planned before snapshot@1 existed: their snapshot seats are self-play
    # (planned again after the checkpoint, which holds snapshot@1, they would face it).
    later = [spec.opponent for s in (1, 2) for spec in plan_training(cfg.envs, cfg.rollout, cfg.seed, 6, s, 0)]
    assert "snapshot" in later and not any(c[3].startswith("snapshot") for c in first)

    # Killed right after the first checkpoint: the later ones never got written.
    for name in ("step-2", "step-3"):
        shutil.rmtree(run_dir / "checkpoints" / name)
    resumed = _train(tmp_path, "--resume")
    assert "generating again the 2 batches that were in flight" in resumed
    assert _consumed(run_dir) == first
