"""Stopping `selfplay train` with a signal leaves nothing running.

Ctrl-C (SIGINT) and SIGTERM (what schedulers, `timeout` and container runtimes send) must both
unwind the driver: the workers and their vLLM engines shut down, the local Ray is shut down, and
the command reports why it stopped with the shell's exit code for that signal (128 + signal).
A real local run on the tiny model is started in its own session and stopped after its first
step; then no process of that session, and no process that inherited the run's environment
(Ray's agents or a vLLM EngineCore can outlive their parent), may be left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from selfplay.commands import cli
from tiny_debug import TINY_DEBUG

STEPS_LINE = "step 1/"
START_DEADLINE_S = 300  # Ray, the learner and a vLLM engine start on a shared 2-core machine
EXIT_DEADLINE_S = 60
SETTLE_S = 10  # what an orphan gets to notice that its parent is gone
# Names of the processes a local run starts (Ray's daemons and workers, vLLM's engine process).
RUN_PROCESS_NAMES = ("ray::", "raylet", "gcs_server", "dashboard", "DashboardAgent",
                     "RuntimeEnvAgent", "EngineCore", "log_monitor", "monitor.py")


def _stat(pid: int) -> tuple[int, int] | None:
    """(session id, start time in clock ticks since boot) of ``pid``, or None once it is gone
    (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return None if fields[0] in "ZX" else (int(fields[3]), int(fields[19]))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _now_ticks() -> int:
    """The current time in the clock ticks of /proc/<pid>/stat's start time."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


def leftovers(sid: int, marker: bytes) -> dict[int, str]:
    """Live processes of session ``sid`` or carrying the run's environment marker."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        stat = _stat(pid)
        if stat is not None and (stat[0] == sid or _has_marker(pid, marker)):
            found[pid] = _cmdline(pid)
    return {pid: cmd for pid, cmd in found.items() if _stat(pid) is not None}


def run_processes_started_since(ticks: int) -> dict[int, str]:
    """Ray/vLLM processes started after ``ticks`` (anyone's: reported, not asserted on)."""
    found = {}
    for entry in os.listdir("/proc"):
        stat = _stat(int(entry)) if entry.isdigit() else None
        if stat is not None and stat[1] >= ticks:
            cmd = _cmdline(int(entry))
            if any(name in cmd for name in RUN_PROCESS_NAMES):
                found[int(entry)] = cmd
    return found


def _kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_the_sigterm_handler_is_there_only_while_a_command_runs(monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    during = []
    monkeypatch.setattr(cli, "_run", lambda args: during.append(signal.getsignal(signal.SIGTERM)) or 0)
    assert cli.main(["config"]) == 0
    assert during == [cli._raise_terminated]
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_while_a_command_waits_reports_terminated_and_exits_143():
    # `play` waits for the person's move: no Ray, no engine, so this takes seconds.
    proc = subprocess.Popen([sys.executable, "-u", "-m", "selfplay", "play", "TicTacToe"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert "your action>" in _read_until(proc.stdout.fileno(), "your action>", timeout_s=60)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    err = err.decode()
    assert proc.returncode == 143, err
    # (asyncio may log after it that the game's task ended with the exception.)
    assert "terminated" in err.splitlines() and "Traceback" not in err.split("terminated")[0], err


def _read_until(fd: int, text: str, timeout_s: float) -> str:
    """What was written to the pipe ``fd`` until ``text`` appeared (or it closed, or time ran out)."""
    import select

    seen, deadline = b"", time.monotonic() + timeout_s
    while text.encode() not in seen and select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_after_the_first_step_shuts_everything_down(tmp_path, tiny_model, signum, code, word):
    began = _now_ticks()
    marker = f"SELFPLAY_SIGNAL_TEST={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    cmd = [sys.executable, "-m", "selfplay", "train", "--config", "debug", *TINY_DEBUG,
           f"run_root={tmp_path}", "name=sig", "rollout.episodes_per_step=4", "rollout.max_new_tokens=8",
           "rollout.kv_cache_gib=1", "trainer.steps=1000", "trainer.micro_batch_tokens=2048",
           "eval.every=0", "checkpoint.every=0"]
    out, err = (tmp_path / "stdout").open("w"), (tmp_path / "stderr").open("w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
    log = tmp_path / "sig" / "train.log"
    stderr = lambda: (tmp_path / "stderr").read_text()[-3000:]  # noqa: E731
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while not (log.is_file() and STEPS_LINE in log.read_text()):
            assert proc.poll() is None, f"train exited early ({proc.returncode}):\n{stderr()}"
            assert time.monotonic() < deadline, f"no '{STEPS_LINE}' in {START_DEADLINE_S} s:\n{stderr()}"
            time.sleep(1)
        sent = time.monotonic()
        proc.send_signal(signum)
        try:
            rc = proc.wait(timeout=EXIT_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_DEADLINE_S} s after {signum.name}:\n{stderr()}")
        print(f"{signum.name}: exited {rc} after {time.monotonic() - sent:.1f} s")
        assert rc == code, stderr()
        assert stderr().strip().splitlines()[-1] == word, stderr()
        left = leftovers(proc.pid, marker.encode())
        settle = time.monotonic() + SETTLE_S
        while left and time.monotonic() < settle:
            time.sleep(0.5)
            left = leftovers(proc.pid, marker.encode())
        others = run_processes_started_since(began)
        assert not left, f"left running after {signum.name}: {left} (Ray/vLLM processes started " \
                         f"since the test began, anyone's: {others})"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill(leftovers(proc.pid, marker.encode()))
        out.close()
        err.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped exception
def test_a_signal_whose_exception_was_swallowed_still_stops_the_run_between_steps():
    """A handler's exception raised while Python runs a ``__del__`` is printed and dropped; the
    CLI remembers the signal and the training loop checks it before every step."""
    import selfplay.commands.cli as cli

    class Swallows:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # the handler raises here, inside __del__

    # What was there before (Python's default_int_handler; SIG_IGN where the suite runs in a
    # shell's background, which ignores SIGINT for its background jobs).
    before = signal.getsignal(signal.SIGINT)
    with cli._sigterm_unwinds():
        cli.check_stop()  # nothing asked yet
        Swallows()  # "Exception ignored in __del__": the KeyboardInterrupt is lost
        with pytest.raises(KeyboardInterrupt):
            cli.check_stop()
    assert signal.getsignal(signal.SIGINT) is before  # restored afterwards
