"""SAT in the training loop: problems played as groups, one-player episodes, the curriculum's
level in every episode, its state in checkpoints and TensorBoard, and pass@k evaluation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from actors.schedule import plan_evaluation, plan_training, train_sampling
from selfplay.config import load_config

SAT = "selfplay/SAT-v0"


def test_each_problem_is_played_group_size_times_as_one_group_at_the_curriculum_level():
    cfg = load_config("sat_debug")
    level = {"n": 3, "k": 4, "l": 4}
    specs = plan_training(cfg.envs, cfg.rollout, cfg.seed, 10, step=3, worker=0, level_options={SAT: level})
    assert len(specs) == 10
    groups = [specs[i:i + 4] for i in range(0, 10, 4)]  # group_size 4; the last group is cut at 2
    assert [len(g) for g in groups] == [4, 4, 2]
    for g in groups:
        assert len({(s.seed, s.group_id) for s in g}) == 1 and g[0].group_id is not None
    assert len({g[0].group_id for g in groups}) == 3
    assert all(s.options == level and s.opponent == "self" and s.policy_roles == [0] for s in specs)


def test_a_one_player_env_is_evaluated_without_opponents_once_per_problem_and_sample():
    cfg = load_config("sat_debug")
    specs = plan_evaluation(cfg.envs, [SAT], ["random", "strong"], games=3, seed=1,
                            sampling=train_sampling(cfg.rollout),
                            options={"n": 2, "k": 3, "l": 2}, repeats=2)
    seeds = [s.seed for s in specs]
    assert [s.opponent for s in specs] == ["self"] * 6  # no opponent, whatever was listed
    assert seeds[0::2] == seeds[1::2] and len(set(seeds)) == 3  # 3 problems, each sampled twice
    assert [s.group_id for s in specs][0::2] == [s.group_id for s in specs][1::2]
    again = plan_evaluation(cfg.envs, [SAT], [], games=3, seed=1, sampling=train_sampling(cfg.rollout),
                            options={"n": 2, "k": 3, "l": 2}, repeats=2)
    assert [s.seed for s in again] == seeds  # the same problems for the same seed
    other = plan_evaluation(cfg.envs, [SAT], [], games=3, seed=2, sampling=train_sampling(cfg.rollout),
                            options={"n": 2, "k": 3, "l": 2}, repeats=2)
    assert not {s.seed for s in other} & set(seeds)  # another seed, other problems


@pytest.mark.slow
def test_the_curriculum_moves_up_is_saved_and_resumes_at_its_level(tmp_path, tiny_model, monkeypatch):
    from selfplay.league.curriculum import LevelCurriculum
    from selfplay.loop.driver import train
    from selfplay.stats.metrics_writer import read_scalars

    overrides = ["model=tiny", f"run_root={tmp_path}", "name=sat", "rollout.max_new_tokens=8",
                 "rollout.kv_cache_gib=1", "rollout.episodes_per_step=8", "curriculum.every=1",
                 "curriculum.instances=2", "checkpoint.every=1", "trainer.micro_batch_tokens=2048"]
    record = LevelCurriculum.record
    # A scripted validation: the tiny random model never solves anything, so report a pass.
    monkeypatch.setattr(LevelCurriculum, "record", lambda self, step, p: record(self, step, 1.0))
    train(load_config("sat_debug", [*overrides, "trainer.steps=2"]))
    ckpt = tmp_path / "sat" / "checkpoints"
    state = json.loads((ckpt / "step-2" / "state.json").read_text())["curriculum"]
    assert state["index"] == 2 and [h["moved"] for h in state["history"]] == [True, True]
    monkeypatch.setattr(LevelCurriculum, "record", record)  # the real gate: pass@1 0 stays put
    train(load_config("sat_debug", [*overrides, "trainer.steps=3"]), resume=True)
    state = json.loads((ckpt / "step-3" / "state.json").read_text())["curriculum"]
    assert state["index"] == 2 and state["history"][-1] == {"step": 3, "level": 2, "pass_at_1": 0.0,
                                                             "moved": False}
    scalars = read_scalars(tmp_path / "sat")
    assert [v for _, v in scalars["curriculum/SAT-v0/level"]] == [1.0, 2.0, 2.0]
    assert [s for s, _ in scalars["curriculum/SAT-v0/pass_at_1"]] == [1, 2, 3]


@pytest.mark.slow
def test_eval_reports_unbiased_pass_at_k_per_level(tiny_model):
    proc = subprocess.run([sys.executable, "-m", "selfplay", "eval", "--config", "sat_debug", "--model", "tiny",
                           "--envs", "SAT-v0", "--levels", "2,3,2 3,5,5", "--instances", "2", "--samples", "3",
                           "--json", "rollout.max_new_tokens=8", "rollout.kv_cache_gib=1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])["levels"][SAT]
    assert [(r["level"], r["D"], r["instances"], r["samples"]) for r in rows] == [
        ("2,3,2", 3.08, 2, 3), ("3,5,5", 5.63, 2, 3)]
    for r in rows:  # pass@3 >= pass@1 always; the tiny random model solves nothing well-formed
        assert set(r) >= {"pass@1", "pass@3"} and r["pass@3"] >= r["pass@1"]


def test_bad_levels_are_one_line_errors():
    proc = subprocess.run([sys.executable, "-m", "selfplay", "eval", "--envs", "SAT-v0", "--model", "tiny",
                           "--levels", "3,2,5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("config error: --levels: ")
