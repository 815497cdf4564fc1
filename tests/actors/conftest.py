"""Fixtures shared by the engine tests."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import load_hf, vllm_engine
from lora_helpers import RANK, SHARED_ADAPTERS


@pytest.fixture(scope="module")
def reference(tiny_model):
    """The tiny model in float32 transformers: the exact reference for an engine's outputs."""
    return load_hf(tiny_model)


#: The shared LoRA engine while it runs, and the last test (in run order) that asks for it.
_shared: dict[str, Any] = {}


@pytest.fixture(scope="session")
def vllm_lora(tiny_model):
    """One vLLM engine with LoRA (float32, ``max_loras`` 2 per adapter) for test_lora_engines.py
    and test_multi_lora.py: a start takes about a minute on 2 cores. It serves
    :data:`lora_helpers.SHARED_ADAPTERS`; each module loads versions of its own names only, so
    the modules may run in either order, or alone. Shut down after the last test that uses it."""
    for engine in vllm_engine(tiny_model, dtype="float32", seed=0, max_model_len=512, kv_cache_gib=1,
                              weight_sync="cpu", lora_rank=RANK, max_loras=2, adapters=SHARED_ADAPTERS):
        _shared["engine"] = engine
        yield engine
    _shared.pop("engine", None)


def pytest_collection_finish(session):
    users = [item for item in session.items if "vllm_lora" in getattr(item, "fixturenames", ())]
    _shared["last"] = users[-1] if users else None


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    # A session fixture would otherwise hold the engine (a process and its KV cache) through every
    # later test of the run; shutting it down twice is harmless.
    if item is _shared.get("last") and "engine" in _shared:
        _shared["engine"].shutdown()
