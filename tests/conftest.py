"""Shared fixtures. Slow tests (real model, vLLM, Ray) are marked ``slow``."""

from __future__ import annotations

import os

import pytest

# Keep vLLM's CPU KV cache small: tests share a 2-core, 24 GiB machine.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """Folder of the tiny random Llama (prepared once, then cached)."""
    from selfplay.model_cache import prepare

    return str(prepare("tiny"))


@pytest.fixture(scope="session")
def smollm2() -> str:
    """Folder of the built-in SmolLM2-135M-Instruct (prepared once, then cached)."""
    from selfplay.model_cache import prepare

    return str(prepare("smollm2-135m-instruct"))
