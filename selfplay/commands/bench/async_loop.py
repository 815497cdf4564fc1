"""``selfplay bench async``: the same training run (config, seed) once per staleness k, one after
the other, and what overlapping rollout and learning buys.

Each run trains in its own directory ``<run_root>/<name>-async-k<k>`` (removed first if a
previous benchmark left it: a run directory holding checkpoints is otherwise refused, and the
figures must come from this invocation only); the directories stay for TensorBoard afterwards.
The figures are computed by :mod:`selfplay.stats.async_figures` from each run's scalars and the
loop's start and end in its ``train.log``.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from typing import Any, Sequence

from selfplay.config import Config, validate
from selfplay.stats import async_figures as af

#: What ``selfplay bench async`` runs without ``--staleness``.
DEFAULT_STALENESS = (0, 1, 2)


def run_config(cfg: Config, k: int) -> Config:
    """``cfg`` trained with ``trainer.max_staleness=k`` under its own name, run root made absolute."""
    from selfplay.placement.run_dir import with_persistent_run_root

    out = dataclasses.replace(cfg, name=f"{cfg.name}-async-k{k}",
                              trainer=dataclasses.replace(cfg.trainer, max_staleness=k))
    validate(out)
    return with_persistent_run_root(out)[0]


def bench_async(cfg: Config, staleness: Sequence[int] = DEFAULT_STALENESS) -> dict[str, Any]:
    """Train ``cfg`` once per k in ``staleness`` (must include 0) and return the figures: per run
    (keyed by k as a string, for JSON), the speed-ups against k=0 and the cluster arithmetic."""
    from selfplay.loop.driver import train
    from selfplay.placement.run_dir import log_file
    from selfplay.stats.metrics_writer import read_scalars

    staleness = af.parse_staleness(",".join(map(str, staleness)))
    configs = {k: run_config(cfg, k) for k in staleness}  # every config checked before any run
    runs: dict[int, dict[str, Any]] = {}
    for i, (k, run_cfg) in enumerate(configs.items(), 1):
        print(f"bench async: run {i}/{len(configs)}: trainer.max_staleness={k}, {run_cfg.trainer.steps} "
              f"steps in {run_cfg.run_dir}", flush=True)
        if run_cfg.run_dir.exists():
            shutil.rmtree(run_cfg.run_dir)
        start = time.perf_counter()
        train(run_cfg)
        wall_s = time.perf_counter() - start
        loop_s = af.loop_span_s(log_file(run_cfg.run_dir).read_text())
        runs[k] = {**af.run_figures(read_scalars(run_cfg.run_dir), loop_s), "wall_s": wall_s,
                   "run_dir": str(run_cfg.run_dir)}
        print(f"bench async: k={k} done in {wall_s:.0f} s ({runs[k]['loop_s']:.1f} s in the training "
              f"loop, {runs[k]['samples_per_s']:.2f} samples/s)", flush=True)
    speedup = af.speedups(runs)
    for k in runs:
        runs[k]["speedup"] = speedup[k]
    base = runs[0]
    cluster = af.cluster_arithmetic(base["rollout_s"] or 0.0, base["learn_s"] or 0.0, base["publish_s"] or 0.0)
    return {"bench": "async", "name": cfg.name, "seed": cfg.seed, "steps": cfg.trainer.steps,
            "episodes_per_step": cfg.rollout.episodes_per_step,
            "runs": {str(k): r for k, r in runs.items()}, "cluster": cluster}


def report(figures: dict[str, Any]) -> None:
    """Print the figures of :func:`bench_async` for a person: a table and the cluster line."""
    runs = {int(k): r for k, r in figures["runs"].items()}
    print(f"bench async: {figures['name']} (seed {figures['seed']}), {figures['steps']} steps of "
          f"{figures['episodes_per_step']} episodes per k; loop_s = the training loop's wall clock "
          f"(start-up excluded, evaluations and checkpoints included), step_s = mean perf/step_s, "
          f"staleness = mean and max over the samples trained on")
    for line in af.format_table(runs):
        print(line)
    print(af.format_cluster(figures["cluster"]))
