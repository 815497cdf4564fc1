"""Evaluation during training: games against fixed opponents, the step-0 policy, the pool's
snapshots and the other policies; Kuhn Poker's sampled exploitability; held-out benchmarks; the
curriculum's validation. Each function makes its calls on the rollout workers and returns the
metrics to log; the driver decides when (``eval.every``, ``curriculum.every``)."""

from __future__ import annotations

import logging

from envs import kuhn_eval
from selfplay.config import Config
from selfplay.core import metric_names as names
from selfplay.core.policies import opponent_policy, policy_opponent
from selfplay.core.samples import INITIAL
from selfplay.league.curriculum import LevelCurriculum
from selfplay.league.opponent_pool import OpponentPool
from selfplay.loop.rollout_pool import RolloutPool
from selfplay.stats.episode_stats import episode_metrics, eval_table, format_eval_table
from selfplay.stats.kuhn_figures import sampled_metrics
from selfplay.stats.metrics_writer import MetricsWriter

log = logging.getLogger("selfplay.train")

KUHN = "selfplay/KuhnPoker-v0"



def evaluate(cfg: Config, rollout: RolloutPool, pool: OpponentPool, metrics: MetricsWriter,
             step: int) -> dict[str, float]:
    """Games against the fixed opponents, the step-0 policy (head-to-head progress) and the
    pool's snapshots (ratings), the other policies' adapters (``policies:``, head-to-head);
    Kuhn Poker's sampled exploitability (of the policy each role plays in self-play)."""
    ev, env_ids, seed = cfg.eval, [e.id for e in cfg.envs], cfg.seed + step
    last = len(rollout) - 1
    calls = [(0, "evaluate", (env_ids, ev.opponents, ev.games, seed))]
    if ev.initial_games:
        calls.append((last, "evaluate", (env_ids, [INITIAL], ev.initial_games, seed)))
    if pool.snapshots and cfg.pool.eval_games:
        calls.append((last, "evaluate", (env_ids, pool.snapshots, cfg.pool.eval_games, seed)))
    if cfg.policies:  # several policies: each role's adapter against each other adapter
        rivals = [policy_opponent(p.name) for p in cfg.policies]
        calls.append((last, "evaluate", (env_ids, rivals, ev.games, seed)))
    sample_kuhn = KUHN in env_ids and ev.infoset_samples > 0
    if sample_kuhn:
        calls.append((0, "sample_replies", (KUHN, kuhn_eval.decision_points(), ev.infoset_samples)))
    results = rollout.call_many(calls)
    values: dict[str, float] = {}
    if sample_kuhn:
        figures = kuhn_eval.sampled_exploitability(results.pop(), seed=seed)
        log.info("Kuhn Poker exploitability at step %d, sampled as in training: %s", step, figures.describe())
        values.update(sampled_metrics(figures))
    episodes = [e for eps in results for e in eps]
    log.info("evaluation at step %d:\n%s", step, format_eval_table(eval_table(episodes)))
    for e in episodes[: ev.log_episodes]:
        metrics.text(names.episode_text(e.env_id),
                          f"{e.episode_id} ({e.outcome}, returns {e.rewards})\n{e.transcript}", step)
    # The ratings are of the (one) policy against fixed opponents and its snapshots.
    pool.record_episodes([e for e in episodes if e.opponent != INITIAL
                               and opponent_policy(e.opponent) is None])
    values.update(evaluate_benches(cfg, rollout, step))
    return {**episode_metrics(episodes, prefix="eval", intervals=True), **pool.metrics(), **values}


def evaluate_benches(cfg: Config, rollout: RolloutPool, step: int) -> dict[str, float]:
    """``eval.bench``: every benchmark's problems split over all the workers, answered at once
    (continuous batching on each engine); pass@1 with its interval, answered rate, tokens."""
    from selfplay.core.bench_spec import bench_calls, merge, parse_benches, problem_counts
    from selfplay.stats.bench_figures import bench_metrics, summarize

    specs = parse_benches(cfg.eval.bench)
    if not specs:
        return {}
    counts = problem_counts(specs, "eval.bench")
    calls, owners = bench_calls(specs, counts, {s.name: s.samples or 1 for s in specs}, cfg.seed,
                                len(rollout))
    records = merge(owners, rollout.call_many(calls), [s.name for s in specs])
    values: dict[str, float] = {}
    for spec in specs:
        summary = summarize(records[spec.name])
        low, high = summary["pass@1_ci"]
        log.info("benchmark %s at step %d: pass@1 %.3f [%.3f, %.3f] over %d problems x %d, answered "
                 "%.2f, %.0f tokens", spec.name, step, summary["pass@1"], low, high, summary["problems"],
                 summary["samples"], summary["answered"], summary["tokens"])
        values.update(bench_metrics(spec.name, summary))
    return values


def validate(cfg: Config, rollout: RolloutPool, curriculum: LevelCurriculum, step: int) -> dict[str, float]:
    """The curriculum's validation: fresh problems at the current level; moves up once their
    pass@1 (share of episodes with a positive return) reaches the gate."""
    cu = cfg.curriculum
    # Seeds apart from evaluation's (cfg.seed + step) and training's: fresh problems.
    episodes = rollout.call(0, "evaluate", [cu.env], [], cu.instances,
                                 cfg.seed + 1_000_003 + step, curriculum.options, cu.samples)
    passed = sum(e.rewards.get(0, 0.0) > 0 for e in episodes) / max(len(episodes), 1)
    level = curriculum.index
    moved = curriculum.record(step, passed)
    log.info("curriculum %s: pass@1 %.2f at level %d %s (gate %.2f)%s", cu.env, passed, level,
             cu.levels[level], cu.gate,
             f"; moving up to level {curriculum.index} {curriculum.options}" if moved else "")
    return {names.curriculum_metric(cu.env, "pass_at_1"): passed}
