"""``episodes.jsonl`` in the run directory: every training episode the learner received, one line
each, in step order: ``{"step", "episode_id", "env_id", "seed", "group_id", "opponent", "outcome"}``.

An audit of what a run consumed: the problem seeds (which fix the SAT instance or the row of a
JSONL source) and episode ids show that nothing was lost or trained twice, across restarts and
``--resume`` (which first drops the lines of steps after the checkpoint it starts from: those
steps are played again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from selfplay.core.samples import Episode

__all__ = ["EpisodeLedger", "LEDGER"]

LEDGER = "episodes.jsonl"


class EpisodeLedger:
    """Appends a step's episodes to ``<run_dir>/episodes.jsonl``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LEDGER

    def record(self, step: int, episodes: list[Episode]) -> None:
        """Append the episodes of training step ``step`` (counted from 1)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            for e in sorted(episodes, key=lambda e: e.episode_id):
                f.write(json.dumps({"step": step, "episode_id": e.episode_id, "env_id": e.env_id,
                                    "seed": e.seed, "group_id": e.group_id, "opponent": e.opponent,
                                    "outcome": e.outcome}) + "\n")

    def truncate(self, step: int) -> None:
        """Keep the lines of steps up to ``step`` (resuming from its checkpoint); atomic."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def read(self) -> list[dict]:
        """Every line, in order."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()]
