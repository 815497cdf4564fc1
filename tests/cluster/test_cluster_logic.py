"""Pure pieces of running on a cluster: restart bookkeeping, the messages that end a run, idle
shares, the run root of a submitted job, the private local Ray's environment (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfplay.core import metric_names as names
from selfplay.stats.progress import progress_line
from selfplay.placement.ray_session import private_env, token_trap_note
from selfplay.loop.restarts import RestartBook, RunAborted, learner_lost
from selfplay.placement.run_dir import resolve_run_root
from selfplay.stats.step_figures import idle_shares, worker_figures


def test_a_worker_may_die_up_to_the_limit_then_the_run_ends_naming_it():
    book = RestartBook(limit=2)
    assert book.record(1, "killed") == 1
    assert book.record(0, "oom") == 1
    assert book.record(1, "killed") == 2
    assert book.total == 3
    with pytest.raises(RunAborted, match=r"rollout worker 1 died 3 times.*max_worker_restarts=2.*killed"):
        book.record(1, "killed\nwith a long traceback")


def test_zero_restarts_allowed_ends_the_run_at_the_first_death():
    with pytest.raises(RunAborted):
        RestartBook(limit=0).record(0, "x")


def test_a_dead_learner_says_how_to_resume(tmp_path):
    err = learner_lost(tmp_path, tmp_path / "checkpoints" / "step-4", "ActorDiedError: gone\nmore")
    text = str(err)
    assert "\n" not in text and "step-4" in text
    assert f"selfplay train --config {tmp_path / 'config.yaml'} --resume" in text
    assert "no checkpoint" in str(learner_lost(tmp_path, None, "gone"))


def test_idle_shares_worked_by_hand():
    # A 10 s step: workers generate 6 s and 4 s (idle 0.4 and 0.6), the learner works 3 s (idle 0.7).
    out = idle_shares(10.0, {0: 6.0, 1: 4.0}, 3.0)
    assert out[names.worker_metric(0, "idle_share")] == pytest.approx(0.4)
    assert out[names.worker_metric(1, "idle_share")] == pytest.approx(0.6)
    assert out[names.ROLLOUT_IDLE_SHARE] == pytest.approx(0.5)
    assert out[names.LEARNER_IDLE_SHARE] == pytest.approx(0.7)


def test_per_worker_figures_and_the_progress_line_show_a_slow_worker():
    perfs = {0: {names.ROLLOUT_TOKENS_PER_S: 120.0, names.ROLLOUT_S: 5.0},
             1: {names.ROLLOUT_TOKENS_PER_S: 30.0, names.ROLLOUT_S: 9.0}}
    values = {**worker_figures(perfs), **idle_shares(10.0, {0: 5.0, 1: 9.0}, 2.0),
              names.WORKER_RESTARTS: 1.0}
    assert values["perf/worker/1/tokens_per_s"] == 30.0
    line = progress_line(3, 6, {}, values, 60.0)
    assert "workers tok/s 120 30" in line and "idle rollout 0.30 learner 0.80" in line
    assert "restarts 1" in line


def test_a_submitted_job_writes_its_runs_where_they_persist(tmp_path):
    home = Path("/home/u")
    ray_copy = Path("/tmp/ray/session_x/runtime_resources/working_dir_files/_ray_pkg_ab12cd")
    # The plain `ray job submit --working-dir .`: not inside Ray's copy, which Ray deletes.
    root, why = resolve_run_root("runs", ray_copy, home)
    assert root == home / "selfplay" / "runs" and "temporary copy" in why
    # An absolute run_root (a shared filesystem; what cluster.submit passes) always wins; a local
    # run keeps ./runs.
    assert resolve_run_root("/shared/runs", ray_copy, home)[0] == Path("/shared/runs")
    assert resolve_run_root("runs", tmp_path, home)[0] == tmp_path / "runs"


def test_the_local_ray_is_bound_to_localhost_and_keeps_its_token_out_of_home():
    env = private_env({}, "t0k")
    assert env == {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t0k"}
    # A user's explicit choice of auth mode is theirs.
    assert "RAY_AUTH_TOKEN" not in private_env({"RAY_AUTH_MODE": "disabled"}, "t0k")


def test_the_token_trap_is_named_in_one_line_with_what_to_export():
    note = token_trap_note({}, token_file_exists=True)
    assert "\n" not in note and "export RAY_AUTH_MODE=token" in note and "ray job submit" in note
    assert token_trap_note({}, token_file_exists=False) is None
    assert token_trap_note({"RAY_AUTH_MODE": "token"}, token_file_exists=True) is None


def test_submit_helper_builds_the_ray_job_submit_command(tmp_path):
    from cluster.submit import ROOT, _split, build_command, is_local, submit_env

    assert is_local("http://127.0.0.1:8265") and is_local("localhost:8265") and not is_local("http://10.0.0.5:8265")
    cmd = build_command("http://127.0.0.1:8265", "job-1", {"env_vars": {"A": "1"}}, "python",
                        ["--config", "debug", "run_root=/r"])
    assert cmd[:8] == ["ray", "job", "submit", "--address", "http://127.0.0.1:8265", "--submission-id", "job-1",
                       "--working-dir"] and cmd[8] == str(ROOT)
    assert cmd[cmd.index("--"):] == ["--", "python", "-m", "selfplay", "train", "--config", "debug", "run_root=/r"]
    assert _split(["--config", "sat_debug", "trainer.steps=2", "-v"]) == ("sat_debug", ["trainer.steps=2"])
    token = tmp_path / "auth_token"
    assert "RAY_AUTH_MODE" not in submit_env({}, token)
    token.write_text("x")
    assert submit_env({}, token)["RAY_AUTH_MODE"] == "token"
    assert submit_env({"RAY_AUTH_MODE": "disabled"}, token)["RAY_AUTH_MODE"] == "disabled"


def test_the_runtime_env_ships_the_code_without_venv_runs_or_caches():
    import yaml

    from cluster.submit import RUNTIME_ENV

    env = yaml.safe_load(RUNTIME_ENV.read_text())
    assert {".venv/", "runs/", ".git/", "__pycache__/"} <= set(env["excludes"])
    assert all(isinstance(v, str) for v in env["env_vars"].values())  # Ray wants strings


def test_dry_run_prints_the_layout_and_refuses_one_that_cannot_fit(capsys, tiny_model):
    from selfplay.commands import cli

    assert cli.main(["train", "--config", "debug", "model=tiny", "rollout.num_workers=2",
                     "cluster.num_cpus=2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "rollout worker 1" in out and "learner" in out and "\nfits: yes\n" in out
    assert "learner memory per rank: tiny" in out  # the sharded learner's plan, from config.json
    assert cli.main(["train", "--config", "debug", "rollout.num_workers=2", "cluster.num_cpus=2",
                     "cluster.worker_cpus=1", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("config error: cluster: the layout")


def test_dry_run_shows_the_learner_ranks_and_refuses_a_plan_that_cannot_fit(capsys):
    from selfplay.commands import cli

    import torch

    # The recipe asks for 8 GPUs: a machine with fewer (CI has none) cannot place it, and says so.
    fits = torch.cuda.device_count() >= 8
    assert cli.main(["train", "--config", "spiral_kuhn_qwen3_4b", "--dry-run"]) == (0 if fits else 2)
    captured = capsys.readouterr()
    assert "learner rank 3" in captured.out and "Qwen3-4B-Base (4.02 B parameters), 4 ranks" in captured.out
    if not fits:
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and "GPU 8, PACK) does not fit this machine's local Ray" in err[0], err
    # One rank plans about 70 GiB (the logits counted one chunk at a time): a 64 GiB card cannot hold it.
    assert cli.main(["train", "--config", "spiral_kuhn_qwen3_4b", "cluster.learner_ranks=1",
                     "cluster.learner_memory_gib=64", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("config error: cluster.learner_memory_gib=64: the learner needs")


def test_submit_without_a_head_is_one_line(capsys):
    from cluster.submit import main

    assert main(["--address", "http://127.0.0.1:9", "--", "--config", "debug"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("no Ray head answers at http://127.0.0.1:9")


def test_dry_run_names_the_loop_its_staleness_bound_and_the_cores(capsys, tiny_model):
    from selfplay.commands import cli

    assert cli.main(["train", "--config", "debug", "model=tiny", "--dry-run"]) == 0
    assert "loop: synchronous, on-policy (trainer.max_staleness=0)" in capsys.readouterr().out
    assert cli.main(["train", "--config", "debug", "model=tiny", "trainer.max_staleness=2", "trainer.off_policy=tis",
                     "cluster.learner_cores=1", "cluster.worker_cores=0", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("loop: asynchronous, rollout at most 2 step(s) ahead of the learner (trainer.max_staleness), "
            "off-policy correction tis (cap 2); cores: rollout 0, learner 1") in out
