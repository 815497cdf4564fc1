"""Submit a training run to a Ray cluster with ``ray job submit``, and say where its files go.

    python -m cluster.submit [--address http://HEAD:8265] [--run-root DIR] -- --config debug model=tiny

It runs, in the checkout's root::

    ray job submit --address ADDRESS --submission-id ID --working-dir . \\
        --runtime-env-json <cluster/runtime_env.yaml + env> -- python -m selfplay train --config ... run_root=DIR

and prints the job id and where the run's TensorBoard files will be. ``--run-root`` defaults to
this checkout's ``runs/`` when the head is on this machine; on a remote cluster pass a folder on a
filesystem the nodes share (otherwise the run goes to ``~/selfplay/runs/<name>`` on the node that
runs the job's driver). ``RAY_AUTH_MODE=token`` is exported for ``ray job submit`` when a token
file exists and the mode is unset (Ray 2.60's "Missing authentication token" trap). The job's
``python`` is the head's: start the head from the project's environment (cluster/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_ENV = ROOT / "cluster" / "runtime_env.yaml"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def is_local(address: str) -> bool:
    """Whether a job-submission address points at this machine."""
    return (urlparse(address if "://" in address else f"http://{address}").hostname or "") in LOCAL_HOSTS


def submit_env(environ: dict[str, str], token_file: Path) -> dict[str, str]:
    """The environment for ``ray job submit``: ``RAY_AUTH_MODE=token`` added when a token file
    exists and no mode is set, since a head started on this machine then requires it."""
    env = dict(environ)
    if "RAY_AUTH_MODE" not in env and token_file.is_file():
        env["RAY_AUTH_MODE"] = "token"
    return env


def build_command(address: str, submission_id: str, runtime_env: dict, python: str,
                  train_args: list[str], no_wait: bool = False, ray: str = "ray") -> list[str]:
    """The ``ray job submit`` command line (shipping this checkout as the working dir)."""
    cmd = [ray, "job", "submit", "--address", address, "--submission-id", submission_id,
           "--working-dir", str(ROOT), "--runtime-env-json", json.dumps(runtime_env)]
    if no_wait:
        cmd.append("--no-wait")
    return [*cmd, "--", python, "-m", "selfplay", "train", *train_args]


def head_reachable(address: str, timeout_s: float = 5.0) -> bool:
    """Whether anything answers HTTP at the head's job-submission address (an error status, e.g.
    401 without a token, still means a head is there)."""
    import urllib.error
    import urllib.request

    url = address if "://" in address else f"http://{address}"
    try:
        urllib.request.urlopen(url.rstrip("/") + "/api/version", timeout=timeout_s)
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cluster.submit", description=__doc__.split("\n\n")[0])
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265"),
                   help="the head's job-submission (dashboard) address (default: RAY_ADDRESS or "
                        "http://127.0.0.1:8265)")
    p.add_argument("--runtime-env", default=str(RUNTIME_ENV), help="runtime-environment YAML")
    p.add_argument("--run-root", help="absolute folder for run directories (default: this checkout's "
                                      "runs/ for a head on this machine)")
    p.add_argument("--python", default="python", help="the interpreter the head runs the job with")
    p.add_argument("--submission-id", help="job id (default: selfplay-<name>-<time>)")
    p.add_argument("--no-wait", action="store_true", help="return once submitted, without tailing logs")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="after --: arguments of `selfplay train`, e.g. --config debug trainer.steps=4")
    args = p.parse_args(argv)
    train_args = [a for a in args.train_args if a != "--"] or ["--config", "debug"]

    from selfplay.config import ConfigError, load_config

    config, overrides = _split(train_args)
    run_root = args.run_root or (str(ROOT / "runs") if is_local(args.address) else None)
    if run_root is not None:
        run_root = str(Path(run_root).expanduser().resolve())
        train_args.append(f"run_root={run_root}")
    try:
        cfg = load_config(config, [*overrides, *([f"run_root={run_root}"] if run_root else [])])
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if not head_reachable(args.address):
        print(f"no Ray head answers at {args.address}: start one (`ray start --head`, see "
              f"cluster/README.md), or pass --address or set RAY_ADDRESS", file=sys.stderr)
        return 1
    runtime_env = yaml.safe_load(Path(args.runtime_env).read_text()) or {}
    runtime_env.pop("working_dir", None)  # --working-dir (this checkout) is passed explicitly
    submission_id = args.submission_id or f"selfplay-{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    cmd = build_command(args.address, submission_id, runtime_env, args.python, train_args, args.no_wait, ray)
    run_dir = f"{Path(run_root) / cfg.name}" if run_root else f"~/selfplay/runs/{cfg.name}"
    where = run_dir if run_root else (f"{run_dir} on the node running the job's driver (pass --run-root "
                                      f"on a shared filesystem to choose)")
    print(f"submitting job {submission_id} to {args.address}\n  {shlex.join(cmd)}\n"
          f"run directory: {where}\nTensorBoard: tensorboard --logdir {run_dir}/tb", flush=True)
    rc = subprocess.call(cmd, cwd=ROOT, env=submit_env(dict(os.environ), Path.home() / ".ray" / "auth_token"))
    print(f"job {submission_id}: `ray job submit` exited {rc}; run directory: {where}", flush=True)
    return rc


def _split(train_args: list[str]) -> tuple[str, list[str]]:
    """(config name or path, dotted overrides) out of ``selfplay train`` arguments."""
    config, overrides, i = "debug", [], 0
    while i < len(train_args):
        arg = train_args[i]
        if arg == "--config" and i + 1 < len(train_args):
            config, i = train_args[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif "=" in arg and not arg.startswith("-"):
            overrides.append(arg)
        i += 1
    return config, overrides


if __name__ == "__main__":
    sys.exit(main())
