"""Starting or joining Ray, and reserving the run's resources on it.

**A local Ray stays private.** Ray binds its node to the address ``services.get_node_ip_address``
returns, and turns a requested ``127.0.0.1`` back into the host's address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read when ``ray`` is imported; "no multi-node cluster").
With it and ``_node_ip_address="127.0.0.1"`` every port of the local Ray (GCS, raylet, object
manager, workers, agents) listens on 127.0.0.1 only; without it they listen on all interfaces.

**No auth-token trap.** Ray 2.60's local ``ray.init()`` enables token authentication and writes
``~/.ray/auth_token``; a head started later with ``ray start`` finds that file and requires the
token, while ``ray job submit`` without ``RAY_AUTH_MODE=token`` does not send it ("Missing
authentication token"). The local Ray here gets a private token in its environment instead
(``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``), so it is still authenticated and nothing is written
to ``~/.ray``. A file left by an earlier local Ray is pointed out in one line saying what to export.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

from selfplay.config import Config, ConfigError
from selfplay.placement.layout import Layout, Node, check_fits, shortfall

log = logging.getLogger("selfplay.train")

TOKEN_FILE = Path("~/.ray/auth_token")


def cluster_address(cfg: Config, environ: Mapping[str, str] = os.environ) -> str | None:
    """The cluster to join (``cluster.address``, else ``RAY_ADDRESS``); None: start a local Ray."""
    return cfg.cluster.address or environ.get("RAY_ADDRESS") or None


def private_env(environ: Mapping[str, str], token: str) -> dict[str, str]:
    """Environment variables for a local Ray bound to 127.0.0.1 and authenticated with its own
    ``token`` (unless the user chose an auth mode: then theirs)."""
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    if "RAY_AUTH_MODE" not in environ:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    return env


def token_trap_note(environ: Mapping[str, str], token_file_exists: bool) -> str | None:
    """The line to print when ``~/.ray/auth_token`` exists and ``RAY_AUTH_MODE`` is unset: a head
    started with ``ray start`` here then requires a token that plain ``ray job submit`` omits."""
    if not token_file_exists or "RAY_AUTH_MODE" in environ:
        return None
    return ("~/.ray/auth_token exists (written by an earlier local Ray), so a head started here with "
            "`ray start` requires it: export RAY_AUTH_MODE=token for both `ray start` and "
            "`ray job submit` (python -m cluster.submit does this itself)")


#: One token per process: Ray's token loader caches the first it reads.
_TOKEN = secrets.token_hex(32)
#: Environment values replaced for a local Ray, restored by :func:`stop_ray`.
_saved_env: dict[str, str | None] = {}
_saved_flag: dict[str, bool] = {}


def _set_env(values: Mapping[str, str]) -> None:
    """Set environment variables for the local Ray's lifetime (its processes inherit them)."""
    for k, v in values.items():
        _saved_env.setdefault(k, os.environ.get(k))
        os.environ[k] = v


def local_cpus(cfg: Config) -> float:
    """CPUs of the local Ray this run would start."""
    return float(cfg.cluster.num_cpus or os.cpu_count() or 1)


def start_ray(cfg: Config) -> bool:
    """Join the configured cluster or start a private local Ray; returns whether we started it."""
    import ray

    if ray.is_initialized():
        return False
    address = cluster_address(cfg)
    # ray.init replaces the SIGTERM handler twice (its own sys.exit, then its core worker's
    # failure handler, which aborts the process 3 s later with workers, engines and Ray's agents
    # still running); keep the CLI's, which unwinds like Ctrl-C and shuts everything down.
    handler = signal.getsignal(signal.SIGTERM)
    try:
        if address:
            join_ray(address)
            log.info("joined Ray cluster at %s", address)
        else:
            note = token_trap_note(os.environ, TOKEN_FILE.expanduser().is_file())
            if note:
                log.info("note: %s", note)
            _set_env(private_env(os.environ, _TOKEN))
            _reload_auth_settings()
            # Read when ray is imported, which may have happened before this call.
            constants = sys.modules["ray._private.ray_constants"]
            _saved_flag.setdefault("ENABLE_RAY_CLUSTER", constants.ENABLE_RAY_CLUSTER)
            constants.ENABLE_RAY_CLUSTER = False
            ray.init(num_cpus=cfg.cluster.num_cpus, include_dashboard=False, log_to_driver=True,
                     _node_ip_address="127.0.0.1")
            log.info("started a private local Ray (debug mode, 127.0.0.1 only) with %s CPUs",
                     ray.cluster_resources().get("CPU"))
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
    return True


