"""`ray job submit` against a real Ray head on 127.0.0.1: the debug training (tiny model, 2 steps)
submitted through `python -m cluster.submit` and with plain `ray job submit`, as the README shows.

One head for the module, started as a user would (`ray start --head` from the project's
environment) with a fresh HOME, after a local debug Ray has run in that HOME: the local Ray must
not leave the auth-token trap behind, so plain `ray job submit` works with nothing exported.
Both jobs must reach SUCCEEDED and leave TensorBoard files in a persistent run directory (not in
Ray's temporary copy of the working dir). The head is stopped by pid, never with `ray stop`,
which would stop every Ray on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from selfplay.stats.metrics_writer import read_scalars
from tiny_debug import TINY_DEBUG

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TRAIN = ["--config", "debug", *TINY_DEBUG, "trainer.steps=2", "rollout.episodes_per_step=4",
         "rollout.max_new_tokens=8", "rollout.kv_cache_gib=1", "trainer.micro_batch_tokens=2048",
         "eval.every=0", "checkpoint.every=0"]
JOB_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _marked(key: str, value: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(key) == value:
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


@pytest.fixture(scope="module")
def head(tmp_path_factory, tiny_model):
    """A Ray head on 127.0.0.1 with a fresh HOME; yields (dashboard address, environment, HOME,
    the head's GCS address)."""
    home = tmp_path_factory.mktemp("home")
    marker = ("SELFPLAY_JOB_TEST", uuid.uuid4().hex)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update({"HOME": str(home), "SELFPLAY_CACHE": os.environ.get("SELFPLAY_CACHE")
                or str(Path.home() / ".cache" / "selfplay"), "PATH": f"{BIN}:{env.get('PATH', '')}",
                marker[0]: marker[1]})
    # The trap: a local debug Ray first, in this HOME. It must leave no ~/.ray/auth_token.
    subprocess.run([sys.executable, "-c", "from selfplay.config import load_config\n"
                    "from selfplay.placement.ray_session import start_ray, stop_ray\n"
                    "start_ray(load_config('debug')); stop_ray()"],
                   env=env, cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert not (home / ".ray" / "auth_token").exists()
    temp_dir = tempfile.mkdtemp(prefix="sp-ray-", dir="/tmp")  # short: Ray's socket paths have a limit
    dashboard, gcs = _free_port(), _free_port()
    start = [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--dashboard-host",
             "127.0.0.1", "--port", str(gcs), "--dashboard-port", str(dashboard),
             "--ray-client-server-port", str(_free_port()), "--dashboard-agent-listen-port", str(_free_port()),
             "--num-cpus", "4", "--temp-dir", temp_dir, "--disable-usage-stats"]
    # Bound to 127.0.0.1 only: Ray turns a 127.0.0.1 node address back into the host's otherwise.
    head_env = {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    began = time.monotonic()
    proc = subprocess.run(start, env=head_env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"head up in {time.monotonic() - began:.1f} s")
    try:
        yield f"http://127.0.0.1:{dashboard}", env, home, f"127.0.0.1:{gcs}"
    finally:
        procs = _marked(*marker)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            p.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _status(address: str, job_id: str, env: dict) -> str:
    proc = subprocess.run([str(BIN / "ray"), "job", "status", "--address", address, job_id], env=env,
                          capture_output=True, text=True, timeout=60)
    out = (proc.stdout + proc.stderr).lower()  # "Job 'x' succeeded", "... failed", "... is currently running"
    return next((s.upper() for s in ("succeeded", "failed", "stopped") if f"' {s}" in out), "RUNNING")


def _wait(address: str, job_id: str, env: dict) -> str:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (status := _status(address, job_id, env)) in ("RUNNING", "PENDING") and time.monotonic() < deadline:
        time.sleep(3)
    return status


def _logs(address: str, job_id: str, env: dict) -> str:
    return subprocess.run([str(BIN / "ray"), "job", "logs", "--address", address, job_id], env=env,
                          capture_output=True, text=True, timeout=60).stdout


def test_submitted_jobs_succeed_and_leave_their_tensorboard_files(head, tmp_path):
    """Both jobs run at once on the head (4 CPUs booked: a learner and a worker each)."""
    address, env, home, _ = head
    began = time.monotonic()
    helper = subprocess.run([sys.executable, "-m", "cluster.submit", "--address", address, "--run-root",
                             str(tmp_path / "runs"), "--submission-id", "helper-job", "--no-wait", "--",
                             *TRAIN, "name=helper"], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert helper.returncode == 0, helper.stdout[-3000:] + helper.stderr[-3000:]
    assert f"run directory: {tmp_path / 'runs' / 'helper'}" in helper.stdout
    # The README's plain form: from the checkout, nothing exported, no run_root.
    plain = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", address, "--submission-id",
                            "plain-job", "--no-wait", "--working-dir", ".", "--runtime-env",
                            "cluster/runtime_env.yaml", "--", "python", "-m", "selfplay", "train", *TRAIN,
                            "name=plain"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-3000:]
    statuses = {job: _wait(address, job, env) for job in ("helper-job", "plain-job")}
    print(f"both jobs done in {time.monotonic() - began:.1f} s: {statuses}")
    for job, status in statuses.items():
        assert status == "SUCCEEDED", f"{job}: {status}\n{_logs(address, job, env)[-4000:]}"
    # The helper's run went where it said; the plain one to ~/selfplay/runs, not Ray's copy.
    for run_dir, job in ((tmp_path / "runs" / "helper", "helper-job"), (home / "selfplay" / "runs" / "plain", "plain-job")):
        scalars = read_scalars(run_dir)
        assert [s for s, _ in scalars["learner/loss/pg"]] == [1, 2], job
        assert list((run_dir / "tb").glob("events.out.tfevents.*")), job
        assert (run_dir / "checkpoints" / "step-2").is_dir(), job
        ours = [line for line in _logs(address, job, env).splitlines() if "selfplay.train:" in line]
        assert f"run directory: {run_dir}" in ours[-1], job  # the log's last line names it


def test_dry_run_reads_the_cluster_it_would_join(head):
    _, env, _, gcs = head
    env = {**env, "RAY_ADDRESS": gcs}
    run = [sys.executable, "-m", "selfplay", "train", "--config", "debug", "model=tiny"]
    fits = subprocess.run([*run, "rollout.num_workers=2", "--dry-run"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert fits.returncode == 0, fits.stderr[-3000:]
    assert f"cluster at {gcs}" in fits.stdout and "127.0.0.1: CPU 4, GPU 0" in fits.stdout
    assert "rollout worker 1   CPU 1" in fits.stdout  # on a cluster a worker books a whole CPU
    no_gpu = subprocess.run([*run, "cluster.worker_gpus=1", "--dry-run"], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert no_gpu.returncode == 2
    last = no_gpu.stderr.strip().splitlines()[-1]
    assert last.startswith("config error: cluster: the layout") and "autoscaler" in last
