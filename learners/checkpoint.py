"""Atomic checkpoints: ``<run_dir>/checkpoints/step-<N>/`` appears complete or not at all.

A checkpoint folder holds the learner's Hugging Face folder (weights, config, tokenizer; with
LoRA the merged weights, and the adapter itself in PEFT format under ``adapter/``),
``optimizer.pt`` (a sharded learner: ``sharded/``, one file per rank), ``state.json`` (the caller's JSON-able state: RAE baselines, counters,
curriculum, opponent pool; plus the step and the Python and NumPy RNG states) and
``rng_torch.pt`` (torch CPU and CUDA RNG states, tensors).

A run with several policies (``policies:``, one LoRA adapter each): the Hugging Face folder is
the *base* model, unmerged (it loads as the base); each policy is its PEFT folder
``adapter/<policy>/`` (``selfplay model merge --policy NAME`` merges one); ``optimizer.pt`` holds
every adapter's optimiser state and master weights by policy, and ``state.json`` each policy's
advantage state (``advantage_by_policy``). A learner refuses a checkpoint of other policies.

Writing: everything goes into a temporary folder ``.tmp-step-<N>-*`` in the same directory, is
fsynced, and the folder is renamed into place (atomic within one file system). Only then is the
``latest`` pointer file replaced (write a temporary file, fsync, ``os.replace``), and only then
are old checkpoints pruned. A crash at any moment leaves the previous checkpoint intact and
``latest`` naming it; ``latest_checkpoint`` never returns a temporary or incomplete folder.

A sharded learner's ranks all write into the one temporary folder: the caller splits
:func:`save_checkpoint` into :func:`begin_checkpoint` (rank 0: the folder), ``save(folder)`` on
every rank, and :func:`finish_checkpoint` (rank 0: state, RNG, rename, pointer, pruning).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["save_checkpoint", "begin_checkpoint", "finish_checkpoint", "latest_checkpoint",
           "load_checkpoint", "list_checkpoints", "checkpoint_format", "check_format", "read_state",
           "CheckpointFormatError", "FORMAT_VERSION", "CHECKPOINTS"]

CHECKPOINTS = "checkpoints"
LATEST = "latest"
TMP_PREFIX = ".tmp-"
_STEP_DIR = re.compile(r"^step-(\d+)$")
# Files a folder must hold to count as a checkpoint (state.json and rng are written last), and
# one of the learner states: a single process's optimizer.pt, or a sharded learner's metadata.
_REQUIRED = ("config.json", "state.json", "rng_torch.pt")
_LEARNER_STATE = ("optimizer.pt", "sharded/.metadata")
#: The format of ``state.json`` this code writes and reads. 1 (no ``format_version`` key): RAE
#: baselines keyed by (env, role), ``max_prompt_tokens`` meaning prompt plus answer. 2: RAE
#: baselines keyed by (env, opponent kind, role) and subtracted before their update; counters
#: under ``counters``.
FORMAT_VERSION = 2


#: What changed at each format version, for the refusal's message.
_FORMAT_CHANGES = {2: "RAE baselines are now kept per opponent kind and max_prompt_tokens is the "
                      "prompt's own budget"}


class CheckpointFormatError(ValueError):
    """A checkpoint written in a format this code does not read."""


def read_state(path: str | Path) -> dict[str, Any]:
    """The state a checkpoint folder holds (``state.json``: the caller's keys, ``step``, the
    format version and the RNG states), without loading the learner."""
    return json.loads((Path(path) / "state.json").read_text())


def checkpoint_format(path: str | Path) -> int:
    """The format version a checkpoint folder was written in (1 for those before versions)."""
    return int(read_state(path).get("format_version", 1))


def check_format(path: str | Path) -> None:
    """Raise :class:`CheckpointFormatError` unless ``path`` is in the format this code reads."""
    found = checkpoint_format(path)
    if found != FORMAT_VERSION:
        why = _FORMAT_CHANGES.get(max(found, FORMAT_VERSION), "")
        raise CheckpointFormatError(f"{path}: checkpoint format {found}, this code reads format "
                                    f"{FORMAT_VERSION}" + (f" ({why})" if why else ""))


class _Saveable(Protocol):
    def save(self, path: str | Path) -> None: ...
    def load(self, path: str | Path) -> None: ...


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk, so the rename publishes real bytes."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rng_state() -> dict[str, Any]:
    """Python and NumPy RNG states as plain JSON (tuples and arrays become lists)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    np_state["state"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                         for k, v in np_state["state"].items()}
    return {"python": [version, list(internal), gauss], "numpy": np_state}


