"""Benchmark answers on a rollout worker: every (problem, sample) an episode of ``selfplay/QA-v0``,
all submitted at once so the engine batches them continuously, with a progress line and an ETA.

The plan is pure (:func:`plan_bench`); :func:`run_bench` plays it and returns one small record
per answer (:mod:`selfplay.stats.bench_figures`), not the episodes: a benchmark of thousands of
long answers would otherwise travel back through Ray whole.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from dataclasses import replace
from typing import Any, Callable

from actors.engine import SamplingSettings
from actors.episodes import EpisodeRunner, EpisodeSpec
from envs import QA_ID
from selfplay.core import metric_names as names

log = logging.getLogger(__name__)

#: Seconds between progress lines.
PROGRESS_EVERY_S = 30.0
#: SPIRAL's evaluation sampling (temperature 0.6, top-p 0.95): used where several answers per
#: problem are asked for under greedy decoding, which would make them all the same.
SPIRAL_TEMPERATURE, SPIRAL_TOP_P = 0.6, 0.95


def bench_sampling(sampling: SamplingSettings, samples: int) -> SamplingSettings:
    """``sampling`` (the evaluation's), or SPIRAL's where it is greedy and ``samples`` > 1."""
    if samples <= 1 or sampling.temperature > 0:
        return sampling
    return replace(sampling, temperature=SPIRAL_TEMPERATURE, top_p=SPIRAL_TOP_P, min_p=0.0, top_k=0)


def plan_bench(name: str, env_kwargs: dict[str, Any], indices: list[int], samples: int,
               sampling: SamplingSettings, seed: int = 0) -> list[EpisodeSpec]:
    """``samples`` episodes on each problem of ``indices`` (one group per problem). A benchmark's
    own ``max_new_tokens`` becomes the sampling budget (the runner's context room follows it)."""
    budget = env_kwargs.get("max_new_tokens")
    if budget:
        sampling = replace(sampling, max_new_tokens=int(budget))
    return [EpisodeSpec(env_id=QA_ID, seed=seed * 100_003 + i * 1_009 + r, episode_id=f"bench-{name}-q{i}-r{r}",
                        policy_roles=[0], env_kwargs=dict(env_kwargs), options={"index": i},
                        sampling=sampling, group_id=f"bench-{name}-q{i}")
            for i in indices for r in range(samples)]


def record(spec: EpisodeSpec, episode: Any) -> dict[str, Any]:
    """One answer's record: its problem, whether it is right, whether it boxed an answer, tokens.
    An episode cut short (prompt too long) counts as a wrong, unanswered answer."""
    answered = episode.extra.get(names.episode_stat("qa", "answered"), 0.0)
    return {"index": int(spec.options["index"]), "correct": float(episode.rewards.get(0, 0.0) > 0),
            "answered": float(answered), "tokens": int(episode.generated_tokens)}


def eta_line(label: str, done: int, total: int, tokens: int, elapsed: float) -> str:
    """``bench arith: 40/150 answers, 812 tokens/s, ETA 1m05s`` (pure)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else math.inf
    eta_text = "?" if math.isinf(eta) else f"{int(eta) // 60}m{int(eta) % 60:02d}s"
    return (f"bench {label}: {done}/{total} answers, {tokens / max(elapsed, 1e-9):.0f} tokens/s, "
            f"ETA {eta_text}")


def say_progress(line: str) -> None:
    """Log ``line`` where INFO is shown (the CLI's own process); else write it to stderr: a Ray
    worker's logging hides INFO, and Ray forwards its stderr to the driver."""
    if log.isEnabledFor(logging.INFO):
        log.info(line)
    else:
        print(f"{__name__}: {line}", file=sys.stderr, flush=True)


async def run_bench(runner: EpisodeRunner, specs: list[EpisodeSpec], label: str,
                    every_s: float = PROGRESS_EVERY_S, say: Callable[[str], None] | None = None
                    ) -> list[dict[str, Any]]:
    """Play ``specs`` concurrently; log a progress line every ``every_s`` seconds and at the end.
    No per-episode timeout: queued answers wait for the engine, they are not late."""
    say = say or say_progress
    runner = EpisodeRunner(runner.engine, runner.tokenizer, replace(runner.limits, timeout_s=1e9),
                           runner.opponent_engines)
    start, done, tokens = time.perf_counter(), 0, 0

    async def one(spec: EpisodeSpec) -> dict[str, Any]:
        nonlocal done, tokens
        out = record(spec, await runner.run(spec))
        done, tokens = done + 1, tokens + out["tokens"]
        return out

    async def report() -> None:
        while True:
            await asyncio.sleep(every_s)
            say(eta_line(label, done, len(specs), tokens, time.perf_counter() - start))

    reporter = asyncio.ensure_future(report())
    try:
        records = list(await asyncio.gather(*(one(s) for s in specs)))
    finally:
        reporter.cancel()
    say(eta_line(label, done, len(specs), tokens, time.perf_counter() - start).replace(", ETA 0m00s", "")
        + f" in {time.perf_counter() - start:.0f} s")
    return records


__all__ = ["bench_sampling", "plan_bench", "record", "eta_line", "say_progress", "run_bench", "PROGRESS_EVERY_S"]
