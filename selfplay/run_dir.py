"""The run directory: ``<run_root>/<name>/`` holds the resolved config, the log file,
TensorBoard event files (``tb/``) and checkpoints (``checkpoints/``)."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from selfplay.config import Config, ConfigError, to_dict

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def prepare_run_dir(cfg: Config, resume: bool = False) -> Path:
    """Create the run directory and write the resolved config; refuses to reuse a finished run's
    directory by accident (pass ``resume=True`` to continue it)."""
    run_dir = cfg.run_dir
    if run_dir.exists() and any((run_dir / "checkpoints").glob("step-*")) and not resume:
        raise ConfigError(
            f"name={cfg.name!r}: {run_dir} already holds checkpoints: pass --resume to continue it, "
            f"or choose another name=... (or delete the folder)")
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return run_dir


def setup_logging(run_dir: Path | None = None, level: int = logging.INFO) -> None:
    """Log to the terminal and, given a run directory, to ``<run_dir>/train.log``. Called once by
    the CLI, never at import time."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if run_dir is not None:
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)
    for noisy in ("urllib3", "filelock", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
