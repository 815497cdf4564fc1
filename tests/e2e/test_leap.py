"""LeaP end to end on the tiny model: `selfplay train --config leap_debug` for two steps (real
Ray, real vLLM) and `selfplay eval --envs selfplay/LeaP-v0` printing both rows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from selfplay.stats.metrics_writer import read_scalars

pytestmark = pytest.mark.slow


def _selfplay(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "selfplay", *args], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_training_through_leap_episodes_logs_per_segment_statistics(tmp_path, tiny_model) -> None:
    _selfplay("train", "--config", "leap_debug", "model=tiny", "name=leap", f"run_root={tmp_path}",
              "trainer.steps=2", "rollout.episodes_per_step=2", "rollout.kv_cache_gib=1",
              "trainer.filter_zero_advantage=false", "checkpoint.every=2", "eval.every=2", "eval.games=1")
    scalars = read_scalars(tmp_path / "leap")
    for name in ("game/LeaP-v0/leap/pass_at_1", "game/LeaP-v0/leap/seg0/similarity",
                 "game/LeaP-v0/leap/seg0/summary_chars", "game/LeaP-v0/leap/seg1/accuracy",
                 "game/LeaP-v0/leap/answer_changes", "eval/LeaP-v0/leap/cons_at_n"):
        assert name in scalars, name
    # 2 problems x 4 paths, every path one sample for the learner
    assert [v for _, v in scalars["learner/samples"]] == [8.0, 8.0]
    assert all(0 < v <= 4 * 132 for _, v in scalars["game/LeaP-v0/leap/tokens"])  # the budget
    assert (tmp_path / "leap" / "checkpoints" / "step-2").is_dir()


def test_eval_compares_leap_with_independent_paths(tiny_model) -> None:
    out = _selfplay("eval", "--model", "tiny", "--envs", "LeaP-v0", "--games", "2", "--json").stdout
    result = json.loads(out.strip().splitlines()[-1])
    rows = result["leap"]
    assert set(rows) == {"LeaP", "independent"} and result["paths"] == 4
    for row in rows.values():
        assert row["problems"] == 2 and 0 <= row["pass@1"] <= 1 and 0 < row["tokens"] <= 4 * 176
    assert rows["LeaP"]["read_peers"] > 0 and rows["independent"]["read_peers"] == 0
