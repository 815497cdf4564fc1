"""Fixtures shared by the engine tests."""

from __future__ import annotations

import pytest
from engine_helpers import load_hf


@pytest.fixture(scope="module")
def reference(tiny_model):
    """The tiny model in float32 transformers: the exact reference for an engine's outputs."""
    return load_hf(tiny_model)
