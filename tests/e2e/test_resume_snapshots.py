"""Resume with snapshot opponents and evictions, at the driver level (real Ray, real vLLM, tiny
model). Scenario: snapshots every step, at most one kept, checkpoints at steps 2 and 3; then the
run is cut back to step 2, as if killed after step 3's snapshot but before its checkpoint.

Two things broke here before: step 3's eviction deleted snapshot@2's folder although checkpoint 2
still listed it (so resuming from step 2 tried to load a deleted folder), and the resumed run,
repeating step 3, could not write snapshots/step-3 over the folder the first run had left.
"""

from __future__ import annotations

import json
import shutil

import pytest

from selfplay.config import load_config
from tiny_debug import TINY_DEBUG

pytestmark = pytest.mark.slow

OVERRIDES = [*TINY_DEBUG, "name=resume", "rollout.episodes_per_step=4", "rollout.max_new_tokens=8",
             "rollout.kv_cache_gib=1", "rollout.self_play_fraction=0.5",
             "rollout.opponents=[random, snapshot]", "pool.snapshot_every=1", "pool.max_snapshots=1",
             "pool.eval_games=1", "eval.every=1", "eval.games=1", "checkpoint.every=2",
             "checkpoint.keep_last=3", "trainer.micro_batch_tokens=2048"]


def _state(path):
    state = json.loads((path / "state.json").read_text())
    return {k: state[k] for k in ("step", "advantage", "pool", "counters")}


def test_a_run_resumed_from_an_earlier_checkpoint_has_its_state_and_snapshots(tmp_path, tiny_model):
    import ray

    from ray.util.placement_group import remove_placement_group

    from selfplay.model_cache import resolve_model
    from selfplay.loop.driver import Driver, train
    from selfplay.placement.layout import plan_layout
    from selfplay.stats.metrics_writer import MetricsWriter
    from selfplay.placement.ray_session import reserve, start_ray, stop_ray
    from selfplay.placement.run_dir import with_persistent_run_root

    cfg = load_config("debug", [*OVERRIDES, f"run_root={tmp_path}", "trainer.steps=3"])
    train(cfg)
    ckpts = tmp_path / "resume" / "checkpoints"
    snapshots = tmp_path / "resume" / "snapshots"
    at_2 = _state(ckpts / "step-2")
    assert [name for name, _, _ in at_2["pool"]["snapshots"]] == ["snapshot@2"]
    assert any(k.count("|") == 2 for k in at_2["advantage"]["baselines"])  # (env, opponent, role)
    # Evicted from the live pool at step 3, but kept: checkpoint 2 still names it.
    assert sorted(p.name for p in snapshots.iterdir()) == ["step-2", "step-3"]

    shutil.rmtree(ckpts / "step-3")  # killed after step 3's snapshot, before its checkpoint

    # Restore into a fresh driver and write its state back out: it is checkpoint 2's.
    again = load_config("debug", [*OVERRIDES, f"run_root={tmp_path}", "trainer.steps=4"])
    started = start_ray(again)
    check = load_config("debug", [*OVERRIDES, f"run_root={tmp_path / 'check'}", "trainer.steps=4"])
    check, _ = with_persistent_run_root(check)
    layout = plan_layout(check.cluster, check.rollout.num_workers, local=True,
                         local_cpus=ray.cluster_resources().get("CPU", 1.0))
    pg = reserve(layout, check.cluster.placement_timeout_s)
    metrics = MetricsWriter(tmp_path / "check")
    driver = Driver(check, resolve_model("tiny"), metrics, layout, pg)
    try:
        step, counters = driver.restore(ckpts / "step-2")  # loads snapshot@2 into every worker
        driver.checkpoint(step, counters)
    finally:
        driver.shutdown()
        metrics.close()
        remove_placement_group(pg)
        if started:
            stop_ray()
    assert _state(tmp_path / "check" / "resume" / "checkpoints" / "step-2") == at_2

    # And the run itself resumes from step 2, repeats step 3 over the old snapshot folder, and ends.
    train(again, resume=True)
    final = _state(ckpts / "step-4")
    assert final["step"] == 4 and [n for n, _, _ in final["pool"]["snapshots"]] == ["snapshot@4"]
    assert final["counters"]["episodes"] == 16  # 2 steps before the cut, then 2 more, 4 each
    # Folders left: those the pool or a kept checkpoint (2 and 4) names.
    assert sorted(p.name for p in snapshots.iterdir()) == ["step-2", "step-4"]
