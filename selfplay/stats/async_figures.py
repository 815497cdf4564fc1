"""Figures of ``selfplay bench async`` (pure, no Ray): one training run per staleness k, read from
its scalars ``{name: [(step, value), ...]}``, their speed-ups, and what overlapping rollout and
learning would give on a cluster where the two hold different devices.

Time is the training loop's wall clock: from the driver's ``loop:`` line in ``train.log`` to its
``done:`` line (:func:`loop_span_s`), so start-up (Ray, engines, the learner) and shut-down are
left out while the evaluations and checkpoints stay in: the asynchronous loop starts its next
batches before each evaluation and checkpoint, so its generation overlaps them, and a clock of
the training steps alone (the sum of ``perf/step_s``, also reported) would leave that generation
out and flatter it. Without those lines the sum of ``perf/step_s`` stands in (``time_source``).
Figures the synchronous loop does not log (staleness, stale drops, batches in flight) count as 0.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from selfplay.core import metric_names as names
from selfplay.core.samples import INITIAL

Scalars = Mapping[str, list[tuple[int, float]]]

#: Training steps whose invalid share is averaged at the end: one step of a small run is noisy.
TAIL_STEPS = 2

_INVALID_SHARE = re.compile(r"^game/([^/]+)/invalid_share$")
_HEAD_TO_HEAD = re.compile(rf"^eval/([^/]+)/{INITIAL}/p(\d+)/(win_rate|return)$")


def _values(scalars: Scalars, name: str) -> list[float]:
    """The values of a training-step series (step >= 1; step 0 is the evaluation before training)."""
    return [v for s, v in scalars.get(name, []) if s >= 1]


def _mean(values: list[float], missing: float | None = None) -> float | None:
    return sum(values) / len(values) if values else missing


def _last(series: list[tuple[int, float]]) -> tuple[int, float] | None:
    return max(series, key=lambda sv: sv[0]) if series else None


def kuhn_exploitability(scalars: Scalars) -> dict[str, float] | None:
    """The last sampled Kuhn Poker exploitability with its 95% interval and step; None where it was
    never reported (not Kuhn Poker, or too many invalid replies at every evaluation)."""
    last = _last(scalars.get(names.KUHN_EXPLOITABILITY, []))
    if last is None:
        return None
    step, value = last
    at_step = {n: dict(scalars.get(n, [])).get(step) for n in (names.KUHN_EXPLOITABILITY_LOW,
                                                                names.KUHN_EXPLOITABILITY_HIGH)}
    return {"step": step, "value": value, "low": at_step[names.KUHN_EXPLOITABILITY_LOW],
            "high": at_step[names.KUHN_EXPLOITABILITY_HIGH]}


def head_to_head(scalars: Scalars) -> dict[str, dict[str, float]]:
    """Per environment, the last evaluation against the step-0 policy: win rate and return, each
    the mean over the policy's roles (a policy better than its start wins more than it loses in
    both seats; a mean return > 0 says so in a zero-sum game), and the step of that evaluation."""
    series: dict[str, dict[tuple[int, str], list[tuple[int, float]]]] = {}
    for name, rows in scalars.items():
        m = _HEAD_TO_HEAD.match(name)
        if m and rows:
            series.setdefault(m.group(1), {})[(int(m.group(2)), m.group(3))] = rows
    out = {}
    for env, by_key in sorted(series.items()):
        step = max(s for rows in by_key.values() for s, _ in rows)
        at = {key: dict(rows).get(step) for key, rows in by_key.items()}
        fig: dict[str, float] = {"step": step}
        for stat in ("win_rate", "return"):
            values = [v for (_, s), v in at.items() if s == stat and v is not None]
            if values:
                fig[stat] = sum(values) / len(values)
        out[env] = fig
    return out


def invalid_shares(scalars: Scalars, tail: int = TAIL_STEPS) -> dict[str, float]:
    """Per environment, the mean invalid share of training episodes over the last ``tail`` steps."""
    out = {}
    for name in sorted(scalars):
        m = _INVALID_SHARE.match(name)
        rows = sorted((s, v) for s, v in scalars[name] if s >= 1) if m else []
        if rows:
            out[m.group(1)] = sum(v for _, v in rows[-tail:]) / len(rows[-tail:])
    return out


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ selfplay\.train: (loop|done): ")


def loop_span_s(log_text: str) -> float | None:
    """Seconds from the training loop's start (the driver's ``loop: ...`` line in ``train.log``)
    to its end (``done: ...``); None unless the log holds both, in that order."""
    from datetime import datetime

    times: dict[str, datetime] = {}
    for line in log_text.splitlines():
        m = _LOG_TIME.match(line)
        if m and (m.group(2) == "done" or "loop" not in times):  # the first start, the last end
            times[m.group(2)] = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
    if "loop" not in times or "done" not in times or times["done"] < times["loop"]:
        return None
    return (times["done"] - times["loop"]).total_seconds()


def run_figures(scalars: Scalars, loop_s: float | None = None) -> dict[str, Any]:
    """The figures of one run: speed, idle shares, per-phase means, staleness and learning;
    ``loop_s`` the training loop's wall clock (:func:`loop_span_s`), else the sum of step times."""
    step_s = _values(scalars, names.STEP_S)
    if not step_s:
        raise ValueError(f"no {names.STEP_S} logged: the run trained no step")
    source = "train.log" if loop_s is not None else names.STEP_S
    loop_s = sum(step_s) if loop_s is None else loop_s
    samples = sum(_values(scalars, names.SAMPLES))
    return {
        "steps": len(step_s),
        "loop_s": loop_s,
        "time_source": source,
        "steps_s": sum(step_s),
        "samples": samples,
        "samples_per_s": samples / loop_s if loop_s > 0 else 0.0,
        "step_s": sum(step_s) / len(step_s),
        "rollout_s": _mean(_values(scalars, names.ROLLOUT_S)),
        "learn_s": _mean(_values(scalars, names.LEARNER_STEP_S)),
        "publish_s": _mean(_values(scalars, names.WEIGHT_SYNC_S)),
        "rollout_idle_share": _mean(_values(scalars, names.ROLLOUT_IDLE_SHARE)),
        "learner_idle_share": _mean(_values(scalars, names.LEARNER_IDLE_SHARE)),
        "staleness_mean": _mean(_values(scalars, names.STALENESS_MEAN), 0.0),
        "staleness_max": max(_values(scalars, names.STALENESS_MAX), default=0.0),
        "dropped_stale": sum(_values(scalars, names.DROPPED_STALE)),
        "batches_in_flight": _mean(_values(scalars, names.ASYNC_IN_FLIGHT), 0.0),
        "invalid_share": invalid_shares(scalars),
        "kuhn_exploitability": kuhn_exploitability(scalars),
        "head_to_head": head_to_head(scalars),
    }


