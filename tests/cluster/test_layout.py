"""The resource layout from the config, and the check that a cluster can hold it (no Ray)."""

from __future__ import annotations

import pytest

from selfplay.config import ConfigError, load_config
from selfplay.placement.layout import Layout, Slot, check_fits, describe, place, plan_layout


def _layout(overrides=(), workers=2, local=True, cpus=2.0) -> Layout:
    cfg = load_config("debug", [f"rollout.num_workers={workers}", *overrides])
    return plan_layout(cfg.cluster, cfg.rollout.num_workers, local=local, local_cpus=cpus)


def test_locally_a_learner_and_two_workers_share_two_cpus_in_fractions():
    layout = _layout()
    # 2 CPUs over 3 actors: 0.666.. rounded down to 0.66 each, so the sum (1.98) never exceeds 2.
    assert [s.cpus for s in layout.slots] == [0.66, 0.66, 0.66]
    assert layout.total("CPU") <= 2.0
    assert place(layout, [{"CPU": 2.0}]) == [0, 0, 0]


def test_locally_one_worker_books_a_whole_cpu_as_before():
    assert [s.cpus for s in _layout(workers=1).slots] == [1.0, 1.0]


def test_on_a_cluster_each_actor_books_one_cpu_and_its_gpus():
    layout = _layout(["cluster.worker_gpus=1", "cluster.learner_gpus=1"], workers=4, local=False)
    assert layout.bundles() == [{"CPU": 1.0, "GPU": 1.0}] * 5
    # Two 4-GPU nodes: the learner and three workers on one, the fourth worker on the other.
    assert sorted(place(layout, [{"CPU": 8, "GPU": 4}, {"CPU": 8, "GPU": 4}])) == [0, 0, 0, 0, 1]
    assert place(layout, [{"CPU": 8, "GPU": 4}]) is None


def test_bundles_leave_out_zero_amounts_which_ray_refuses():
    assert Slot("x", 0.5, 0.0).bundle() == {"CPU": 0.5}


def test_strict_strategies():
    spread = _layout(["cluster.placement_strategy=STRICT_SPREAD"], workers=1, local=False)
    assert place(spread, [{"CPU": 4}]) is None                       # two bundles, one node
    assert place(spread, [{"CPU": 4}, {"CPU": 4}]) == [0, 1]
    pack = _layout(["cluster.placement_strategy=STRICT_PACK"], workers=2, local=False)
    assert place(pack, [{"CPU": 2}, {"CPU": 2}]) is None              # 3 CPUs, no node has 3
    assert place(pack, [{"CPU": 2}, {"CPU": 3}]) == [1, 1, 1]


def test_a_layout_that_cannot_fit_is_one_line_naming_the_fields():
    layout = _layout(["cluster.worker_cpus=1"])
    with pytest.raises(ConfigError) as err:
        check_fits(layout, [{"CPU": 2.0}])
    text = str(err.value)
    assert "\n" not in text and "cluster.worker_cpus" in text and "rollout.num_workers" in text
    assert "CPU 2.66" in text  # 0.66 + 2 x 1


def test_describe_lists_every_actor_its_resources_and_node():
    text = describe(_layout(), [{"CPU": 2.0, "GPU": 0.0}], ["127.0.0.1"])
    assert "rollout worker 1" in text and "learner" in text and "on 127.0.0.1" in text
    assert text.splitlines()[-1] == "fits: yes"
    gpu = _layout(["cluster.worker_gpus=2"], workers=1, local=False)
    assert "vLLM tensor-parallel 2" in describe(gpu, [{"CPU": 4.0, "GPU": 2.0}])


@pytest.mark.parametrize("override, field", [
    ("cluster.worker_cpus=0", "cluster.worker_cpus"),
    ("cluster.learner_cpus=-1", "cluster.learner_cpus"),
    ("cluster.worker_gpus=1.5", "cluster.worker_gpus"),
    ("cluster.placement_strategy=ANY", "cluster.placement_strategy"),
    ("cluster.placement_timeout_s=0", "cluster.placement_timeout_s"),
    ("cluster.max_worker_restarts=-1", "cluster.max_worker_restarts"),
])
def test_cluster_fields_are_checked_at_load(override, field):
    with pytest.raises(ConfigError, match=field):
        load_config("debug", [override])


def test_a_worker_with_several_gpus_shards_its_engine_over_them(tiny_model):
    from actors.engine import EngineSettings
    from actors.rollout_worker import engine_settings
    from actors.vllm_engine import VLLMEngine
    from selfplay.config import load_config

    settings = engine_settings(load_config("debug").rollout, tensor_parallel_size=2)
    args = VLLMEngine(tiny_model, settings).engine_args()
    assert args.tensor_parallel_size == 2 and args.distributed_executor_backend == "mp"
    assert VLLMEngine(tiny_model, EngineSettings()).engine_args().tensor_parallel_size == 1
