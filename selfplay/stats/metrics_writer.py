"""Writing metrics: a thin wrapper over TensorBoard's SummaryWriter, and reading them back.

The names (``game/<env>/<opponent>/p<role>/return``, ``learner/loss/pg``, ...) are defined in
:mod:`selfplay.core.metric_names`. Everything logged also lands in ``latest`` for the terminal.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from selfplay.placement.run_dir import tb_folder


class MetricsWriter:
    """Writes scalars and text to TensorBoard event files under ``<run_dir>/tb``."""

    def __init__(self, run_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # heavy; only where metrics are written

        self.dir = tb_folder(Path(run_dir))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(self.dir))
        self.latest: dict[str, float] = {}

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Log each finite scalar under its name at ``step``."""
        for name, value in values.items():
            value = float(value)
            if math.isfinite(value):
                self._writer.add_scalar(name, value, step)
                self.latest[name] = value

    def text(self, name: str, body: str, step: int) -> None:
        """Log text (episodes, the resolved config); shown as markdown, so keep it preformatted."""
        self._writer.add_text(name, "```\n" + body + "\n```", step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in a run's event files, as ``{name: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_folder(Path(run_dir))), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
