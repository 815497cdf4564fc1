"""One line of progress per training step for the terminal."""

from __future__ import annotations


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def progress_line(step: int, total: int, values: dict[str, float], eta_s: float) -> str:
    """``step 3/6 | ret p0 +0.12 p1 -0.12 | win 0.50 | invalid 0.31 | ...`` from a step's metrics."""
    parts = [f"step {step}/{total}"]
    rets = {k: v for k, v in values.items() if k.startswith("game/") and k.endswith("/return")}
    if rets:
        parts.append("ret " + " ".join(f"{k.split('/')[2]}:{k.split('/')[3]} {v:+.2f}" for k, v in sorted(rets.items())))
    for stat, label in (("/win_rate", "win"), ("/invalid_rate", "invalid")):
        vals = [v for k, v in values.items() if k.startswith("game/") and k.endswith(stat)]
        if vals:
            parts.append(f"{label} {sum(vals) / len(vals):.2f}")
    for key, label, fmt in (("learner/loss/pg", "loss", "{:+.4f}"),
                            ("perf/rollout_tokens_per_s", "rollout tok/s", "{:.0f}"),
                            ("learner/tokens_per_s", "learner tok/s", "{:.0f}"),
                            ("perf/weight_sync_s", "sync", "{:.2f}s"),
                            ("perf/step_s", "step", "{:.0f}s")):
        if key in values:
            parts.append(f"{label} {fmt.format(values[key])}")
    parts.append(f"ETA {_fmt_eta(eta_s)}")
    return " | ".join(parts)