def _set_rng_state(rng: dict[str, Any], torch_rng: dict[str, Any]) -> None:
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = dict(rng["numpy"])
    np_state["state"] = {k: (np.array(v, dtype=np.uint32) if isinstance(v, list) else v)
                         for k, v in np_state["state"].items()}
    np.random.set_state(np_state)
    torch.set_rng_state(torch_rng["cpu"])
    if torch_rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(torch_rng["cuda"])


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoint folders as ``(step, path)``, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    found = []
    if root.is_dir():
        for path in root.iterdir():
            m = _STEP_DIR.match(path.name)
            if (m and path.is_dir() and all((path / f).is_file() for f in _REQUIRED)
                    and any((path / f).is_file() for f in _LEARNER_STATE)):
                found.append((int(m.group(1)), path))
    return sorted(found)


def save_checkpoint(run_dir: str | Path, step: int, learner: _Saveable, state: dict[str, Any],
                    keep_last: int = 2) -> Path:
    """Write ``checkpoints/step-<step>/`` atomically, point ``latest`` at it, keep the newest
    ``keep_last``; returns the folder. ``state`` must be JSON-able (it is stored with the
    step and the RNG states in ``state.json``)."""
    tmp = begin_checkpoint(run_dir, step)
    try:
        learner.save(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return finish_checkpoint(run_dir, step, tmp, state, keep_last)


def begin_checkpoint(run_dir: str | Path, step: int) -> Path:
    """The temporary folder a checkpoint of ``step`` is written into (after sweeping those left
    by a killed save); the learner saves into it, then :func:`finish_checkpoint` publishes it."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(TMP_PREFIX + "*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}step-{step}-", dir=root))


def finish_checkpoint(run_dir: str | Path, step: int, tmp: Path, state: dict[str, Any],
                      keep_last: int = 2) -> Path:
    """Complete the checkpoint the learner wrote into ``tmp`` (from :func:`begin_checkpoint`):
    RNG states and ``state.json``, fsync, rename into place, ``latest``, pruning. Returns the
    folder; on failure ``tmp`` is removed."""
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"step-{step}"
    try:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        torch.save({"cpu": torch.get_rng_state(), "cuda": cuda}, tmp / "rng_torch.pt")
        payload = {**state, "step": step, "format_version": FORMAT_VERSION, "rng": _rng_state()}
        (tmp / "state.json").write_text(json.dumps(payload, indent=1))
        _fsync_tree(tmp)
        if final.exists():  # the same step saved again (after a resume): swap it out
            old = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old-", dir=root))
            os.rename(final, old / final.name)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)
    _write_latest(root, final.name)
    for stale in root.glob(TMP_PREFIX + "old-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for _, path in list_checkpoints(run_dir)[:-max(keep_last, 1)]:
        if path != final:
            shutil.rmtree(path, ignore_errors=True)
    log.info("checkpoint written: %s", final)
    return final


def _write_latest(root: Path, name: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + LATEST, dir=root)
    with os.fdopen(fd, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / LATEST)
    _fsync_dir(root)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder ``latest`` names if it is complete, else the newest complete one, else None."""
    root = Path(run_dir) / CHECKPOINTS
    complete = list_checkpoints(run_dir)
    pointer = root / LATEST
    if pointer.is_file():
        name = pointer.read_text().strip()
        for _, path in complete:
            if path.name == name:
                return path
    return complete[-1][1] if complete else None


def load_checkpoint(path: str | Path, learner: _Saveable, restore_rng: bool = True) -> dict[str, Any]:
    """Load the learner from ``path``, restore the RNG states (unless told not to) and return
    the saved state (the caller's keys plus ``step``). Call it after building everything that
    seeds RNGs (``Learner.__init__`` does), so the restored states are the ones left standing."""
    path = Path(path)
    check_format(path)
    learner.load(path)
    state = read_state(path)
    rng = state.pop("rng")
    if restore_rng:
        _set_rng_state(rng, torch.load(path / "rng_torch.pt", weights_only=True))
    return state
