"""Configuration: shipped configs parse, overrides apply, bad input fails in one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from selfplay.config import ConfigError, load_config, shipped_configs


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_loads_and_validates(name):
    cfg = load_config(name)
    assert cfg.envs and cfg.trainer.steps >= 1


def test_debug_config_is_shipped():
    assert "debug" in shipped_configs()


def test_override_sets_nested_float_from_scientific_notation():
    cfg = load_config("debug", ["trainer.lr=1e-6", "rollout.max_new_tokens=16"])
    assert cfg.trainer.lr == 1e-6 and isinstance(cfg.trainer.lr, float)
    assert cfg.rollout.max_new_tokens == 16


def test_override_inside_a_list_of_envs():
    cfg = load_config("debug", ["envs.0.id=selfplay/TicTacToe-v0", "envs.0.weight=2"])
    assert cfg.envs[0].id == "selfplay/TicTacToe-v0" and cfg.envs[0].weight == 2.0


def test_override_replaces_a_whole_list():
    cfg = load_config("debug", ["envs=[{id: selfplay/TicTacToe-v0}, {id: selfplay/KuhnPoker-v0, weight: 3}]"])
    assert [e.id for e in cfg.envs] == ["selfplay/TicTacToe-v0", "selfplay/KuhnPoker-v0"]
    assert cfg.envs[1].weight == 3.0


def test_int_is_accepted_where_float_expected_but_not_the_reverse():
    assert load_config(None, ["trainer.lr=1"]).trainer.lr == 1.0
    with pytest.raises(ConfigError, match=r"trainer.steps=2.5: expected int"):
        load_config(None, ["trainer.steps=2.5"])


@pytest.mark.parametrize("override, message", [
    ("trainer.lrr=1", r"trainer.lrr: unknown key \(expected one of: steps, lr"),
    ("trainer.lr=abc", r"trainer.lr='abc': expected float, got str"),
    ("rollout.max_turns=0", r"rollout.max_turns=0: expected >= 1"),
    ("rollout.backend=tgi", r"rollout.backend='tgi': expected one of \('vllm', 'transformers'\)"),
    ("advantage.decay=1.0", r"advantage.decay=1.0: expected in \[0, 1\)"),
    ("envs.0.id=foo", r"envs\[0\].id='foo': not a registered environment \(known: selfplay/TicTacToe-v0"),
    ("rollout.weight_sync=nccl", r"rollout.weight_sync='nccl': expected cpu or auto when cluster.worker_gpus is 0"),
    ("trainer=3", r"trainer=3: expected a mapping for TrainerConfig"),
    ("nonsense", r"override 'nonsense': expected key=value"),
    ("rollout.temperature=true", r"rollout.temperature=True: expected float, got bool"),
    ("envs.0.id=selfplay/Nope-v0", r"envs\[0\].id='selfplay/Nope-v0': not a registered environment"),
    ("advantage.type=ppo", r"advantage.type='ppo': expected one of \['grpo', 'rae'\]"),
    ("rollout.top_p=0.95", r"rollout.top_p=0.95: expected 1.0 for training .*eval.top_p"),
    ("eval.top_p=0", r"eval.top_p=0.0: expected in \(0, 1\]"),
    ("rollout.opponents=[ghost]", r"rollout.opponents='ghost': expected each one of \('random', 'strong', 'snapshot'\)"),
])
def test_bad_values_fail_with_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config("debug", [override])
    assert "\n" not in str(err.value)


def test_unknown_config_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"config 'nope': not a file and not one of \[.*'debug'"):
        load_config("nope")
    with pytest.raises(ConfigError, match=r"did you mean leap_debug\?$"):
        load_config("leap_debg")


def test_yaml_file_with_an_unknown_section_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntrainr:\n  lr: 1.0\n")
    with pytest.raises(ConfigError, match=r"^trainr: unknown key"):
        load_config(str(path))


def test_cli_reports_config_errors_in_one_line_with_exit_code_2():
    proc = subprocess.run([sys.executable, "-m", "selfplay", "config", "trainer.lr=abc"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "config error: trainer.lr='abc': expected float, got str"


def test_cli_prints_the_resolved_config_with_overrides():
    proc = subprocess.run([sys.executable, "-m", "selfplay", "config", "--config", "debug", "seed=7"],
                          capture_output=True, text=True, check=True)
    assert "seed: 7" in proc.stdout and "name: debug" in proc.stdout


@pytest.mark.parametrize("name", ["spiral_kuhn_qwen3_4b", "spiral_mix_qwen3_4b"])
def test_spiral_recipes_follow_spirals_run_sh(name):
    # Values from SPIRAL's run.sh and train_spiral.py defaults.
    cfg = load_config(name)
    t, r, e = cfg.trainer, cfg.rollout, cfg.eval
    assert (t.lr, t.kl_coef, t.warmup_steps, t.epochs) == (1e-6, 0.0, 0, 2)
    assert (t.samples_per_step, t.filter_zero_advantage, t.steps) == (128, True, 400)
    assert (r.temperature, r.top_p, r.max_new_tokens, r.max_turns) == (1.0, 1.0, 4096, 50)
    assert (e.every, e.games, e.temperature, e.top_p) == (16, 16, 0.6, 0.95)
    assert (cfg.advantage.type, cfg.advantage.decay) == ("rae", 0.95)


@pytest.mark.parametrize("name", ["spiral_kuhn_qwen3_4b", "spiral_mix_qwen3_4b"])
def test_spiral_recipes_use_spirals_forfeit_rewards_scaled_to_each_game(name):
    # SPIRAL, games scored +-1: the offender of an invalid action -1.5, the opponent +0.5.
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)

    for e in load_config(name).envs:
        env = gym.make(e.id, **e.kwargs).unwrapped
        scale = -env.min_return  # the game's largest return
        assert (env.invalid_reward, env.opponent_invalid_reward) == (-1.5 * scale, 0.5 * scale), e.id


def test_configs_record_their_format_and_another_format_is_refused(tmp_path):
    from selfplay.config import to_dict

    cfg = load_config("debug")
    assert to_dict(cfg)["format_version"] == 2  # written into every run's config.yaml
    old = tmp_path / "old.yaml"
    old.write_text("format_version: 1\nrollout: {max_prompt_tokens: 1088}\n")
    with pytest.raises(ConfigError, match=r"format_version=1: expected 2, .*subtract rollout.max_new_tokens"):
        load_config(str(old))


def test_a_misspelt_env_id_suggests_the_closest_one():
    with pytest.raises(ConfigError, match=r"'selfplay/KuhnPokr-v0': not a registered environment; "
                                          r"did you mean selfplay/KuhnPoker-v0\?"):
        load_config("debug", ["envs.0.id=selfplay/KuhnPokr-v0"])


def test_answer_prefix_is_an_env_setting_passed_to_the_game_and_round_trips(tmp_path):
    import yaml

    from selfplay.config import to_dict

    cfg = load_config("debug", ["envs.0.answer_prefix=\\boxed{"])  # the shell's \boxed{
    env = cfg.envs[0]
    assert env.answer_prefix == "\\boxed{" and env.kwargs["answer_prefix"] == "\\boxed{"
    assert load_config("debug").envs[0].answer_prefix is None  # off by default
    assert "answer_prefix" not in load_config("debug").envs[0].kwargs
    saved = tmp_path / "config.yaml"  # what a run writes, read back (as --resume does)
    saved.write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_config(str(saved)).envs[0].kwargs["answer_prefix"] == "\\boxed{"
    yaml_file = tmp_path / "prefix.yaml"
    yaml_file.write_text("envs:\n  - id: selfplay/TicTacToe-v0\n    answer_prefix: '\\boxed{'\n")
    assert load_config(str(yaml_file)).envs[0].kwargs == {"answer_prefix": "\\boxed{"}


@pytest.mark.parametrize("overrides, message", [
    (["envs.0.answer_prefix=5"], r"^envs\[0\].answer_prefix=5: expected str \| None$"),
    (["envs.0.answer_prefix=[a]"], r"^envs\[0\].answer_prefix=\['a'\]: expected str \| None$"),
    (["envs.0.answer_prefix=Answer"],
     r"^envs\[0\].answer_prefix='Answer': expected null or a string holding \\boxed\{ with no \} after it"),
    (["envs.0.answer_prefix=\\boxed{$suit"],
     r"^envs\[0\].answer_prefix='\\\\boxed\{\$suit': \$suit is not a field this game fills \(it fills: \$card\)$"),
    (["envs.0.kwargs.answer_prefix=7"], r"^envs\[0\].kwargs.answer_prefix=7: expected null or a string"),
    (["envs.0.answer_prefix=\\boxed{", "envs.0.kwargs.answer_prefix=x \\boxed{"],
     r"^envs\[0\].answer_prefix='\\\\boxed\{': expected the same as envs\[0\].kwargs.answer_prefix"),
    (["envs.0.id=selfplay/SAT-v0", "envs.0.answer_prefix=\\boxed{"],
     r"^envs\[0\].answer_prefix='\\\\boxed\{': expected null for selfplay/SAT-v0 \(forced answers are for the games"),
])
def test_a_bad_answer_prefix_fails_at_start_up_in_one_line_naming_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config("debug", overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    (["envs.0.answer_choices=true"], r"^envs\[0\].answer_choices=True: needs envs\[0\].answer_prefix"),
    (["envs.0.answer_prefix=\\boxed{", "envs.0.answer_choices=maybe"],
     r"^envs\[0\].answer_choices='maybe': expected bool"),
    (["envs.0.answer_prefix=\\boxed{", "envs.0.kwargs.answer_choices=1"],
     r"^envs\[0\].answer_choices=1: expected true or false"),
    (["envs.0.id=selfplay/SimpleNegotiation-v0", "envs.0.answer_prefix=\\boxed{", "envs.0.answer_choices=true"],
     r"^envs\[0\].answer_choices=True: expected false for selfplay/SimpleNegotiation-v0 \(its legal actions are open-ended"),
])
def test_a_bad_answer_choices_fails_at_start_up_in_one_line_naming_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config("debug", overrides)
    assert "\n" not in str(err.value)


def test_constrained_answers_pass_to_the_game():
    cfg = load_config("kuhn_cpu")
    assert cfg.envs[0].kwargs == {"answer_prefix": "\\boxed{$card", "answer_choices": True}