def is_loopback(address: str) -> bool:
    """Whether a Ray address (``host:port``, ``ray://...``) names this machine's loopback."""
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def join_ray(address: str, **kwargs: Any) -> None:
    """Connect to a running Ray. A head bound to 127.0.0.1 is only found by a driver that also
    calls its node 127.0.0.1 (else it waits for a raylet at the host's address that never comes)."""
    import ray

    if is_loopback(address):
        constants = sys.modules["ray._private.ray_constants"]
        _saved_flag.setdefault("ENABLE_RAY_CLUSTER", constants.ENABLE_RAY_CLUSTER)
        constants.ENABLE_RAY_CLUSTER = False
        _set_env({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
        kwargs["_node_ip_address"] = "127.0.0.1"
    ray.init(address=address, **kwargs)


def _reload_auth_settings() -> None:
    """Make Ray re-read the auth mode and token from the environment just set: its token loader
    caches the first token it read (e.g. ~/.ray/auth_token, when something imported and used Ray
    before this call), which the local GCS would then refuse."""
    from ray._raylet import AuthenticationTokenLoader, Config as RayConfig

    RayConfig.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def stop_ray() -> None:
    """Shut down the Ray this process started and restore the environment it had."""
    import ray

    ray.shutdown()
    if "ENABLE_RAY_CLUSTER" in _saved_flag:
        sys.modules["ray._private.ray_constants"].ENABLE_RAY_CLUSTER = _saved_flag.pop("ENABLE_RAY_CLUSTER")
    for k, v in _saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _saved_env.clear()
    _reload_auth_settings()


def nodes_now() -> tuple[list[str], list[Node]]:
    """The alive nodes of the Ray we are connected to: their addresses and total resources."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    return ([n["NodeManagerAddress"] for n in alive],
            [{k: float(v) for k, v in n["Resources"].items() if k in ("CPU", "GPU")} for n in alive])


def local_nodes(cfg: Config) -> tuple[list[str], list[Node]]:
    """The one node of the local Ray this run would start (CPUs as configured, GPUs as seen)."""
    gpus = 0
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) != "":
        try:
            import torch

            gpus = torch.cuda.device_count()
        except ImportError:
            pass
    return ["127.0.0.1"], [{"CPU": local_cpus(cfg), "GPU": float(gpus)}]


def reserve(layout: Layout, timeout_s: float) -> Any:
    """The placement group holding ``layout``'s bundles, once Ray has placed it. A layout that
    cannot fit a local Ray fails at once; on a cluster (where an autoscaler may add nodes) it
    fails after ``timeout_s``. Either way with one line (:class:`ConfigError`), never a hang."""
    import ray
    from ray.exceptions import GetTimeoutError
    from ray.util.placement_group import placement_group, remove_placement_group

    names, nodes = nodes_now()
    if layout.local:
        check_fits(layout, nodes)
    pg = placement_group(layout.bundles(), strategy=layout.strategy, name="selfplay")
    try:
        ray.get(pg.ready(), timeout=timeout_s)
    except GetTimeoutError:
        remove_placement_group(pg)
        names, nodes = nodes_now()
        raise ConfigError(f"{shortfall(layout, nodes)} (not placed within cluster.placement_timeout_s="
                          f"{timeout_s:g} s; `ray status` shows what is free)") from None
    log.info("placement group ready: %d bundles (%s) on %d node(s)", len(layout.bundles()),
             layout.strategy, len(nodes))
    return pg
