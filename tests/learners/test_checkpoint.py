"""Atomic checkpoints: pointer, pruning, a kill mid-write, RNG restore, exact resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from learners.learner import Learner
from learners.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from selfplay.core.config_schema import TrainerConfig
from selfplay.core.samples import Sample


@pytest.fixture(scope="module")
def tiny_path() -> str:
    from selfplay.model_cache import prepare

    return str(prepare("tiny"))


def trainer(**overrides) -> TrainerConfig:
    return TrainerConfig(**{**dict(dtype="float32", device="cpu", lr=1e-3), **overrides})


def batch(seed: int, n: int = 3) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        resp = [rng.randrange(1000) for _ in range(5)]
        s = Sample(prompt_ids=[rng.randrange(1000) for _ in range(6)], response_ids=resp,
                   logprobs=[-7.0] * 5, loss_mask=[1] * 5, env_id="t", role=i % 2, ret=1.0,
                   episode_id=str(i))
        s.advantage = rng.uniform(-1, 1)
        out.append(s)
    return out


def test_save_points_latest_at_newest_and_keeps_last_n(tiny_path, tmp_path):
    learner = Learner(tiny_path, trainer())
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, learner, {"rae": {"t|0": 0.5}}, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-3"
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-3"
    state = json.loads((tmp_path / "checkpoints" / "step-3" / "state.json").read_text())
    assert state["step"] == 3 and state["rae"] == {"t|0": 0.5}


def test_latest_ignores_temporary_and_incomplete_folders(tiny_path, tmp_path):
    save_checkpoint(tmp_path, 1, Learner(tiny_path, trainer()), {})
    (tmp_path / "checkpoints" / ".tmp-step-2-abc").mkdir()
    (tmp_path / "checkpoints" / "step-3").mkdir()  # no state.json: never finished
    (tmp_path / "checkpoints" / "latest").write_text("step-3\n")  # even if pointed at
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-1"
    assert latest_checkpoint(tmp_path / "elsewhere") is None


_KILLED_SAVER = """
import sys, time
from learners.learner import Learner
from learners.checkpoint import save_checkpoint
from selfplay.core.config_schema import TrainerConfig
run_dir, model = sys.argv[1], sys.argv[2]
learner = Learner(model, TrainerConfig(dtype="float32", device="cpu"))
save_checkpoint(run_dir, 1, learner, {"marker": 1})
save = learner.save
def slow_save(path):  # write half a checkpoint, then hang until killed
    save(path)
    print("WRITING", flush=True)
    time.sleep(600)
learner.save = slow_save
save_checkpoint(run_dir, 2, learner, {"marker": 2})
"""


def test_kill_during_save_leaves_previous_checkpoint_loadable(tiny_path, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_KILLED_SAVER), str(tmp_path),
                             tiny_path], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.time() + 120
        line = ""
        while "WRITING" not in line and time.time() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "the saver exited before writing step 2"
        assert "WRITING" in line
        assert list((tmp_path / "checkpoints").glob(".tmp-step-2-*"))  # caught mid-write
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    latest = latest_checkpoint(tmp_path)
    assert latest == tmp_path / "checkpoints" / "step-1"
    learner = Learner(tiny_path, trainer())
    assert load_checkpoint(latest, learner, restore_rng=False) == {"marker": 1, "step": 1, "format_version": 2}
    save_checkpoint(tmp_path, 2, learner, {})  # the next save clears the half-written folder
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert latest_checkpoint(tmp_path).name == "step-2"


def test_rng_states_are_restored(tiny_path, tmp_path):
    learner = Learner(tiny_path, trainer())
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = save_checkpoint(tmp_path, 1, learner, {})
    draws = (random.random(), np.random.rand(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    load_checkpoint(path, learner)
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert draws[0] == again[0] and draws[1] == again[1] and torch.equal(draws[2], again[2])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resume_reproduces_uninterrupted_run(tiny_path, tmp_path, dtype):
    cfg = trainer(dtype=dtype, warmup_steps=3)  # warm-up: the resumed lr depends on the step
    straight = Learner(tiny_path, cfg, seed=0)
    straight.train_step(batch(1))
    straight.train_step(batch(2))

    first = Learner(tiny_path, cfg, seed=0)
    first.train_step(batch(1))
    path = save_checkpoint(tmp_path, 1, first, {"rae": {}})
    resumed = Learner(tiny_path, cfg, seed=0)
    assert load_checkpoint(path, resumed)["step"] == 1 and resumed.step == 1
    resumed.train_step(batch(2))

    for (name, a), (_, b) in zip(straight.named_weights(), resumed.named_weights(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(straight.flat.master, resumed.flat.master)


def test_a_checkpoint_records_its_format_and_another_format_is_refused(tiny_path, tmp_path):
    from learners.checkpoint import FORMAT_VERSION, checkpoint_format

    learner = Learner(tiny_path, trainer())
    path = save_checkpoint(tmp_path, 1, learner, {})
    assert checkpoint_format(path) == FORMAT_VERSION == 2
    state = json.loads((path / "state.json").read_text())
    del state["format_version"]  # as the format before versions wrote it
    (path / "state.json").write_text(json.dumps(state))
    assert checkpoint_format(path) == 1
    with pytest.raises(ValueError, match=r"checkpoint format 1, this code reads format 2"):
        load_checkpoint(path, learner)


def test_resuming_a_checkpoint_of_another_format_is_one_line_before_anything_starts(tiny_path, tmp_path):
    path = save_checkpoint(tmp_path / "old", 1, Learner(tiny_path, trainer()), {})
    state = json.loads((path / "state.json").read_text())
    state["format_version"] = 1
    (path / "state.json").write_text(json.dumps(state))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "selfplay", "train", "--config", "debug", "model=tiny",
                           f"run_root={tmp_path}", "name=old", "--resume"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("config error: --resume: ") and "checkpoint format 1" in line, line
    assert time.perf_counter() - start < 60
