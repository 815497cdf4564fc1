"""``selfplay eval --envs selfplay/LeaP-v0``: LeaP against N independent paths, on the same
problems and the same token budget, as a two-row table.

Both rows play the configured LeaP environment (``envs`` kwargs, else its registered defaults);
"independent" is the same environment with ``share=False``: each path reasons alone, one segment
as long as the budget allows, then answers (after its ``</think>``, or made to). It is asked as
LeaP's independent baseline asks (``prompt: cot``, its ``leap/cot_sc.py``): LeaP's instructions
for summarising and reading peers would mean nothing to a path that has none. Figures per row:

* ``pass@1``: the share of paths whose final answer is right (mean over paths and problems);
* ``cons@N``: the share of problems where the paths' majority answer is right;
* ``tokens``: generated tokens per problem (all paths, all phases);
* ``answered``: the share of paths that gave a final answer at all;
* ``finished``: the share of paths that ended their reasoning themselves (``</think>`` or end of
  sequence) rather than being made to answer;
* ``changed``, ``better``, ``worse`` (LeaP only): per path that read its peers, how often its
  final answer differs from the one it held before reading them, and whether that turned a wrong
  answer right or a right one wrong.

Greedy decoding would make the N paths identical, so a configured ``eval.temperature`` of 0 is
replaced by LeaP's sampling (temperature 0.6, top-p 0.95, min-p 0.05, top-k 40), and the output
says so; otherwise ``eval.temperature``, ``eval.top_p``, ``eval.min_p`` and ``eval.top_k`` apply.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import replace
from typing import Any

from envs import LEAP_ID as LEAP
from envs.leap_env import LeaPEnv
from actors.engine import SamplingSettings
from selfplay.config import Config, ConfigError
from selfplay.core import metric_names as names
from selfplay.core.config_schema import EnvConfig
from selfplay.core.samples import Episode

#: LeaP's evaluation sampling: temperature, top-p and min-p of its scripts (``scripts/leap_7B.sh``,
#: ``scripts/cot_7B.sh``), top-k its ``leap.py``'s default (the scripts leave it).
LEAP_TEMPERATURE, LEAP_TOP_P, LEAP_MIN_P, LEAP_TOP_K = 0.6, 0.95, 0.05, 40
ROWS = (("LeaP", True), ("independent", False))


def summarize_row(episodes: list[Episode]) -> dict[str, float]:
    """The table's figures for one mode from its episodes' ``leap/*`` statistics."""
    def key(stat: str) -> str:
        return names.episode_stat(LeaPEnv.stats_prefix, stat)

    def mean(stat: str) -> float:
        values = [e.extra[key(stat)] for e in episodes if key(stat) in e.extra]
        return sum(values) / len(values) if values else 0.0

    readers = sum(e.extra.get(key("read_peers"), 0.0) for e in episodes)

    def per_reader(stat: str) -> float:
        return sum(e.extra.get(key(stat), 0.0) for e in episodes) / readers if readers else 0.0

    return {"problems": float(len(episodes)), "pass@1": mean("pass_at_1"),
            "cons@N": mean("cons_at_n"), "tokens": mean("tokens"),
            "answered": mean("answered"), "finished": mean("finished"), "read_peers": readers,
            "changed": per_reader("answer_changes"), "better": per_reader("changes_better"),
            "worse": per_reader("changes_worse")}


def mode_kwargs(kwargs: dict[str, Any], share: bool) -> dict[str, Any]:
    """The environment's kwargs for one row: LeaP as configured, or independent paths asked with
    the chain-of-thought instruction (LeaP's baseline prompt)."""
    return {**kwargs, "share": share} if share else {**kwargs, "share": False, "prompt": "cot"}


def leap_sampling(sampling: SamplingSettings) -> SamplingSettings:
    """``sampling``, or LeaP's own where it is greedy (greedy paths would all be the same)."""
    if sampling.temperature > 0:
        return sampling
    return replace(sampling, temperature=LEAP_TEMPERATURE, top_p=LEAP_TOP_P, min_p=LEAP_MIN_P,
                   top_k=LEAP_TOP_K)


def format_table(rows: dict[str, dict[str, float]], paths: int) -> str:
    """A fixed-width table, one row per mode."""
    head = (f"{'mode':<13}{'problems':>9}{'paths':>7}{'pass@1':>8}{f'cons@{paths}':>9}{'tokens':>9}"
            f"{'answered':>10}{'finished':>10}{'changed':>9}{'better':>8}{'worse':>7}")
    lines = [head, "-" * len(head)]
    for mode, r in rows.items():
        shared = r["read_peers"] > 0
        tail = "".join(f"{r[k]:>{w}.2f}" if shared else f"{'-':>{w}}"
                       for k, w in (("changed", 9), ("better", 8), ("worse", 7)))
        lines.append(f"{mode:<13}{int(r['problems']):>9}{paths:>7}{r['pass@1']:>8.3f}{r['cons@N']:>9.3f}"
                     f"{r['tokens']:>9.0f}{r['answered']:>10.2f}{r['finished']:>10.2f}" + tail)
    return "\n".join(lines)


async def compare(cfg: Config, model_path: str, games: int) -> tuple[dict[str, dict[str, float]], int, Any]:
    """Play ``games`` problems in each mode on one engine; returns the rows, the number of paths
    and the sampling used."""
    import gymnasium as gym

    from actors.engine import make_engine
    from actors.episodes import EpisodeRunner
    from actors.rollout_worker import engine_settings, episode_limits
    from actors.schedule import eval_sampling, plan_evaluation

    kwargs = next((dict(e.kwargs) for e in cfg.envs if e.id == LEAP), {})
    paths = gym.make(LEAP, **kwargs).unwrapped.num_paths
    sampling = leap_sampling(eval_sampling(cfg.rollout, cfg.eval))
    engine = await make_engine(cfg.rollout.backend, model_path, engine_settings(cfg.rollout, cfg.seed))
    try:
        runner = EpisodeRunner(engine, engine.tokenizer, episode_limits(cfg.rollout))
        rows = {}
        for mode, share in ROWS:
            env_cfg = EnvConfig(id=LEAP, kwargs=mode_kwargs(kwargs, share))
            specs = plan_evaluation([env_cfg], [LEAP], [], games, cfg.seed, sampling)
            rows[mode] = summarize_row(await runner.run_many(specs))
        return rows, paths, sampling
    finally:
        engine.shutdown()


def run_leap_eval(cfg: Config, args: argparse.Namespace) -> int:
    """Print the LeaP-versus-independent table (or JSON) for ``--model``."""
    from selfplay.model_cache import resolve_model
    from selfplay.placement.preflight import check_leap_context

    if args.player != "model":
        raise ConfigError(f"--player {args.player}: {LEAP} has no fixed players; evaluate a model")
    games = args.games or cfg.eval.games
    if games < 1:
        raise ConfigError(f"--games {games}: expected >= 1")
    label = args.model or cfg.model
    path = resolve_model(label)
    check_leap_context(cfg, path)
    rows, paths, sampling = asyncio.run(compare(cfg, path, games))
    if args.json:
        print(json.dumps({"player": label, "paths": paths, "leap": rows}))
        return 0
    print(f"player: {label}; {LEAP}: {games} problems, {paths} paths each, temperature "
          f"{sampling.temperature:g}, top-p {sampling.top_p:g}, min-p {sampling.min_p:g}, "
          f"top-k {sampling.top_k or 'all'}"
          + (" (LeaP's sampling: greedy paths would all be the same)"
             if cfg.eval.temperature == 0 else ""))
    print(format_table(rows, paths))
    return 0
