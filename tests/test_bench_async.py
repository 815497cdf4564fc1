"""``selfplay bench async`` run as a user runs it, on the tiny model: two runs (k = 0 and 1) of two
steps each, and figures that are present and sane; their speed is printed, never asserted.

The transformers engine, not vLLM: it starts in seconds, where vLLM's start-up would double this
test's time, and the benchmark's figures come from the training loop whichever engine generates.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from tiny_debug import TINY_DEBUG

pytestmark = pytest.mark.slow

OVERRIDES = [*TINY_DEBUG, "rollout.backend=transformers", "trainer.steps=2", "rollout.episodes_per_step=4",
             "rollout.max_new_tokens=8", "trainer.micro_batch_tokens=2048",
             # Evaluated at steps 0 and 2 (the last), a game a role: the head-to-head at the end.
             "eval.every=2", "eval.games=1", "eval.initial_games=1", "eval.infoset_samples=4"]


def test_bench_async_runs_each_k_in_its_own_directory_and_reports_sane_figures(tiny_model, tmp_path):
    stale = tmp_path / "debug-async-k1"  # left by an earlier benchmark: replaced, not resumed
    (stale / "checkpoints" / "step-9").mkdir(parents=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "selfplay", "bench", "async", "--config", "debug",
                           f"run_root={tmp_path}", *OVERRIDES, "--staleness", "0,1", "--json"],
                          capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert "run 1/2: trainer.max_staleness=0" in out and "run 2/2: trainer.max_staleness=1" in out
    assert "synchronous" in out and "max(rollout, learn + publish)" in out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["bench"] == "async" and sorted(figures["runs"]) == ["0", "1"]
    assert not (stale / "checkpoints" / "step-9").exists()

    for k, run in figures["runs"].items():
        assert run["run_dir"] == str(tmp_path / f"debug-async-k{k}")
        assert run["steps"] == 2 and run["samples"] > 0 and run["samples_per_s"] > 0
        # The steps are a part of the loop (with the evaluations), the loop a part of the run (with
        # the start-up), the run a part of the command.
        assert run["time_source"] == "train.log"
        assert 0 < run["steps_s"] < run["loop_s"] < run["wall_s"] < wall
        assert run["step_s"] == pytest.approx(run["steps_s"] / 2)
        for share in ("rollout_idle_share", "learner_idle_share"):
            assert 0 <= run[share] <= 1, (k, share)
        for phase in ("rollout_s", "learn_s", "publish_s"):  # a batch may generate during evaluation
            assert 0 < run[phase] < run["loop_s"], (k, phase)
        assert run["staleness_max"] <= int(k) and run["dropped_stale"] >= 0
        assert 0 <= run["invalid_share"]["KuhnPoker-v0"] <= 1
        # The tiny model never answers in the format: no exploitability; the head-to-head is there.
        assert run["kuhn_exploitability"] is None
        assert run["head_to_head"]["KuhnPoker-v0"]["step"] == 2
        assert 0 <= run["head_to_head"]["KuhnPoker-v0"]["win_rate"] <= 1
    k0 = figures["runs"]["0"]
    assert k0["staleness_mean"] == 0 and k0["staleness_max"] == 0 and k0["speedup"] == 1.0
    # Synchronous: each step is collect, learn, publish, one after the other.
    assert k0["rollout_s"] + k0["learn_s"] + k0["publish_s"] <= k0["step_s"]
    assert figures["runs"]["1"]["speedup"] == pytest.approx(figures["runs"]["1"]["samples_per_s"] / k0["samples_per_s"])

    c = figures["cluster"]
    assert (c["rollout_s"], c["learn_s"], c["publish_s"]) == (k0["rollout_s"], k0["learn_s"], k0["publish_s"])
    assert c["sync_s"] == pytest.approx(c["rollout_s"] + c["learn_s"] + c["publish_s"])
    assert max(c["rollout_s"], c["learn_s"] + c["publish_s"]) == pytest.approx(c["async_s"])
    assert 1 <= c["speedup"] <= 2
