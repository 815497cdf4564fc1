"""``selfplay bench {rollout,learner,sync,async}``: benchmarks that print figures (never timed tests).

Each returns a dict of figures; the CLI prints it as one JSON line last with ``--json``.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from selfplay.config import Config
from selfplay.model_cache import resolve_model

log = logging.getLogger(__name__)


def run(what: str, cfg: Config, ranks: int = 0, sizes: dict[str, int] | None = None,
        staleness: Sequence[int] | None = None) -> dict[str, Any]:
    """Run benchmark ``what`` on the config's model and settings; ``ranks`` > 0 times the sharded
    learner on 1 and ``ranks`` ranks (``learner`` only). ``sizes`` overrides the benchmark's own
    sizes (rollout: ``n``, ``max_new_tokens``; learner: ``num_samples``, ``seq_len``, ``steps``).
    ``staleness``: the values of ``trainer.max_staleness`` to train with (``async`` only)."""
    if what == "async":  # whole training runs: the driver resolves the model itself
        from selfplay.commands.bench.async_loop import DEFAULT_STALENESS, bench_async, report

        figures = bench_async(cfg, staleness or DEFAULT_STALENESS)
        report(figures)
        return figures
    model, sizes = resolve_model(cfg.model), dict(sizes or {})
    if what == "learner" and ranks > 0:
        from selfplay.commands.bench.learner import bench_sharded

        figures = bench_sharded(model, cfg.trainer, ranks, **sizes)
        print(f"sharded learner: 1 rank {figures['tokens_per_s_1_ranks']:.1f} tokens/s   {ranks} ranks "
              f"{figures[f'tokens_per_s_{ranks}_ranks']:.1f} tokens/s "
              f"({figures[f'tokens_per_s_per_rank_{ranks}_ranks']:.1f} per rank)   speed-up "
              f"{figures['speedup']:.2f} (ideal {ranks})   [{figures['device']}, {figures['dtype']}, "
              f"{figures['threads_per_rank']:.0f} threads a rank]")
        return {"bench": "learner", **figures}
    if what == "rollout":
        from selfplay.commands.bench.rollout import bench_rollout

        return bench_rollout(model, dtype=cfg.rollout.dtype, kv_cache_gib=cfg.rollout.kv_cache_gib, **sizes)
    if what == "learner":
        from selfplay.commands.bench.learner import bench_learner

        figures = bench_learner(model, cfg.trainer, **sizes)
        print(f"learner: {figures['learner_tokens_per_s']:.1f} tokens/s   bare torch loop: "
              f"{figures['bare_tokens_per_s']:.1f} tokens/s   ratio {figures['ratio']:.2f} (target >= 0.9)"
              f"   [{figures['device']}, {figures['dtype']}, CPU {figures['cpu_capability']}]")
        return {"bench": "learner", **figures}
    if what == "sync":
        from selfplay.commands.bench.sync import bench_sync, report

        figures = bench_sync(model, dtype=cfg.rollout.dtype, adapter_rank=cfg.trainer.lora.rank)
        report(figures)
        return {"bench": "sync", **figures}
    raise ValueError(f"unknown benchmark {what!r}")
