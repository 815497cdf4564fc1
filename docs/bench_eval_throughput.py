"""Throughput of benchmark evaluation (``selfplay/QA-v0`` episodes through the rollout worker's
episode runner, as ``selfplay eval --bench`` runs them) against one raw batch of the same prompts
on the same vLLM engine, with the same sampling. Greedy, so both write the same tokens.

    .venv/bin/python docs/bench_eval_throughput.py [--model smollm2-135m-instruct] [--max-new-tokens 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import gymnasium as gym

import envs  # noqa: F401 - registers selfplay/QA-v0
from actors.bench_run import plan_bench, run_bench
from actors.engine import EngineSettings, SamplingSettings, make_engine
from actors.episodes import EpisodeLimits, EpisodeRunner
from actors.prompting import prompt_ids
from envs.benchmarks import ARITH


async def main(model: str, max_new_tokens: int, rounds: int) -> dict:
    from selfplay.model_cache import resolve_model

    engine = await make_engine("vllm", resolve_model(model), EngineSettings(max_model_len=256 + max_new_tokens,
                                                                            kv_cache_gib=2))
    env = gym.make("selfplay/QA-v0", dataset=str(ARITH)).unwrapped
    prompts = []
    for i in range(len(env)):
        obs, _ = env.reset(options={"index": i})
        prompts.append(prompt_ids(engine.tokenizer, obs, env.system_prompt))
    sampling = SamplingSettings(max_new_tokens=max_new_tokens, temperature=0.0)
    runner = EpisodeRunner(engine, engine.tokenizer, EpisodeLimits(max_prompt_tokens=256))
    specs = plan_bench("arith", {"dataset": str(ARITH)}, list(range(len(env))), 1, sampling)
    out: dict = {"model": model, "problems": len(prompts), "max_new_tokens": max_new_tokens, "rounds": []}
    try:
        await asyncio.gather(*(engine.generate(p, sampling) for p in prompts[:8]))  # warm-up
        for _ in range(rounds):  # alternating, so drift in the machine's load hits both
            start = time.perf_counter()
            records = await run_bench(runner, specs, "arith", every_s=1e9, say=lambda _: None)
            bench_s, bench_tokens = time.perf_counter() - start, sum(r["tokens"] for r in records)
            start = time.perf_counter()
            gens = await asyncio.gather(*(engine.generate(p, sampling) for p in prompts))
            raw_s, raw_tokens = time.perf_counter() - start, sum(len(g.token_ids) for g in gens)
            out["rounds"].append({"bench_tokens_per_s": bench_tokens / bench_s, "raw_tokens_per_s": raw_tokens / raw_s,
                                  "ratio": (bench_tokens / bench_s) / (raw_tokens / raw_s),
                                  "bench_tokens": bench_tokens, "raw_tokens": raw_tokens,
                                  "bench_s": bench_s, "raw_s": raw_s})
            print(json.dumps(out["rounds"][-1]), flush=True)
    finally:
        engine.shutdown()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    print(json.dumps(asyncio.run(main(a.model, a.max_new_tokens, a.rounds))))
