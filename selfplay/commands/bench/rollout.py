"""``selfplay bench rollout``: is the episode loop as fast as the engine allows?

In one process and on the same engine: (a) N concurrent self-play TicTacToe games through the
episode runner; (b) one raw batch of N sequences (the opening prompt) with the same response
limit; (c) the transformers engine playing the same games as (a). Figures are generated tokens
per second; a/b shows what the multi-turn loop costs, a/c what vLLM buys.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from actors.engine import Engine, SamplingSettings, make_engine
from actors.episodes import EpisodeLimits, EpisodeRunner, EpisodeSpec
from actors.prompting import prompt_ids
from selfplay.core.precision import cpu_capability

log = logging.getLogger(__name__)
GAME = "selfplay/TicTacToe-v0"
#: A game's prompt budget, where the model's context holds it besides the answer.
PROMPT_TOKENS = 4096


def selfplay_specs(n: int, sampling: SamplingSettings) -> list[EpisodeSpec]:
    """``n`` self-play TicTacToe games in which every turn is played, valid answer or not."""
    # invalid_action="random": an unanswered turn becomes a random legal move, so every game
    # runs its full multi-turn course whatever the model writes (that is the work to measure).
    return [EpisodeSpec(env_id=GAME, seed=k, episode_id=f"bench-{k}", policy_roles=[0, 1],
                        env_kwargs={"invalid_action": "random"}, sampling=sampling) for k in range(n)]


async def play_games(engine: Engine, n: int, sampling: SamplingSettings,
                     max_prompt_tokens: int = PROMPT_TOKENS) -> dict[str, float]:
    """Play :func:`selfplay_specs` on ``engine``; returns tokens, seconds, tokens/s and turns."""
    runner = EpisodeRunner(engine, engine.tokenizer, EpisodeLimits(max_turns=9, max_prompt_tokens=max_prompt_tokens))
    start = time.perf_counter()
    episodes = await runner.run_many(selfplay_specs(n, sampling))
    seconds = time.perf_counter() - start
    tokens = sum(e.generated_tokens for e in episodes)
    turns = sum(len(e.samples) for e in episodes)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "turns": turns}


async def _raw(engine: Engine, n: int, sampling: SamplingSettings) -> dict[str, float]:
    import gymnasium as gym

    import envs  # noqa: F401

    env = gym.make(GAME).unwrapped
    obs, _ = env.reset(seed=0)
    ids = prompt_ids(engine.tokenizer, obs, env.system_prompt)
    start = time.perf_counter()
    gens = await asyncio.gather(*(engine.generate(ids, sampling) for _ in range(n)))
    seconds = time.perf_counter() - start
    tokens = sum(len(g.token_ids) for g in gens)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def _prompt_budget(model_path: str, max_new_tokens: int) -> int:
    """:data:`PROMPT_TOKENS`, or less for a model whose context cannot hold it and the answer
    (vLLM refuses a longer ``max_model_len``: the tiny model has 4,096 positions)."""
    from transformers import AutoConfig

    positions = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    return min(PROMPT_TOKENS, positions - max_new_tokens) if positions else PROMPT_TOKENS


async def _bench(model_path: str, n: int, max_new_tokens: int, dtype: str, kv_cache_gib: float) -> dict[str, Any]:
    sampling = SamplingSettings(max_new_tokens=max_new_tokens, temperature=1.0)
    budget = _prompt_budget(model_path, max_new_tokens)
    vllm = await make_engine("vllm", model_path, dtype=dtype, max_model_len=budget + max_new_tokens,
                             kv_cache_gib=kv_cache_gib)
    try:
        await _raw(vllm, 4, sampling)  # warm-up: first requests pay one-off costs
        log.info("bench rollout: (a) %d concurrent self-play games on vLLM", n)
        a = await play_games(vllm, n, sampling, budget)
        log.info("bench rollout: (b) one raw batch of %d sequences on vLLM", n)
        b = await _raw(vllm, n, sampling)
    finally:
        vllm.shutdown()
    gc.collect()
    hf = await make_engine("transformers", model_path, dtype=dtype)
    try:
        await _raw(hf, 4, sampling)
        log.info("bench rollout: (c) the same %d games on the transformers engine", n)
        c = await play_games(hf, n, sampling, budget)
    finally:
        hf.shutdown()
    return {"bench": "rollout", "n": n, "max_new_tokens": max_new_tokens, "dtype": vllm.dtype,
            "cpu_capability": cpu_capability(),
            "a_selfplay_tokens_per_s": a["tokens_per_s"], "b_raw_vllm_tokens_per_s": b["tokens_per_s"],
            "c_transformers_tokens_per_s": c["tokens_per_s"],
            "ratio_a_b": a["tokens_per_s"] / b["tokens_per_s"], "ratio_a_c": a["tokens_per_s"] / c["tokens_per_s"],
            "a_tokens": a["tokens"], "a_turns": a["turns"], "a_seconds": a["seconds"],
            "b_tokens": b["tokens"], "b_seconds": b["seconds"], "c_tokens": c["tokens"],
            "c_turns": c["turns"], "c_seconds": c["seconds"]}


def bench_rollout(model_path: str, n: int = 32, max_new_tokens: int = 64, dtype: str = "auto",
                  kv_cache_gib: float = 2.0) -> dict[str, Any]:
    """Run the three measurements and print them; returns the figures."""
    figures = asyncio.run(_bench(model_path, n, max_new_tokens, dtype, kv_cache_gib))
    print(f"dtype {figures['dtype']}, CPU {figures['cpu_capability']}")
    print(f"(a) self-play, {n} concurrent TicTacToe games: {figures['a_selfplay_tokens_per_s']:.1f} tokens/s "
          f"({figures['a_tokens']} tokens, {figures['a_turns']} turns, {figures['a_seconds']:.1f} s)")
    print(f"(b) raw vLLM, {n} sequences x {max_new_tokens} tokens: {figures['b_raw_vllm_tokens_per_s']:.1f} tokens/s")
    print(f"(c) transformers engine, same games: {figures['c_transformers_tokens_per_s']:.1f} tokens/s")
    print(f"a/b = {figures['ratio_a_b']:.2f} (target >= 0.8)   a/c = {figures['ratio_a_c']:.2f} (target >= 1.5)")
    return figures
