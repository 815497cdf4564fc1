"""SAT in the training loop: problems played as groups, one-player episodes, the curriculum's
level in every episode, its state in checkpoints and TensorBoard, and pass@k evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

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


class _Solver:
    """An engine stand-in that reads the SAT formula from its prompt (the real chat prompt, decoded)
    and answers a satisfying assignment found by brute force, or an unreadable reply where the
    formula has more than ``max_clauses`` clauses (a level it cannot solve)."""

    dtype, dtype_reason = "float32", "a stand-in"

    def __init__(self, tokenizer: Any, max_clauses: int) -> None:
        self.tokenizer, self.max_clauses = tokenizer, max_clauses

    async def generate(self, prompt_ids: list[int], sampling: Any) -> Any:
        from itertools import product

        from actors.engine import Generation
        from envs.sat import satisfies

        k, clauses = formula_in(self.tokenizer.decode(prompt_ids))
        bits = next(("".join(b) for b in product("01", repeat=k) if satisfies(clauses, "".join(b))), None)
        text = f"\\boxed{{{bits}}}" if bits and len(clauses) <= self.max_clauses else "I cannot tell."
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return Generation(token_ids=ids, logprobs=[0.0] * len(ids), text=text, finish_reason="stop")

    def shutdown(self) -> None:
        pass


def formula_in(prompt: str) -> tuple[int, tuple]:
    """``(k, clauses)`` of the SAT prompt's formula: the line after the one naming the variables."""
    import re

    from envs.sat import parse_formula

    match = re.search(r"over the (\d+) variables [^\n]*:\n([^\n]+)\n", prompt)
    assert match, prompt
    return int(match[1]), parse_formula(match[2], int(match[1]))


def test_a_validation_the_policy_passes_moves_the_curriculum_up_in_the_loop(tiny_model, monkeypatch):
    """One move up on a real validation. Real: the training loop (``_loop``: when to validate),
    ``Driver.validate`` (pass@1 from the episodes' returns, the curriculum's decision), a
    ``RolloutWorker`` planning and playing the problems through the episode runner, the SAT
    environment's prompt, answer parser and grading. Stood in: the engine (solves any formula of
    at most 2 clauses: the first level's, not the second's), Ray (the worker is called in this
    process) and the learner (a step collects training episodes and trains on none). Level 0
    is passed at step 1 (pass@1 1.0: up), level 1 failed at step 2 (0.0: stays), and the training
    problems of step 2 are the new level's."""
    import asyncio

    from transformers import AutoTokenizer

    import actors.rollout_worker as rollout_worker
    from selfplay.league.curriculum import LevelCurriculum
    from selfplay.loop import driver as loop

    cfg = load_config("sat_debug", ["model=tiny", "trainer.steps=2", "curriculum.every=1",
                                    "curriculum.instances=4", "rollout.episodes_per_step=4"])
    solver = _Solver(AutoTokenizer.from_pretrained(tiny_model), max_clauses=2)

    async def make_engine(*args: Any, **kwargs: Any) -> _Solver:
        return solver

    monkeypatch.setattr(rollout_worker, "make_engine", make_engine)
    worker = rollout_worker.RolloutWorker(tiny_model, cfg.rollout, cfg.envs, cfg.eval, seed=cfg.seed)
    asyncio.run(worker.init())

    class Pool:  # the rollout pool's one call that validate makes, in process
        def call(self, i: int, method: str, *args: Any) -> Any:
            return asyncio.run(getattr(worker, method)(*args))

    class Driver(loop.Driver):
        def __init__(self) -> None:  # none of the actors: only what the loop and validate read
            self.cfg, self.rollout, self.trained = cfg, Pool(), []
            self.curriculum = LevelCurriculum(cfg.curriculum.env, cfg.curriculum.levels, cfg.curriculum.gate)

        def step(self, step: int) -> tuple[list, dict[str, float]]:
            levels = {self.curriculum.env_id: self.curriculum.options}
            episodes, summaries, perf = asyncio.run(worker.collect(cfg.rollout.episodes_per_step, step, levels))
            self.trained.append({len(formula_in(solver.tokenizer.decode(s.prompt_ids))[1])
                                 for e in episodes for s in e.samples})
            return summaries, dict(perf)

        def checkpoint(self, step: int, counters: dict[str, Any]) -> None:
            pass

    class Metrics:
        def __init__(self) -> None:
            self.rows: dict[int, dict[str, float]] = {}

        def scalars(self, values: dict[str, float], step: int) -> None:
            self.rows.setdefault(step, {}).update(values)

        def flush(self) -> None:
            pass

    driver, metrics = Driver(), Metrics()
    loop._loop(cfg, driver, metrics, 0, {"episodes": 0, "rollout_tokens": 0})
    assert driver.curriculum.history == [{"step": 1, "level": 0, "pass_at_1": 1.0, "moved": True},
                                         {"step": 2, "level": 1, "pass_at_1": 0.0, "moved": False}]
    assert driver.trained == [{2}, {3}]  # clauses per training problem: level 0's l=2, then level 1's l=3
    assert [metrics.rows[s]["curriculum/SAT-v0/level"] for s in (1, 2)] == [1.0, 1.0]
