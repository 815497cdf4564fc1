"""Off-policy corrections of the PPO loss (``trainer.off_policy``)."""

from __future__ import annotations

#: ``trainer.off_policy`` values.
OFF_POLICY = ("none", "tis", "decoupled")
