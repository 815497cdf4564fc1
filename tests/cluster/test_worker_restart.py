"""A rollout worker's process killed (SIGKILL) in the middle of a local run: Ray restarts it, it
gets the current weights, its lost episodes are replayed, and the run completes every step.

One real `selfplay train` on the tiny model with two workers, three steps, in the asynchronous loop
(``trainer.max_staleness=1``); once step 1 is logged,
one worker's process is killed. Then: the run exits 0, its log says the worker was restarted,
TensorBoard counts one restart, every step trained on exactly `episodes_per_step` episodes (none
lost, none counted twice), and no engine process of the killed worker is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from selfplay.stats.episode_ledger import EpisodeLedger
from selfplay.stats.metrics_writer import read_scalars
from tiny_debug import TINY_DEBUG

pytestmark = pytest.mark.slow

EPISODES, STEPS = 8, 3
DEADLINE_S = 600


def _marked(marker: tuple[str, str]) -> list[psutil.Process]:
    """Live processes that inherited the run's marker variable (Ray's and vLLM's included)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(marker[0]) == marker[1]:
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


@contextlib.contextmanager
def _marked_run(cmd: list[str], stderr_path, marker: tuple[str, str]):
    """``selfplay train`` started with the marker variable in its environment (stderr to
    ``stderr_path``); afterwards it and everything that inherited the marker is killed."""
    with stderr_path.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=err, env={**os.environ, marker[0]: marker[1]},
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for p in _marked(marker):
            p.kill()


def _rollout_workers(marker) -> list[psutil.Process]:
    out = []
    for p in _marked(marker):
        try:
            if "ray::RolloutWorker" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def test_a_killed_rollout_worker_is_restarted_and_the_run_completes(tmp_path, tiny_model):
    """Run in the asynchronous loop (``trainer.max_staleness=1``), where the killed worker also
    has the next step's batch in flight: every lost part is replayed and its one death counted
    once. The synchronous loop recovers through the same code (``RolloutPool.finish``) with one
    batch in flight; running both here would cost CI another two to three minutes."""
    max_staleness = 1
    marker = ("SELFPLAY_RESTART_TEST", uuid.uuid4().hex)
    cmd = [sys.executable, "-m", "selfplay", "train", "--config", "debug", *TINY_DEBUG, f"run_root={tmp_path}",
           "name=kill", "rollout.num_workers=2", f"rollout.episodes_per_step={EPISODES}",
           "rollout.max_new_tokens=32", "rollout.kv_cache_gib=1", f"trainer.steps={STEPS}",
           "trainer.micro_batch_tokens=2048", "eval.every=0", "checkpoint.every=0",
           f"trainer.max_staleness={max_staleness}"]
    log = tmp_path / "kill" / "train.log"
    stderr = lambda: (tmp_path / "stderr").read_text()[-4000:]  # noqa: E731
    with _marked_run(cmd, tmp_path / "stderr", marker) as proc:
        deadline = time.monotonic() + DEADLINE_S
        while not (log.is_file() and f"step 1/{STEPS}" in log.read_text()):
            assert proc.poll() is None, f"train exited early ({proc.returncode}):\n{stderr()}"
            assert time.monotonic() < deadline, stderr()
            time.sleep(0.2)
        victim = max(_rollout_workers(marker), key=lambda p: p.pid)
        engine = victim.children(recursive=True)  # vLLM's EngineCore and its worker process
        assert engine, "the rollout worker has no engine process"
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        rc = proc.wait(timeout=DEADLINE_S)
        print(f"run finished {time.monotonic() - killed:.1f} s after the kill")
        assert rc == 0, stderr()
        # The killed worker's engine went with it (Ray kills a dead worker's process group).
        assert not [p for p in engine if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    text = log.read_text()
    assert "restarted" in text, text[-3000:]
    print([line for line in text.splitlines() if "restarted" in line or "replaying" in line])
    scalars = read_scalars(tmp_path / "kill")
    assert scalars["cluster/worker_restarts"][-1] == (STEPS, 1.0)
    # Every step trained on exactly its episodes: none lost with the worker, none counted twice.
    assert [v for _, v in scalars["progress/episodes"]] == [EPISODES * s for s in range(1, STEPS + 1)]
    assert [s for s, _ in scalars["learner/loss/pg"]] == list(range(1, STEPS + 1))
    assert max(v for _, v in scalars["learner/staleness_max"]) <= max_staleness
    ids = [r["episode_id"] for r in EpisodeLedger(tmp_path / "kill").read()]
    assert len(ids) == len(set(ids)) == EPISODES * STEPS
    assert text.strip().splitlines()[-1].split(": ", 1)[1].startswith("run directory:")


def test_a_dead_learner_ends_the_run_with_the_command_that_resumes_it(tmp_path, tiny_model):
    marker = ("SELFPLAY_RESTART_TEST", uuid.uuid4().hex)
    cmd = [sys.executable, "-m", "selfplay", "train", "--config", "debug", *TINY_DEBUG, f"run_root={tmp_path}",
           "name=lost", "rollout.episodes_per_step=4", "rollout.max_new_tokens=8", "rollout.kv_cache_gib=1",
           "trainer.steps=50", "trainer.micro_batch_tokens=2048", "eval.every=0", "checkpoint.every=1"]
    log = tmp_path / "lost" / "train.log"
    with _marked_run(cmd, tmp_path / "stderr", marker) as proc:
        deadline = time.monotonic() + DEADLINE_S
        while not (log.is_file() and "checkpoint written" in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()[-3000:]
            time.sleep(0.2)
        learner = [p for p in _marked(marker) if "ray::LearnerWorker" in " ".join(p.cmdline())]
        learner[0].send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=120)
    last = (tmp_path / "stderr").read_text().strip().splitlines()[-1]
    assert rc == 1, last
    assert last.startswith("error: the learner died") and "checkpoints/step-" in last
    assert last.endswith(f"selfplay train --config {tmp_path / 'lost' / 'config.yaml'} --resume")
