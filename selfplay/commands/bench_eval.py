"""``selfplay eval --bench NAME=SOURCE ... [--model A --model B]``: held-out benchmarks (MATH-500,
AIME, GSM8K files, the shipped arithmetic one) as one table: pass@1 with its 95% interval,
unbiased pass@k, the answered rate and mean tokens per benchmark and model; with two models, the
paired difference per benchmark (second minus first, over the same problems).

Each model is loaded in turn on one rollout worker in this process, or, where the config has
``rollout.num_workers`` > 1, on that many Ray workers started as training starts them, the problems
split over them (:mod:`selfplay.commands.bench_workers`); every answer of every benchmark is
submitted at once, so each engine batches them continuously (progress lines with an ETA on stderr). Sampling is ``eval.*`` (greedy by default); more than one sample per problem under
greedy decoding uses SPIRAL's temperature 0.6 / top-p 0.95 instead, and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import replace
from typing import Any

from selfplay.config import Config, ConfigError, RolloutConfig
from selfplay.core.bench_spec import BenchSpec, parse_bench, problem_counts, split_arg
from selfplay.stats.bench_figures import format_table, paired_difference, summarize


def labels(models: list[str]) -> list[str]:
    """Table labels: the model names, a repeated one numbered (``tiny``, ``tiny#2``)."""
    return [m if m not in models[:i] else f"{m}#{models[:i].count(m) + 1}" for i, m in enumerate(models)]


def parse_bench_args(texts: list[str]) -> list[BenchSpec]:
    """The ``--bench`` flags; ConfigError, one line, for a malformed or repeated one."""
    specs: list[BenchSpec] = []
    for text in texts:
        try:
            spec = parse_bench(*split_arg(text))
        except ValueError as err:
            raise ConfigError(f"--bench {text}: {err}") from None
        if any(s.name == spec.name for s in specs):
            raise ConfigError(f"--bench {text}: the name {spec.name!r} is given twice")
        specs.append(spec)
    return specs


def with_budgets(cfg: Config, specs: list[BenchSpec]) -> tuple[list[BenchSpec], RolloutConfig]:
    """Each benchmark its own budget (rollout.max_new_tokens unless it sets one), and the rollout
    settings whose engine context fits the longest."""
    specs = [replace(s, max_new_tokens=s.max_new_tokens or cfg.rollout.max_new_tokens) for s in specs]
    return specs, replace(cfg.rollout, max_new_tokens=max(s.max_new_tokens for s in specs))


async def answer_benches(cfg: Config, model_path: str, specs: list[BenchSpec], counts: dict[str, int],
                         samples: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Every benchmark's answers by one model, on one worker, all benchmarks at once."""
    from actors.rollout_worker import RolloutWorker

    specs, rollout = with_budgets(cfg, specs)
    worker = RolloutWorker(model_path, rollout, cfg.envs, cfg.eval, cfg.seed)
    await worker.init()
    try:
        parts = await asyncio.gather(*(worker.evaluate_bench(s.name, s.env_kwargs(), list(range(counts[s.name])),
                                                             samples[s.name], cfg.seed) for s in specs))
        return dict(zip([s.name for s in specs], parts))
    finally:
        worker.shutdown()


def run_bench_command(cfg: Config, args: argparse.Namespace) -> int:
    """Print the benchmark table (or JSON) for each ``--model``."""
    from actors.bench_run import bench_sampling
    from actors.schedule import eval_sampling
    from selfplay.model_cache import resolve_model

    if args.player != "model":
        raise ConfigError(f"--player {args.player}: benchmarks have no fixed players; evaluate a model")
    models = list(args.model or [cfg.model])
    if len(models) > 2:
        raise ConfigError(f"--model given {len(models)} times: compare at most two models")
    if args.samples is not None and args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: expected >= 1")
    specs = parse_bench_args(args.bench)
    counts = problem_counts(specs)
    samples = {s.name: args.samples or s.samples or 1 for s in specs}
    paths = dict(zip(labels(models), [resolve_model(m) for m in models]))
    models = list(paths)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    records: dict[str, dict[str, list[dict[str, Any]]]] = {}
    seconds: dict[str, float] = {}
    workers = None
    if cfg.rollout.num_workers > 1:
        from selfplay.commands.bench_workers import BenchWorkers

        workers = BenchWorkers(cfg)
    try:
        for model in models:
            start = time.perf_counter()
            if workers is None:
                records[model] = asyncio.run(answer_benches(cfg, paths[model], specs, counts, samples))
            else:
                budgeted, rollout = with_budgets(cfg, specs)
                records[model] = workers.answer(paths[model], rollout, budgeted, counts, samples)
            seconds[model] = time.perf_counter() - start
            results[model] = {name: summarize(r) for name, r in records[model].items()}
    finally:
        if workers is not None:
            workers.close()
    diffs = ({s.name: paired_difference(records[models[0]][s.name], records[models[1]][s.name]) for s in specs}
             if len(models) == 2 else {})
    base = eval_sampling(cfg.rollout, cfg.eval)
    used = {s.name: bench_sampling(base, samples[s.name]) for s in specs}
    if args.json:
        print(json.dumps({"models": models, "results": results, "paired": diffs, "seconds": seconds,
                          "workers": cfg.rollout.num_workers if workers is not None else 1,
                          "benchmarks": {s.name: {"source": s.source, "problems": counts[s.name],
                                                  "samples": samples[s.name],
                                                  "max_new_tokens": s.max_new_tokens or cfg.rollout.max_new_tokens,
                                                  "temperature": used[s.name].temperature,
                                                  "top_p": used[s.name].top_p} for s in specs}}))
        return 0
    for s in specs:
        u = used[s.name]
        print(f"{s.name}: {s.source}, {counts[s.name]} problems x {samples[s.name]} samples, "
              f"max_new_tokens {s.max_new_tokens or cfg.rollout.max_new_tokens}, temperature {u.temperature:g}"
              + (f", top-p {u.top_p:g}" if u.temperature > 0 else " (greedy)")
              + (" (SPIRAL's sampling: greedy samples would all be the same)" if u is not base else ""))
    print(format_table(results, diffs))
    print("wall time: " + ", ".join(f"{m} {t:.0f} s" for m, t in seconds.items())
          + f" (on {cfg.rollout.num_workers} rollout workers)" * (workers is not None))
    return 0


__all__ = ["parse_bench_args", "with_budgets", "answer_benches", "run_bench_command"]
