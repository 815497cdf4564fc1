"""The run directory: ``<run_root>/<name>/`` holds the resolved config (``config.yaml``), the log
file (``train.log``), TensorBoard event files (``tb/``), checkpoints (``checkpoints/``, laid out
by :mod:`learners.checkpoint`) and the opponent pool's frozen snapshots (``snapshots/step-<N>``).
This module is the one place that layout is spelled; everything else asks it.

It must outlive the run. A job sent with ``ray job submit --working-dir .`` runs in Ray's
temporary copy of that folder (``.../runtime_resources/working_dir_files/_ray_pkg_<hash>/``),
which Ray deletes later; a relative ``run_root`` there would put the results where nobody finds
them. :func:`resolve_run_root` therefore makes it absolute once, at start-up: an absolute
``run_root`` stays (a shared filesystem on a multi-node cluster; ``python -m cluster.submit``
passes the submitting checkout's ``runs/`` when the head is on this machine); a relative one
inside Ray's copy goes under the home folder's ``selfplay/`` (``~/selfplay/runs/<name>``), and
anywhere else under the current folder, as for any local command.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from selfplay.config import Config, ConfigError, to_dict

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_SNAPSHOTS = "snapshots"


def config_file(run_dir: Path) -> Path:
    """The resolved config of the run."""
    return Path(run_dir) / "config.yaml"


def log_file(run_dir: Path) -> Path:
    """The run's log (also on the terminal)."""
    return Path(run_dir) / "train.log"


def tb_folder(run_dir: Path) -> Path:
    """TensorBoard's event files."""
    return Path(run_dir) / "tb"


def checkpoints_folder(run_dir: Path) -> Path:
    """Where :mod:`learners.checkpoint` keeps the checkpoints."""
    from learners.checkpoint import CHECKPOINTS

    return Path(run_dir) / CHECKPOINTS


def snapshot_folder(run_dir: Path, step: int) -> Path:
    """The opponent pool's frozen policy of ``step``."""
    return Path(run_dir) / _SNAPSHOTS / f"step-{step}"


def snapshot_folders(run_dir: Path) -> list[Path]:
    """Every snapshot folder the run holds."""
    root = Path(run_dir) / _SNAPSHOTS
    return sorted(root.glob("step-*")) if root.is_dir() else []


def inside_ray_working_dir(cwd: Path) -> bool:
    """Whether ``cwd`` is Ray's temporary copy of a job's working dir (deleted after the job)."""
    return any(part.startswith("_ray_pkg_") for part in cwd.parts)


def resolve_run_root(run_root: str, cwd: Path, home: Path) -> tuple[Path, str]:
    """The absolute, persistent folder for run directories, and why that one (for the log)."""
    root = Path(run_root).expanduser()
    if root.is_absolute():
        return root, "run_root"
    if inside_ray_working_dir(cwd):
        return home / "selfplay" / root, ("the home folder: this job runs in Ray's temporary copy of its "
                                          "working dir; set run_root to an absolute path (shared by all "
                                          "nodes), or submit with python -m cluster.submit")
    return cwd / root, "the current folder"


def with_persistent_run_root(cfg: Config) -> tuple[Config, str]:
    """``cfg`` with ``run_root`` made absolute by :func:`resolve_run_root` (derived once, at start)."""
    import dataclasses

    root, why = resolve_run_root(cfg.run_root, Path.cwd(), Path.home())
    return dataclasses.replace(cfg, run_root=str(root)), why


def prepare_run_dir(cfg: Config, resume: bool = False) -> Path:
    """Create the run directory and write the resolved config; refuses to reuse a finished run's
    directory by accident (pass ``resume=True`` to continue it)."""
    run_dir = cfg.run_dir
    if run_dir.exists() and any(checkpoints_folder(run_dir).glob("step-*")) and not resume:
        raise ConfigError(
            f"name={cfg.name!r}: {run_dir} already holds checkpoints: pass --resume to continue it, "
            f"or choose another name=... (or delete the folder)")
    checkpoints_folder(run_dir).mkdir(parents=True, exist_ok=True)
    config_file(run_dir).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return run_dir


def setup_logging(run_dir: Path | None = None, level: int = logging.INFO) -> None:
    """Log to the terminal and, given a run directory, to ``<run_dir>/train.log``. Called once by
    the CLI, never at import time."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if run_dir is not None:
        handlers.append(logging.FileHandler(log_file(run_dir)))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)
    for noisy in ("urllib3", "filelock", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
