"""The device checks (`cluster/gpu_check.py`, `cluster/gpu_check_fsdp.py`) smoke-run on the CPU.

They are written for scarce GPU time, where a script that breaks on its first line wastes the
lease; here each runs its whole path from its command line (``run(argv)``, what the script's
``__main__`` prints) with ``--cpu`` on the tiny model at the smallest sizes. In this process:
a subprocess would pay torch's and transformers' imports again (about 10 s of the 20 a run
took here). Their speed is printed, never asserted; the figures are checked against what can
be counted or clocked outside the script.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_gpu_check_plays_compares_log_probs_and_trains_on_the_cpu(tiny_model, tmp_path):
    from cluster import gpu_check

    games = 2
    start = time.perf_counter()
    figures = gpu_check.run([tiny_model, str(tmp_path), str(games), "--max-new-tokens", "2", "--cpu"])
    wall = time.perf_counter() - start
    assert figures["device"] == "cpu" and figures["peak_gib"] == 0.0
    # Self-play TicTacToe where a bad answer becomes a random move: 5 to 9 turns a game, each a
    # sample (both seats are the policy); the log-prob check plays max(2, games // 4) games.
    assert 5 * games <= figures["hf_engine_turns"] <= 9 * games
    assert 5 * 2 <= figures["samples"] <= 9 * 2
    # The engine's behaviour log-probs against the learner's recomputation at the same
    # temperature (0.7): a temperature left out differs by ~0.05 a token on this model.
    assert figures["logprob_mean_abs_diff"] < 1e-2 and figures["logprob_max_abs_diff"] < 0.1
    assert 0 < figures["learner_step_s"] < wall
    written = {f.name for f in tmp_path.iterdir()}  # the random-weight model it built
    assert {"config.json", "tokenizer.json"} <= written and any(n.endswith(".safetensors") for n in written)


def test_gpu_check_fsdp_trains_the_sharded_learner_and_the_bare_loop_on_the_cpu(tiny_model):
    from safetensors import safe_open

    from cluster import gpu_check_fsdp

    samples, seq_len, steps = 2, 16, 1
    start = time.perf_counter()
    figures = gpu_check_fsdp.run([str(samples), str(seq_len), "32", str(steps), tiny_model, "--cpu"])
    wall = time.perf_counter() - start
    assert figures["device"] == "cpu"
    with safe_open(str(Path(tiny_model) / "model.safetensors"), "pt") as f:  # tied weights stored once
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    assert figures["parameters"] == params
    assert figures["tokens_per_step"] == samples * seq_len
    assert figures["weights_moved"] > 0  # the sharded step changed the weights
    # Each loop ran a warm-up step and `steps` timed ones, one after the other, inside the call.
    assert 0 < (steps + 1) * (figures["sharded_step_s"] + figures["bare_step_s"]) < wall
    assert figures["memory_plan_gib"] > 0
