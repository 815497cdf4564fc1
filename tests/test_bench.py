"""The benchmarks run as a user runs them (`selfplay bench ...`) and report consistent figures;
their speed is printed, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_bench_sync_reports_the_weights_it_moved_and_how_the_time_splits(tiny_model):
    from selfplay.core.precision import cpu_capability

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "selfplay", "bench", "sync", "--config", "debug",
                           "model=tiny", "--json"], capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "sync" and figures["cpu_capability"] == cpu_capability()
    # The tiny model's weights in the engine's dtype: 2 bytes each in bf16, 4 in float32.
    params = sum(t.numel() for t in _tiny_weights(tiny_model).values())
    assert figures["bench/mb"] == pytest.approx(params * (2 if figures["dtype"] == "bfloat16" else 4) / 1e6)
    assert figures["bench/fast_serialize_s"] + figures["bench/fast_load_s"] <= figures["bench/fast_total_s"]
    assert figures["bench/fast_worker_reload_s"] <= figures["bench/fast_load_s"]
    # The floor's repeats ran inside the command: its (median) time fits in the wall clock, so its
    # rate is at least the megabytes over that clock.
    assert 0 < figures["bench/floor_s"] < wall
    assert figures["bench/floor_mb_per_s"] >= figures["bench/mb"] / wall


def _tiny_weights(path: str) -> dict:
    from pathlib import Path

    from safetensors.torch import load_file

    out = {}
    for f in Path(path).glob("*.safetensors"):
        out.update(load_file(str(f)))
    return out
