"""`selfplay eval --bench`: one table for two models with the paired difference (tiny model, the
transformers engine: the same rollout-worker path as vLLM, without its start-up time), and bad
input as one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from envs.benchmarks import ARITH
from selfplay.commands.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfplay", "eval", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_two_models_give_one_table_with_the_paired_difference(tiny_model, tmp_path):
    rows = tmp_path / "two.jsonl"
    rows.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "2+2?", "answer": "4"}\n')
    bench = [f"--bench=arith={ARITH},limit=3,max_new_tokens=6", f"--bench=two={rows},samples=2"]
    common = ["--model", "tiny", "--model", tiny_model, *bench, "rollout.backend=transformers",
              "rollout.max_new_tokens=4"]
    text = _run(*common)
    assert text.returncode == 0, text.stderr[-3000:]
    out = text.stdout
    assert "benchmark" in out and "paired difference of pass@1" in out
    assert re.findall(r"^(\w+) +[+-]\d\.\d{3} \[", out, re.M) == ["arith", "two"]  # one per benchmark
    assert "bench arith (worker 0): 3/3 answers" in text.stderr  # the progress line
    proc = _run(*common, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = data["models"]
    assert a == "tiny" and data["results"][a]["arith"]["problems"] == 3
    two = data["results"][b]["two"]
    assert two["samples"] == 2 and set(two["pass@k"]) == {"1", "2"} and 0 <= two["answered"] <= 1
    assert two["tokens"] <= 4 and data["results"][a]["arith"]["tokens"] <= 6  # each its own budget
    assert data["benchmarks"]["arith"]["max_new_tokens"] == 6
    assert set(data["paired"]) == {"arith", "two"} and data["paired"]["two"]["problems"] == 2


def test_bad_bench_input_is_one_line_naming_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?", "answer": "2"}\n')
    for args, message in (
            (["--bench", "arith"], "config error: --bench arith: 'arith': expected NAME=SOURCE"),
            (["--bench", f"x={tmp_path / 'gone.jsonl'}"], "config error: --bench x: "),
            (["--bench", f"x={bad}"], "line 1: no column 'question' (columns: problem, answer)"),
            (["--bench", f"x={ARITH}", "--bench", f"x={tmp_path / 'gone.jsonl'}"], "the name 'x' is given twice"),
            (["--bench", f"x={ARITH}", "--model", "a", "--model", "b", "--model", "c"], "at most two models"),
            (["--model", "a", "--model", "b", "--player", "random"], "only --bench compares two models")):
        assert main(["eval", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (args, err)
