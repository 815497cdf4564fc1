"""Benchmark figures from scored answers (pure): pass@1 with a 95% interval, unbiased pass@k,
the answered rate, mean tokens, and the paired difference of two models.

An answer is a record ``{"index": problem, "correct": 0/1, "answered": 0/1, "tokens": n}``.
pass@1 is the mean over problems of each problem's share of correct answers (the mean over its k
samples); its interval is the normal one over those per-problem shares, so k samples of one
problem count as one observation, not k independent ones. The difference of two models is paired
over the problems both answered: the interval of the mean per-problem difference, much narrower
than two separate intervals when the models find the same problems hard.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

from selfplay.core import metric_names as names
from selfplay.stats.episode_stats import mean_interval, pass_at_k

#: The pass@k figures reported, those up to the samples per problem (and that number itself).
PASS_KS = (1, 2, 4, 8, 16, 32, 64)


def by_problem(records: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """The records grouped by problem index, in index order."""
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[int(r["index"])].append(r)
    return dict(sorted(groups.items()))


def problem_shares(records: Iterable[dict[str, Any]]) -> dict[int, float]:
    """Each problem's share of correct answers."""
    return {i: sum(float(r["correct"]) for r in g) / len(g) for i, g in by_problem(records).items()}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one model on one benchmark (every problem must have the same number of
    answers: the unbiased pass@k needs it)."""
    groups = by_problem(records)
    if not groups:
        raise ValueError("no answers to summarize")
    sizes = {len(g) for g in groups.values()}
    if len(sizes) != 1:
        raise ValueError(f"problems have different numbers of answers: {sorted(sizes)}")
    n = sizes.pop()
    shares = [sum(float(r["correct"]) for r in g) / n for g in groups.values()]
    low, high = mean_interval(shares)
    ks = sorted({k for k in PASS_KS if k <= n} | {n})
    passed = [int(sum(float(r["correct"]) for r in g)) for g in groups.values()]
    return {"problems": len(groups), "samples": n, "pass@1": sum(shares) / len(shares),
            "pass@1_ci": [max(0.0, low), min(1.0, high)],
            "pass@k": {str(k): sum(pass_at_k(n, c, k) for c in passed) / len(passed) for k in ks},
            "answered": sum(float(r["answered"]) for r in records) / len(records),
            "tokens": sum(float(r["tokens"]) for r in records) / len(records)}


def paired_difference(base: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """pass@1 of ``other`` minus that of ``base``, paired over the problems both answered, with
    the 95% interval of the mean per-problem difference."""
    a, b = problem_shares(base), problem_shares(other)
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two models answered no problem in common")
    diffs = [b[i] - a[i] for i in common]
    low, high = mean_interval(diffs)
    return {"problems": len(common), "diff": sum(diffs) / len(diffs), "ci": [low, high]}


def bench_metrics(name: str, summary: dict[str, Any]) -> dict[str, float]:
    """TensorBoard scalars: ``eval/bench/<name>/{pass_at_1,pass_at_1_low,pass_at_1_high,answered,tokens}``."""
    low, high = summary["pass@1_ci"]
    return {names.eval_bench_metric(name, "pass_at_1"): summary["pass@1"],
            names.eval_bench_metric(name, "pass_at_1_low"): low,
            names.eval_bench_metric(name, "pass_at_1_high"): high,
            names.eval_bench_metric(name, "answered"): summary["answered"],
            names.eval_bench_metric(name, "tokens"): summary["tokens"]}


def _ci(ci: list[float], signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def format_table(results: dict[str, dict[str, dict[str, Any]]],
                 diffs: dict[str, dict[str, Any]] | None = None) -> str:
    """One fixed-width table: a row per (benchmark, model); then, with two models, a row per
    benchmark with the paired difference (second model minus first)."""
    models = list(results)
    width = max([len(m) for m in models] + [len("model")]) + 2
    head = (f"{'benchmark':<12}{'model':<{width}}{'problems':>9}{'k':>4}{'pass@1':>8}{'95% CI':>17}"
            f"{'pass@k':>8}{'answered':>10}{'tokens':>8}")
    lines = [head, "-" * len(head)]
    benches = list(dict.fromkeys(b for m in models for b in results[m]))
    for bench in benches:
        for model in models:
            r = results[model].get(bench)
            if r is None:
                continue
            k = str(r["samples"])
            lines.append(f"{bench:<12}{model:<{width}}{r['problems']:>9}{r['samples']:>4}{r['pass@1']:>8.3f}"
                         f"{_ci(r['pass@1_ci']):>17}{r['pass@k'][k]:>8.3f}{r['answered']:>10.2f}"
                         f"{r['tokens']:>8.0f}")
    if diffs:
        lines.append("")
        lines.append(f"paired difference of pass@1, {models[-1]} minus {models[0]} (95% CI over problems):")
        for bench, d in diffs.items():
            lines.append(f"{bench:<12}{d['diff']:>+8.3f} {_ci(d['ci'], signed=True)} over {d['problems']} problems")
    return "\n".join(lines)


__all__ = ["PASS_KS", "by_problem", "problem_shares", "summarize", "paired_difference", "bench_metrics",
           "format_table"]
