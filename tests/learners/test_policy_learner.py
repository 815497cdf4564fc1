"""Both learners implement the declared interface the learner worker calls."""

from __future__ import annotations

import inspect
from typing import Protocol

import pytest
from learner_helpers import fp32_trainer

from learners.learner import Learner
from learners.policy_learner import PolicyLearner, make_learner
from learners.sharded import ShardedLearner

METHODS = [name for name, member in vars(PolicyLearner).items()
           if callable(member) and not name.startswith("_") and name not in vars(Protocol)]


def test_the_interface_lists_what_the_worker_calls():
    assert set(METHODS) == {"train_step", "logprobs", "named_weights", "save_model", "save", "load",
                            "save_adapter", "from_rank0", "barrier"}


@pytest.mark.parametrize("cls", [Learner, ShardedLearner])
@pytest.mark.parametrize("method", METHODS)
def test_each_learner_has_every_method_with_compatible_parameters(cls, method):
    declared = inspect.signature(getattr(PolicyLearner, method)).parameters
    actual = inspect.signature(getattr(cls, method)).parameters
    # Every declared parameter is accepted under its name; anything extra has a default.
    assert list(declared) == list(actual)[:len(declared)], (cls.__name__, method)
    assert all(p.default is not inspect.Parameter.empty for p in list(actual.values())[len(declared):])


def test_the_one_process_learner_is_a_policy_learner_of_one_rank(tiny_path):
    learner = make_learner(tiny_path, fp32_trainer(), seed=0)
    assert isinstance(learner, Learner) and isinstance(learner, PolicyLearner)
    assert (learner.rank, learner.world_size) == (0, 1)
    payload = {"step": 3}
    assert learner.from_rank0(payload) is payload
    learner.barrier()  # returns at once
