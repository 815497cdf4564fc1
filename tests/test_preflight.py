"""Start-up checks that need the environments and the tokenizer: one line, before Ray starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from selfplay.config import load_config
from selfplay.core.config_schema import ConfigError
from selfplay.placement.preflight import check_before_start, opening_prompt_tokens


def test_a_prompt_budget_below_the_opening_prompt_names_the_field_and_the_need(tiny_model):
    from transformers import AutoTokenizer

    needed = opening_prompt_tokens("selfplay/KuhnPoker-v0", {}, AutoTokenizer.from_pretrained(tiny_model), 0)
    assert 150 < needed < 400  # the rules, the card, the legal actions, the chat template
    cfg = load_config("debug", ["rollout.max_prompt_tokens=64"])
    with pytest.raises(ConfigError, match=rf"rollout.max_prompt_tokens=64: the opening prompt of "
                                          rf"selfplay/KuhnPoker-v0 alone takes {needed} tokens"):
        check_before_start(cfg, tiny_model)
    check_before_start(load_config("debug", [f"rollout.max_prompt_tokens={needed}"]), tiny_model)


def test_environment_kwargs_it_rejects_are_one_line(tiny_model):
    cfg = load_config("debug", ["envs.0.kwargs={colour: blue}"])
    with pytest.raises(ConfigError, match=r"envs\[0\].kwargs=\{'colour': 'blue'\}: selfplay/KuhnPoker-v0 rejects them"):
        check_before_start(cfg, tiny_model)


def test_train_with_a_too_small_prompt_budget_fails_in_seconds_and_writes_nothing(tmp_path, tiny_model):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "selfplay", "train", "--config", "debug", "model=tiny",
                           f"run_root={tmp_path}", "rollout.max_prompt_tokens=16"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "config error: rollout.max_prompt_tokens=16: the opening prompt of selfplay/KuhnPoker-v0")
    assert not (tmp_path / "debug").exists()  # no run directory, no Ray, no engine
    print(f"failed after {time.perf_counter() - start:.1f} s")


def test_a_second_run_under_a_finished_runs_name_is_one_line_pointing_at_resume(tmp_path, tiny_model):
    (tmp_path / "taken" / "checkpoints" / "step-2").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "selfplay", "train", "--config", "debug", "model=tiny",
                           f"run_root={tmp_path}", "name=taken"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"config error: name='taken': {tmp_path / 'taken'} already holds checkpoints: pass --resume "
        f"to continue it, or choose another name=... (or delete the folder)"]


def test_a_leap_path_that_cannot_fit_the_context_is_one_line(tiny_model):
    cfg = load_config("leap_debug", ["rollout.max_prompt_tokens=128", "rollout.max_new_tokens=16"])
    with pytest.raises(ConfigError, match=r"rollout.max_prompt_tokens=128: a LeaP path needs its prompt "
                                          r"\(\d+ tokens\) plus up to 132 generated tokens"):
        check_before_start(cfg, tiny_model)
    check_before_start(load_config("leap_debug"), tiny_model)


def test_a_leap_dataset_that_is_missing_is_one_line(tiny_model):
    cfg = load_config("leap_r1_distill_14b", ["envs.0.kwargs.dataset=/nonexistent/aime24.jsonl"])
    with pytest.raises(ConfigError, match=r"envs\[0\].kwargs=.*selfplay/LeaP-v0 rejects them \(dataset=.*: no such file\)"):
        check_before_start(cfg, tiny_model)


def test_a_prompt_budget_error_on_first_use_comes_before_the_model_is_prepared(tmp_path):
    """On a fresh machine the built-in model is not prepared yet (most of a minute); a config that
    the tokenizer alone can refuse is refused in seconds, and nothing of the model is built."""
    env = dict(os.environ, SELFPLAY_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "selfplay", "train", "--config", "debug",
                           "rollout.max_prompt_tokens=16", f"run_root={tmp_path}"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("config error: rollout.max_prompt_tokens=16: "), line
    # Not prepared (that took about 60 s here; this run about 10 s): only the tokenizer was.
    assert not (tmp_path / "cache" / "models" / "smollm2-135m-instruct").exists()
    assert (tmp_path / "cache" / "models" / "tokenizers" / "smollm2-135m-instruct").is_dir()


def test_constrained_answers_over_actions_of_several_tokens_fail_at_start_up(tiny_model):
    """Liar's Dice bids (``bid 1 1``) are several tokens: refused before Ray starts, in one line;
    Kuhn Poker's actions are one token each and pass."""
    choices = ["envs.0.answer_prefix=\\boxed{", "envs.0.answer_choices=true"]
    check_before_start(load_config("debug", choices), tiny_model)
    cfg = load_config("debug", ["envs.0.id=selfplay/LiarsDice-v0", *choices])
    with pytest.raises(ConfigError, match=r"^envs\[0\].answer_choices=True: the action 'bid [0-9] [0-9]' "
                                          r"is [0-9]+ tokens after") as err:
        check_before_start(cfg, tiny_model)
    assert "\n" not in str(err.value)
