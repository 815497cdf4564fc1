"""Restart bookkeeping for rollout workers, and the errors that end a run on a lost actor.

Pure (no Ray): :class:`selfplay.loop.rollout_pool.RolloutPool` records each restart here and this
module decides when a worker has died too often, and words the messages the user reads.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from selfplay.placement.run_dir import config_file


class RunAborted(RuntimeError):
    """A failure that ends the run and that the user must act on; the message says what happened
    and what to do. The CLI prints it without a traceback."""


class RestartBook:
    """How often each rollout worker has died; more than ``limit`` deaths of one worker ends the
    run (``cluster.max_worker_restarts``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.deaths: Counter[int] = Counter()

    def record(self, worker: int, cause: str) -> int:
        """Count a death of ``worker``; returns its deaths so far, or raises :class:`RunAborted`
        once they exceed the limit."""
        self.deaths[worker] += 1
        n = self.deaths[worker]
        if n > self.limit:
            raise RunAborted(f"rollout worker {worker} died {n} times, more than "
                             f"cluster.max_worker_restarts={self.limit}: ending the run (last cause: "
                             f"{one_line(cause)}). Look for out-of-memory kills (dmesg, `ray logs`) "
                             f"on its node; raise the limit only for failures that pass")
        return n

    @property
    def total(self) -> int:
        """Restarts of all workers so far (the TensorBoard counter)."""
        return sum(self.deaths.values())


def one_line(text: str, limit: int = 300) -> str:
    """The first line of an error's text, shortened: messages stay one line."""
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return first if len(first) <= limit else first[:limit - 3] + "..."


def learner_lost(run_dir: Path, last_checkpoint: Path | None, cause: str) -> RunAborted:
    """The error for a dead learner: the run cannot go on without it (the policy and optimizer
    live there), so it says how to resume from the last checkpoint."""
    config = config_file(run_dir)
    if last_checkpoint is None:
        what = (f"no checkpoint was written yet, so start it again: selfplay train --config {config} "
                f"(set checkpoint.every to lose less next time)")
    else:
        what = (f"resume from its last checkpoint ({last_checkpoint}) with: selfplay train "
                f"--config {config} --resume")
    return RunAborted(f"the learner died ({one_line(cause)}); the run stops here: {what}")
