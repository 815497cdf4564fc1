"""A short check of the plain classes on a GPU host that has torch and transformers but neither
vLLM nor Ray: the transformers engine playing concurrent self-play games, the learner's log-probs
against the engine's behaviour log-probs, and training steps, on a model of SmolLM2-135M's shape
with random weights (the real weights need not travel). Prints one JSON object of figures.

    python cluster/gpu_check.py <folder with config.json + tokenizer> <scratch folder> [games]
        [--max-new-tokens N] [--cpu]

``--cpu`` runs the same path on the CPU even where a GPU is visible, a smoke run: the test suite
runs it on the tiny model (``2 --max-new-tokens 4``) so that a broken script shows in CI, not on
scarce GPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from pathlib import Path

import torch


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


async def _check(shape_dir: Path, work: Path, n: int, max_new_tokens: int = 64,
                 device: str = "cuda") -> dict[str, float | str]:
    """The engine's games, its log-probs against the learner's, a timed training step on
    ``device`` (``cuda`` falls back to the CPU where none is visible)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from actors.engine import SamplingSettings, make_engine
    from actors.episodes import EpisodeLimits, EpisodeRunner
    from learners.learner import Learner
    from selfplay.commands.bench.rollout import play_games, selfplay_specs
    from selfplay.core import metric_names as names
    from selfplay.core.config_schema import TrainerConfig

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(shape_dir), dtype=torch.bfloat16)
    model.save_pretrained(work)
    for f in shape_dir.iterdir():
        if f.name != "config.json":
            shutil.copy(f, work / f.name)
    del model
    device = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
    out: dict[str, float | str] = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"}
    engine = await make_engine("transformers", str(work), dtype="auto", seed=0, device=device)
    sampling = SamplingSettings(max_new_tokens=max_new_tokens, temperature=0.7)
    games = await play_games(engine, n, sampling)
    out["dtype"] = engine.dtype
    out.update({"hf_engine_selfplay_tokens_per_s": games["tokens_per_s"], "hf_engine_turns": games["turns"]})
    # Behaviour log-probs from the engine against the learner's recomputation (same tempered policy).
    runner = EpisodeRunner(engine, engine.tokenizer, EpisodeLimits(max_turns=9, max_prompt_tokens=4096))
    episodes = await runner.run_many(selfplay_specs(max(2, n // 4), sampling))
    samples = [s for e in episodes for s in e.samples]
    learner = Learner(str(work), TrainerConfig(device=device, dtype="auto", lr=1e-5), temperature=0.7)
    diffs = [abs(a - b) for s, lp in zip(samples, learner.logprobs(samples)) for a, b in zip(lp, s.logprobs)]
    out["logprob_mean_abs_diff"] = sum(diffs) / len(diffs)
    out["logprob_max_abs_diff"] = max(diffs)
    for s in samples:
        s.advantage = 1.0 if s.role == 0 else -1.0
    learner.train_step(samples)  # warm-up
    _sync(device)
    start = time.perf_counter()
    stats = learner.train_step(samples)
    _sync(device)
    out.update({"learner_step_s": time.perf_counter() - start, "learner_tokens": stats[names.LEARNER_TOKENS],
                "learner_tokens_per_s": stats[names.LEARNER_TOKENS_PER_S], "samples": len(samples),
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0})
    engine.shutdown()
    return out


def run(argv: list[str] | None = None) -> dict[str, float | str]:
    """The command line (``argv``; None: the process's) parsed and checked; returns the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", type=Path, help="folder with config.json and the tokenizer")
    parser.add_argument("scratch", type=Path, help="where the random-weight model is written")
    parser.add_argument("games", type=int, nargs="?", default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens a turn (default 64)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is visible")
    args = parser.parse_args(argv)
    return asyncio.run(_check(args.shape, args.scratch, args.games, args.max_new_tokens,
                              "cpu" if args.cpu else "cuda"))


if __name__ == "__main__":
    print(json.dumps(run()))
