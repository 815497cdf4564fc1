"""A level curriculum for any environment with levels (SAT after SATURN, arXiv 2505.16368).

Levels are an ordered list of reset options (for SAT ``{"n": 3, "k": 5, "l": 5}``: the instance
parameters). Training episodes of the environment are reset at the current level. Every so often
the driver validates the policy on fresh problems at that level; once the pass@1 (the share of
validation episodes with a positive return) reaches the gate, the curriculum moves up one level.
SATURN's paper describes this gate (pass@1 >= 0.5 for its 1.5B model, 0.75 for 7B); its code runs
each stage by hand. Pure Python: the state is plain JSON, saved in checkpoints.
"""

from __future__ import annotations

from typing import Any


class LevelCurriculum:
    """The current level of one environment and the history of its validations."""

    def __init__(self, env_id: str, levels: list[dict[str, Any]], gate: float, start: int = 0) -> None:
        if not levels:
            raise ValueError(f"curriculum for {env_id}: levels must not be empty")
        if not 0 < gate <= 1:
            raise ValueError(f"curriculum.gate={gate!r}: expected in (0, 1]")
        if not 0 <= start < len(levels):
            raise ValueError(f"curriculum.start={start!r}: expected an index of the {len(levels)} levels")
        self.env_id, self.levels, self.gate = env_id, [dict(level) for level in levels], gate
        self.index = start
        #: One entry per validation: ``{"step", "level", "pass_at_1", "moved"}``.
        self.history: list[dict[str, Any]] = []

    @property
    def options(self) -> dict[str, Any]:
        """Reset options of the current level."""
        return dict(self.levels[self.index])

    @property
    def at_top(self) -> bool:
        return self.index == len(self.levels) - 1

    def record(self, step: int, pass_at_1: float) -> bool:
        """Record a validation at the current level; move up if it passed the gate (and a higher
        level exists). Returns whether it moved."""
        moved = pass_at_1 >= self.gate and not self.at_top
        self.history.append({"step": step, "level": self.index, "pass_at_1": pass_at_1, "moved": moved})
        if moved:
            self.index += 1
        return moved

    def state_dict(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "index": self.index, "levels": self.levels,
                "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved state; its levels must be this curriculum's (else the index would point
        at another problem)."""
        if state["levels"] != self.levels:
            raise ValueError(f"curriculum for {self.env_id}: the checkpoint's levels {state['levels']} "
                             f"differ from the configured {self.levels}")
        self.index, self.history = int(state["index"]), list(state["history"])
