"""Bad input on the command line ends in one line on stderr and exit code 2, in seconds: before
Ray, an engine or anything else slow starts, and never as a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

# Generous for a loaded 2-core machine; starting Ray and an engine takes far longer.
SECONDS = 30


def _selfplay(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "selfplay", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})
    return proc, time.monotonic() - start


def _assert_one_line_error(proc: subprocess.CompletedProcess, seconds: float, start: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(start), proc.stderr[-3000:]
    assert seconds < SECONDS, f"{seconds:.1f} s"


@pytest.mark.parametrize("command", [["train", "--config", "debug", "model={path}", "run_root={root}"],
                                     ["eval", "--model", "{path}", "--envs", "KuhnPoker-v0"]],
                         ids=["train", "eval"])
def test_a_missing_model_folder_is_one_line_listing_the_built_in_models(tmp_path, command):
    missing = tmp_path / "some" / "missing" / "dir"
    args = [a.format(path=missing, root=tmp_path / "runs") for a in command]
    proc, seconds = _selfplay(*args)
    _assert_one_line_error(proc, seconds, f"config error: model='{missing}': neither a built-in model "
                                          f"(smollm2-135m-instruct, tiny) nor an existing folder")


def test_a_hub_id_that_is_not_cached_is_one_line_saying_what_to_do(tmp_path):
    proc, seconds = _selfplay("eval", "--model", "nobody/no-such-model", "--envs", "KuhnPoker-v0",
                              env={"HF_HUB_CACHE": str(tmp_path)})
    _assert_one_line_error(proc, seconds, "config error: model='nobody/no-such-model': not an existing "
                                          f"folder, not in the local Hugging Face cache ({tmp_path}), and "
                                          f"it could not be downloaded (")
    assert "hf download nobody/no-such-model" in proc.stderr and "local model folder" in proc.stderr
