"""A layout a cluster cannot place is refused after ``cluster.placement_timeout_s`` with one line,
never a hang: tried against a real (private, local) Ray with a layout marked as a cluster's, since
a local layout is refused earlier, by ``check_fits``."""

from __future__ import annotations

import time

import pytest

from selfplay.config import load_config
from selfplay.core.config_schema import ConfigError
from selfplay.placement.layout import Layout, Slot
from selfplay.placement.ray_session import reserve, start_ray, stop_ray

pytestmark = pytest.mark.slow


def test_a_layout_the_cluster_cannot_place_is_refused_after_the_time_out():
    assert start_ray(load_config("debug", ["cluster.num_cpus=2"]))
    try:
        # One learner asking for a GPU the local Ray does not have, as on a cluster waiting for an
        # autoscaler that never adds the node.
        layout = Layout(learners=(Slot("learner", 0.5, 1.0),), workers=(Slot("rollout worker 0", 0.5, 0.0),),
                        strategy="PACK", local=False)
        start = time.perf_counter()
        with pytest.raises(ConfigError) as err:
            reserve(layout, timeout_s=2.0)
        waited = time.perf_counter() - start
        message = str(err.value)
        assert "\n" not in message and "not placed within cluster.placement_timeout_s=2 s" in message
        assert "GPU" in message
        assert waited >= 2.0  # it waited for the autoscaler as configured
        # What could be placed was given back: a layout that fits is placed at once afterwards.
        fits = Layout(learners=(Slot("learner", 0.5, 0.0),), workers=(Slot("rollout worker 0", 0.5, 0.0),),
                      strategy="PACK", local=False)
        from ray.util.placement_group import remove_placement_group

        remove_placement_group(reserve(fits, timeout_s=30.0))
    finally:
        stop_ray()
