"""The benchmarks run as a user runs them (`selfplay bench ...`) and report consistent figures;
their speed is printed, never asserted."""

from __future__ import annotations

import json
import os
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


def test_bench_rollout_plays_the_games_it_was_asked_for_on_both_engines(tiny_model):
    """(a) self-play on vLLM, (b) one raw vLLM batch, (c) the same games on transformers: two
    games of 2-token turns, the smallest run of the whole command."""
    games, tokens = 2, 2
    figures, wall = _bench(["rollout", "rollout.kv_cache_gib=1", "--games", str(games),
                            "--max-new-tokens", str(tokens)])
    assert figures["n"] == games and figures["max_new_tokens"] == tokens
    # TicTacToe in which a bad answer becomes a random move: 5 to 9 turns a game, each turn one
    # answer of 1 to `tokens` tokens, on either engine.
    for part in "ac":
        turns = figures[f"{part}_turns"]
        assert 5 * games <= turns <= 9 * games
        assert turns <= figures[f"{part}_tokens"] <= turns * tokens
    assert games <= figures["b_tokens"] <= games * tokens  # one raw answer per game
    # The three parts ran one after the other inside the command.
    assert 0 < figures["a_seconds"] + figures["b_seconds"] + figures["c_seconds"] < wall


def test_bench_learner_runs_the_sharded_learner_on_one_and_two_ranks(tiny_model):
    samples, seq_len, steps = 4, 32, 1
    figures, wall = _bench(["learner", "--ranks", "2", "--samples", str(samples), "--seq-len", str(seq_len),
                            "--steps", str(steps)])
    # The whole batch is trained at either world size: the tokens the learner counted in its step.
    assert figures["learner_tokens_1_ranks"] == figures["learner_tokens_2_ranks"] == samples * seq_len
    assert figures["threads_per_rank"] == max(1, (os.cpu_count() or 1) // 2)
    # Each world size ran a warm-up step and `steps` timed ones, one after the other, inside the command.
    assert 0 < (steps + 1) * (figures["step_s_1_ranks"] + figures["step_s_2_ranks"]) < wall


def _bench(args: list[str]) -> tuple[dict, float]:
    """``selfplay bench <args> --json`` on the tiny model: its figures and the wall clock around it."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "selfplay", "bench", args[0], "--config", "debug", "model=tiny",
                           *args[1:], "--json"], capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def _tiny_weights(path: str) -> dict:
    from pathlib import Path

    from safetensors.torch import load_file

    out = {}
    for f in Path(path).glob("*.safetensors"):
        out.update(load_file(str(f)))
    return out
