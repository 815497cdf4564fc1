"""SAT datasets as JSONL: the project's own rows and SATURN's, read per row, written either way.

The project's format, one JSON object per line::

    {"id": 0, "n": 3, "k": 5, "clauses": [[-1, -2, -3], [-1, -3, -5], [1, 2, 5]], "solution": "11000"}

* ``k``: number of variables (required); ``clauses``: DIMACS-style lists of non-zero integers,
  variable i as ``i`` or ``-i``, 1-based (required, non-empty).
* ``n``: literals per clause (written; optional on reading, checked against the clauses if given).
* ``solution``: a satisfying assignment as a bit string of length ``k``, variable 1 first, 1 for
  true (optional: absent or null when none is known; checked against the clauses if given).
* ``id``: any JSON value (optional). Any other key is kept and written back after these.

SATURN's format (``gtxygyzb/Saturn-code``), read and written as is::

    {"id": 0, "n_sat": 3, "k": 5, "solution": "11000", "clause": "!A!B!C & !A!C!E & ABE"}

A row is SATURN's when it has a string ``clause``, the project's when it has a list ``clauses``;
one file may mix both. Rows are written with ``json.dumps`` defaults, as SATURN's files are, so a
SATURN row read and written back in SATURN's format is the same line. Beyond 26 variables a
SATURN-format row names them x1..xk (see :mod:`envs.sat`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from envs import jsonl_rows as rows
from envs.sat import SatInstance, check_level, format_formula, generate, parse_formula

FORMATS = ("selfplay", "saturn")
_OWN_KEYS = ("id", "n", "k", "clauses", "solution")
_SATURN_KEYS = ("id", "n_sat", "k", "solution", "clause")


def row_to_instance(row: Any) -> SatInstance:
    """Parse one row of either format; ValueError says what is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "k" not in row:
        raise ValueError("missing 'k' (the number of variables)")
    if isinstance(row.get("clause"), str):
        clauses, n_key, keys = parse_formula(row["clause"], _k(row["k"])), "n_sat", _SATURN_KEYS
    elif isinstance(row.get("clauses"), list):
        clauses, n_key, keys = row["clauses"], "n", _OWN_KEYS
    else:
        raise ValueError("expected 'clauses' (a list of lists of integers, this project's format) "
                         "or 'clause' (a string such as '!A!B!C & ABE', SATURN's)")
    meta = {key: value for key, value in row.items() if key not in keys}
    inst = SatInstance(row["k"], clauses, row.get("solution"), row.get("id"), meta)
    if n_key in row and row[n_key] != inst.n:
        raise ValueError(f"{n_key}={row[n_key]!r} but the longest clause has {inst.n} literals")
    return inst


def _k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"k={value!r}: expected an integer >= 1")
    return value


def instance_to_row(inst: SatInstance) -> dict[str, Any]:
    """The project's row for ``inst`` (``id`` and ``solution`` only when known)."""
    row: dict[str, Any] = {} if inst.id is None else {"id": inst.id}
    row.update(n=inst.n, k=inst.num_vars, clauses=[list(c) for c in inst.clauses])
    if inst.solution is not None:
        row["solution"] = inst.solution
    row.update(inst.meta)
    return row


def instance_to_saturn_row(inst: SatInstance) -> dict[str, Any]:
    """SATURN's row for ``inst`` (``id`` and ``solution`` only when known)."""
    row: dict[str, Any] = {} if inst.id is None else {"id": inst.id}
    row.update(n_sat=inst.n, k=inst.num_vars)
    if inst.solution is not None:
        row["solution"] = inst.solution
    row["clause"] = format_formula(inst.clauses, inst.num_vars)
    row.update(inst.meta)
    return row


def dumps(inst: SatInstance, fmt: str = "selfplay") -> str:
    """One JSONL line (no newline) in ``fmt``: ``"selfplay"`` or ``"saturn"``."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r}: expected one of {FORMATS}")
    return json.dumps(instance_to_row(inst) if fmt == "selfplay" else instance_to_saturn_row(inst))


def loads(line: str) -> SatInstance:
    """Parse one JSONL line of either format."""
    return row_to_instance(rows.json_line(line))


def read_jsonl(path: str | os.PathLike) -> list[SatInstance]:
    """Every row of a JSONL file (blank lines skipped); ValueError names the file and line."""
    return rows.read_jsonl(path, loads)


def write_jsonl(path: str | os.PathLike, instances: Iterable[SatInstance], fmt: str = "selfplay") -> int:
    """Write one row per instance in ``fmt``; returns the number of rows written."""
    return rows.write_lines(path, (dumps(inst, fmt) for inst in instances))


def make_dataset(levels: Sequence[Sequence[int]], per_level: int, seed: int = 0) -> list[SatInstance]:
    """``per_level`` generated instances for each level ``(n, k, l)``, ids 0, 1, ... in order."""
    checked = [check_level(*level) for level in levels]
    rng = np.random.default_rng(seed)
    out = []
    for level in checked:
        for _ in range(per_level):
            inst = generate(*level, rng=rng)
            out.append(SatInstance(inst.num_vars, inst.clauses, inst.solution, len(out)))
    return out
