"""Fixtures for the learner tests (builders live in learner_helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_path() -> str:
    from selfplay.model_cache import prepare

    return str(prepare("tiny"))
