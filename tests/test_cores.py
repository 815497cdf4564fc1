"""Which cores each side runs on (:mod:`selfplay.core.cores`) and the config's refusals."""

from __future__ import annotations

import os

import pytest

from selfplay.config import ConfigError, load_config
from selfplay.core.cores import available_cpus, format_cores, local_split, parse_cores, resolve_cores


def test_parse_and_format_cores():
    assert parse_cores("0") == [0] and parse_cores("0,4-6") == [0, 4, 5, 6] and parse_cores("3, 1") == [1, 3]
    assert parse_cores("a") is None and parse_cores("3-1") is None and parse_cores("") is None
    assert parse_cores("1-") is None and parse_cores("-1") is None
    assert format_cores([0, 4, 5]) == "0,4,5"


def test_the_local_asynchronous_loop_splits_the_cores_between_the_two_sides():
    assert local_split([0, 1]) == ([0], [1])
    assert local_split([0, 1, 2, 3, 4]) == ([0, 1], [2, 3, 4])
    assert local_split([0]) == ([0], [0])  # one core cannot be split
    assert resolve_cores(None, None, asynchronous=True, local=True, cpus=[0, 1]) == ([0], [1])


def test_no_pinning_in_the_synchronous_loop_or_on_a_cluster_unless_the_config_says_so():
    assert resolve_cores(None, None, asynchronous=False, local=True, cpus=[0, 1]) == (None, None)
    assert resolve_cores(None, None, asynchronous=True, local=False, cpus=[0, 1]) == (None, None)
    assert resolve_cores("1", 0, asynchronous=False, local=True, cpus=[0, 1]) == ([0], [1])


def test_a_side_named_in_the_config_keeps_its_cores_and_the_other_takes_the_rest():
    assert resolve_cores("3", None, asynchronous=True, local=True, cpus=[0, 1, 2, 3]) == ([0, 1, 2], [3])
    assert resolve_cores(None, "0-1", asynchronous=True, local=True, cpus=[0, 1, 2, 3]) == ([0, 1], [2, 3])


def test_available_cpus_are_this_process_affinity():
    assert available_cpus() == sorted(os.sched_getaffinity(0))
    assert available_cpus(1) == sorted(os.sched_getaffinity(0))[:1]


@pytest.mark.parametrize("key, value", [("cluster.learner_cores", "x"), ("cluster.worker_cores", "2-1")])
def test_malformed_cores_are_refused_in_one_line(key, value):
    with pytest.raises(ConfigError, match=rf"^{key}=.*expected cores as"):
        load_config("debug", [f"{key}={value}"])
