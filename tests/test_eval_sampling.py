"""Evaluation's min-p and top-k (LeaP's sampling for R1-style models), refused for training
rollouts; LeaP's settings in ``leap_r1_distill_14b`` and ``selfplay eval --envs LeaP-v0`` (pure)."""

from __future__ import annotations

import pytest

from actors.engine import SamplingSettings
from actors.schedule import eval_sampling, train_sampling
from selfplay.commands.leap_eval import format_table, leap_sampling, mode_kwargs, summarize_row
from selfplay.config import ConfigError, load_config
from selfplay.core.samples import Episode


@pytest.mark.parametrize("override, field", [
    ("eval.min_p=1.5", "eval.min_p"), ("eval.min_p=-0.1", "eval.min_p"), ("eval.top_k=-1", "eval.top_k"),
    ("rollout.min_p=0.05", "rollout.min_p"), ("rollout.top_k=40", "rollout.top_k"),
])
def test_bounds_and_training_truncation_are_refused_naming_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}=") as err:
        load_config(None, [override])
    assert "\n" not in str(err.value)
    if field.startswith("rollout"):
        assert "PPO ratio" in str(err.value)


def test_evaluation_samples_with_min_p_and_top_k_unless_greedy() -> None:
    cfg = load_config(None, ["eval.temperature=0.6", "eval.top_p=0.95", "eval.min_p=0.05", "eval.top_k=40"])
    s = eval_sampling(cfg.rollout, cfg.eval)
    assert (s.temperature, s.top_p, s.min_p, s.top_k) == (0.6, 0.95, 0.05, 40)
    greedy = eval_sampling(cfg.rollout, load_config(None, ["eval.min_p=0.05", "eval.top_k=40"]).eval)
    assert (greedy.temperature, greedy.top_p, greedy.min_p, greedy.top_k) == (0.0, 1.0, 0.0, 0)
    t = train_sampling(cfg.rollout)
    assert (t.top_p, t.min_p, t.top_k) == (1.0, 0.0, 0)


def test_vllm_request_carries_min_p_and_top_k() -> None:
    pytest.importorskip("vllm")
    from actors.vllm_engine import sampling_params

    params = sampling_params(SamplingSettings(temperature=0.6, top_p=0.95, min_p=0.05, top_k=40))
    assert (params.temperature, params.top_p, params.min_p, params.top_k) == (0.6, 0.95, 0.05, 40)
    greedy = sampling_params(SamplingSettings(temperature=0.0, min_p=0.05, top_k=40))
    assert (greedy.min_p, greedy.top_k) == (0.0, 0)


def test_leap_r1_config_follows_leaps_code_for_r1_models() -> None:
    cfg = load_config("leap_r1_distill_14b")
    assert cfg.envs[0].kwargs["prompt"] == "leap"  # leap_prefix_MATH / leap_subfix_MATH
    e = cfg.eval
    assert (e.temperature, e.top_p, e.min_p, e.top_k) == (0.6, 0.95, 0.05, 40)
    assert (cfg.rollout.top_p, cfg.rollout.min_p, cfg.rollout.top_k) == (1.0, 0.0, 0)


def test_leap_eval_replaces_greedy_by_leaps_sampling_and_asks_the_baseline_as_leap() -> None:
    ours = leap_sampling(SamplingSettings(temperature=0.0))
    assert (ours.temperature, ours.top_p, ours.min_p, ours.top_k) == (0.6, 0.95, 0.05, 40)
    configured = SamplingSettings(temperature=0.8, top_p=0.9, min_p=0.1, top_k=20)
    assert leap_sampling(configured) == configured
    kwargs = {"prompt": "leap", "num_paths": 8}
    assert mode_kwargs(kwargs, True) == {"prompt": "leap", "num_paths": 8, "share": True}
    assert mode_kwargs(kwargs, False) == {"prompt": "cot", "num_paths": 8, "share": False}


def test_leap_eval_table_shows_finished_paths() -> None:
    episode = Episode("selfplay/LeaP-v0", "e", [], {}, [0, 1], extra={
        "leap/pass_at_1": 1.0, "leap/cons_at_n": 1.0, "leap/tokens": 10, "leap/answered": 1.0,
        "leap/finished": 0.5})
    row = summarize_row([episode])
    assert row["finished"] == 0.5
    lines = format_table({"LeaP": row}, paths=2).splitlines()
    assert "finished" in lines[0] and lines[2].split()[7] == "0.50"