def speedups(runs: Mapping[int, Mapping[str, Any]], base: int = 0) -> dict[int, float | None]:
    """Each run's samples per second over the ``base`` run's (None without a base or its rate)."""
    base_rate = runs[base]["samples_per_s"] if base in runs else 0.0
    return {k: (r["samples_per_s"] / base_rate if base_rate else None) for k, r in runs.items()}


def cluster_arithmetic(rollout_s: float, learn_s: float, publish_s: float) -> dict[str, float]:
    """A step's time on a cluster where rollout and learner hold different devices, from the
    synchronous run's per-phase means: one after the other (``sync_s``) or overlapped
    (``async_s``: the slower side sets the pace), and ``speedup`` = sync / async (at most 2)."""
    sync_s = rollout_s + learn_s + publish_s
    async_s = max(rollout_s, learn_s + publish_s)
    return {"rollout_s": rollout_s, "learn_s": learn_s, "publish_s": publish_s, "sync_s": sync_s,
            "async_s": async_s, "speedup": sync_s / async_s if async_s > 0 else 0.0}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(runs: Mapping[int, Mapping[str, Any]]) -> list[str]:
    """One line a run: speed, idle shares, staleness and the learning figures at the end (the
    speed-up of :func:`speedups` in each run's ``speedup``)."""
    header = (f"{'k':>2} {'loop_s':>8} {'samples/s':>9} {'speed-up':>8} {'step_s':>7} {'idle_roll':>9} "
              f"{'idle_lrn':>8} {'stale':>5} {'max':>3} {'dropped':>7}  end of run")
    lines = [header]
    for k, r in sorted(runs.items()):
        end = [f"invalid {env} {share:.2f}" for env, share in r["invalid_share"].items()]
        if r["kuhn_exploitability"]:
            e = r["kuhn_exploitability"]
            end.append(f"exploitability {e['value']:.3f} [{_fmt(e['low'], '.3f')}, {_fmt(e['high'], '.3f')}] "
                       f"at step {e['step']}")
        for env, h in r["head_to_head"].items():
            end.append(f"vs step 0 on {env}: win {_fmt(h.get('win_rate'), '.2f')} "
                       f"return {_fmt(h.get('return'), '+.2f')}")
        lines.append(f"{k:>2} {r['loop_s']:>8.1f} {r['samples_per_s']:>9.2f} {_fmt(r.get('speedup'), '.2f'):>8} "
                     f"{r['step_s']:>7.2f} {_fmt(r['rollout_idle_share'], '.2f'):>9} "
                     f"{_fmt(r['learner_idle_share'], '.2f'):>8} {r['staleness_mean']:>5.2f} "
                     f"{r['staleness_max']:>3.0f} {r['dropped_stale']:>7.0f}  {'; '.join(end) or '-'}")
    return lines


def format_cluster(c: Mapping[str, float], base: int = 0) -> str:
    """The cluster arithmetic as one line."""
    return (f"cluster (rollout and learner on different devices), per step from the k={base} run: "
            f"rollout {c['rollout_s']:.2f} s, learn {c['learn_s']:.2f} s, publish {c['publish_s']:.2f} s; "
            f"synchronous {c['sync_s']:.2f} s (sum), asynchronous {c['async_s']:.2f} s "
            f"(max(rollout, learn + publish)), ratio {c['speedup']:.2f}")


def parse_staleness(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``: distinct k >= 0 in increasing order, 0 among them (the base
    of every speed-up and of the cluster arithmetic)."""
    try:
        ks = [int(part) for part in text.split(",")]
    except ValueError:
        ks = []
    if 0 not in ks or any(k < 0 for k in ks) or len(set(ks)) != len(ks):
        raise ValueError(f"--staleness {text!r}: expected distinct integers >= 0 including 0, e.g. 0,1,2")
    return sorted(ks)


__all__ = ["cluster_arithmetic", "format_cluster", "format_table", "head_to_head", "invalid_shares",
           "kuhn_exploitability", "loop_span_s", "parse_staleness", "run_figures", "speedups"]
