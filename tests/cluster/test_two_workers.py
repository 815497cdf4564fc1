"""Two rollout workers on the private local Ray (tiny model): both hold the same weights, and
after a step both generate with the same, updated ones (each reports the weight version)."""

from __future__ import annotations

import pytest

from selfplay.config import load_config
from tiny_debug import TINY_DEBUG

pytestmark = pytest.mark.slow

PROMPT = list(range(100, 132))  # any token ids: a greedy answer and its log-probs fingerprint the weights


def test_two_workers_generate_with_the_same_updated_weights(tmp_path, tiny_model):
    import ray

    from selfplay.loop.driver import Driver
    from selfplay.placement.layout import plan_layout
    from selfplay.stats.metrics_writer import MetricsWriter
    from selfplay.placement.ray_session import reserve, start_ray, stop_ray

    cfg = load_config("debug", [*TINY_DEBUG, "rollout.num_workers=2", "rollout.episodes_per_step=4",
                                "rollout.max_new_tokens=8", "rollout.kv_cache_gib=1", "trainer.lr=1e-3",
                                "eval.every=0", f"run_root={tmp_path}"])
    assert start_ray(cfg)
    driver = None
    try:
        layout = plan_layout(cfg.cluster, 2, local=True, local_cpus=ray.cluster_resources()["CPU"])
        with MetricsWriter(tmp_path) as metrics:
            driver = Driver(cfg, tiny_model, metrics, layout, reserve(layout, 60))
            before = driver.rollout.call_all("probe", PROMPT)
            episodes, figures = driver.step(0)
            after = driver.rollout.call_all("probe", PROMPT)
    finally:
        if driver is not None:
            driver.shutdown()
        stop_ray()
    assert len(episodes) == 4 and figures["sync/weight_version"] == 1
    assert [p["weight_version"] for p in before] == [0, 0] and [p["weight_version"] for p in after] == [1, 1]
    assert before[0]["token_ids"] == before[1]["token_ids"]
    assert before[0]["logprobs"] == pytest.approx(before[1]["logprobs"], abs=1e-4)
    # Both changed, and to the same weights.
    assert max(abs(a - b) for a, b in zip(after[0]["logprobs"], before[0]["logprobs"])) > 1e-3
    assert after[0]["token_ids"] == after[1]["token_ids"]
    assert after[0]["logprobs"] == pytest.approx(after[1]["logprobs"], abs=1e-4)
    # Per-worker figures and idle shares of the step.
    for i in (0, 1):
        assert figures[f"perf/worker/{i}/tokens_per_s"] > 0 and 0 <= figures[f"perf/worker/{i}/idle_share"] <= 1
    assert 0 <= figures["perf/rollout_idle_share"] <= 1 and 0 <= figures["perf/learner_idle_share"] <= 1
