"""Draw a run's training curves (invalid-action rate, win rate and return against the random
opponent, RAE baselines) from its TensorBoard files into a PNG.

    python docs/plot_run.py runs/<name> docs/<name>.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selfplay.metrics_writer import read_scalars  # noqa: E402

PANELS = (("invalid_rate", "invalid-action rate"), ("win_rate", "win rate"), ("return", "return"))


def plot(run_dir: Path, out: Path) -> None:
    scalars = read_scalars(run_dir)
    fig, axes = plt.subplots(1, len(PANELS) + 1, figsize=(16, 3.6))
    for ax, (stat, title) in zip(axes, PANELS):
        for tag in sorted(t for t in scalars if t.startswith("game/") and t.endswith("/" + stat)):
            steps, values = zip(*scalars[tag])
            ax.plot(steps, values, marker=".", label=tag.split("/", 2)[2].rsplit("/", 1)[0])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for tag in sorted(t for t in scalars if t.startswith("game/") and t.endswith("/baseline")):
        steps, values = zip(*scalars[tag])
        axes[-1].plot(steps, values, marker=".", label=tag.split("/", 2)[2].rsplit("/", 1)[0])
    axes[-1].set_title("RAE baselines")
    axes[-1].set_xlabel("step")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{run_dir.name}: training episodes per step")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    plot(Path(sys.argv[1]), Path(sys.argv[2]))
