"""Draw a run's training curves (invalid-action rate, win rate and return per opponent and role,
RAE baselines, the curriculum's level and pass@1 where there is one, and LeaP's figures where
the run played LeaP-v0) from its TensorBoard files into a PNG.

    python docs/plot_run.py runs/<name> docs/<name>.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selfplay.stats.metrics_writer import read_scalars  # noqa: E402

PANELS = (("invalid_rate", "invalid-action rate"), ("win_rate", "win rate"), ("return", "return"))
LEAP_STATS = ("pass_at_1", "cons_at_n", "answered")


def plot(run_dir: Path, out: Path) -> None:
    scalars = read_scalars(run_dir)
    curriculum = sorted(t for t in scalars if t.startswith("curriculum/"))
    leap = sorted(t for t in scalars if t.startswith("game/") and t.rsplit("/", 1)[-1] in LEAP_STATS)
    extra = bool(curriculum) + bool(leap)
    fig, axes = plt.subplots(1, len(PANELS) + 1 + extra, figsize=(16 + 4 * extra, 3.6))
    for ax, (stat, title) in zip(axes, PANELS):
        for tag in sorted(t for t in scalars if t.startswith("game/") and t.endswith("/" + stat)):
            steps, values = zip(*scalars[tag])
            ax.plot(steps, values, marker=".", label=tag.split("/", 2)[2].rsplit("/", 1)[0])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for tag in sorted(t for t in scalars if t.startswith("game/") and t.endswith("/baseline")):
        steps, values = zip(*scalars[tag])
        axes[len(PANELS)].plot(steps, values, marker=".", label=tag.split("/", 2)[2].rsplit("/", 1)[0])
    baselines = axes[len(PANELS)]
    baselines.set_title("RAE baselines")
    baselines.set_xlabel("step")
    if baselines.lines:
        baselines.legend(fontsize=7)
    for tag in curriculum:  # the level (index) and the validations' pass@1
        steps, values = zip(*scalars[tag])
        axes[len(PANELS) + 1].plot(steps, values, marker="o", label=tag.split("/", 1)[1])
    if curriculum:
        axes[len(PANELS) + 1].set_title("curriculum")
        axes[len(PANELS) + 1].set_xlabel("step")
        axes[len(PANELS) + 1].legend(fontsize=7)
    for tag in leap:  # shares in [0, 1]
        steps, values = zip(*scalars[tag])
        axes[-1].plot(steps, values, marker=".", label=tag.rsplit("/", 1)[-1])
    if leap:
        axes[-1].set_title("LeaP paths")
        axes[-1].set_xlabel("step")
        axes[-1].legend(fontsize=7)
    fig.suptitle(f"{run_dir.name}: training episodes per step")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    plot(Path(sys.argv[1]), Path(sys.argv[2]))
