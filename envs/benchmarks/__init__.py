"""Benchmarks shipped with selfplay, needing no download.

``arith.jsonl``: integer arithmetic from :mod:`envs.arithmetic` at levels 1-5, 30 problems each
(150 rows of ``{"id", "question", "answer", "level"}``), written once and kept in the repository
so every run scores the same problems. ``python -m envs.benchmarks.arith`` rewrites it; the same
seed gives the same file byte for byte (a test checks it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

ARITH = Path(__file__).with_name("arith.jsonl")
ARITH_LEVELS, ARITH_PER_LEVEL, ARITH_SEED = (1, 2, 3, 4, 5), 30, 2026


def arith_items(levels: Sequence[int] = ARITH_LEVELS, per_level: int = ARITH_PER_LEVEL,
                seed: int = ARITH_SEED) -> list:
    """The arithmetic benchmark's rows: the bare question (the evaluation template asks for the
    box), the exact answer and the level."""
    from envs.arithmetic import make_dataset
    from envs.qa_data import QAItem

    problems = make_dataset(levels, per_level, seed)
    counts: dict[int, int] = {}
    items = []
    for p in problems:
        counts[p.level] = counts.get(p.level, 0) + 1
        items.append(QAItem(f"What is {p.expression}?", p.answer, f"arith-L{p.level}-{counts[p.level]}",
                            {"level": p.level}))
    return items


def write_arith(path: str | os.PathLike = ARITH) -> int:
    """Write the arithmetic benchmark to ``path``; returns the number of rows."""
    from envs.qa_data import write_jsonl

    return write_jsonl(path, arith_items())
