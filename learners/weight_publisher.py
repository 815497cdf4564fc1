"""The learner's end of weight publishing: which transport reaches each rollout engine, and the
publisher that sends the learner's new weights there once per step.

Three transports, all vLLM's own mechanisms on the receiving side (:mod:`actors.weight_receiver`):

* **file** (engines on the learner's node, the default): the tensors are written once, raw, into
  a safetensors file in ``/dev/shm``; only the path crosses to each engine, whose vLLM worker
  feeds ``reload_weights`` from a zero-copy memory map of it. Serialising the state dict through
  vLLM's RPC channel instead costs ~10x more: it is nearly all byte shuffling between processes.
* **object store** (engines on other nodes of a CPU cluster): one copy of the tensors is put into
  Ray's object store and each engine loads it through the same RAM-file path on its own node.
* **nccl** (GPUs, ``rollout.weight_sync: nccl``): vLLM 0.32's weight-transfer API. The learner
  holds vLLM's ``NCCLTrainerWeightTransferEngine`` (built by ``WeightTransferTrainerFactory
  .trainer_init`` over a ``ModuleSource``) and calls ``send_weights()`` each round; that engine
  drives the inference side through a ``VLLMWeightSyncClient``: :class:`EngineWeightSyncClient`
  is that client for our engines (calls fanned out concurrently, since NCCL calls are collective).
  Written against vLLM's documented API and tested against stand-ins only: it needs CUDA on both
  ends, and no run of this project has used it on GPUs yet.

With LoRA (``trainer.lora.rank > 0``) only the adapter travels (:class:`AdapterPublisher`): the
learner writes it once as a PEFT folder in ``/dev/shm``, one folder per weight version, and the
engines load it as an adapter on their unchanged base (file: the folder's path; object store: the
folder's files as bytes, which each worker writes into a folder of its own). No NCCL for adapters.
With several policies (``policies:``) the version's folder holds one PEFT folder per policy,
``<folder>/<policy>/``, and travels the same way (its files one level of subfolders deep).

:func:`choose_transports` is the one place the choice is made; :func:`weight_passes` is the one
place that says how many times a publish reads the weights, which the sharded learner's other
ranks follow to gather with rank 0 (a gather is collective: a rank that read the weights a
different number of times would deadlock the group).

No Ray and no vLLM at import: the caller passes functions that reach the engines (Ray calls in a
cluster, direct calls in one process).
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import torch

from selfplay.core import metric_names as names
from selfplay.core.lora_format import folder_bytes, read_folder_files
from selfplay.core.weight_format import adapter_folder, resolve_weight_sync, shm_path, write_safetensors

FILE, OBJECT_STORE, NCCL = "file", "object_store", "nccl"
TRANSPORTS = (FILE, OBJECT_STORE, NCCL)


def choose_transports(weight_sync: str, learner_node: str, worker_nodes: list[str]) -> list[str]:
    """How each rollout worker receives weights: ``nccl`` for every worker when ``weight_sync`` is
    ``nccl``; otherwise ``file`` for a worker on the learner's node and ``object_store`` for one
    elsewhere (a CPU cluster has no NCCL)."""
    if resolve_weight_sync(weight_sync) == NCCL:
        return [NCCL] * len(worker_nodes)
    return [FILE if node == learner_node else OBJECT_STORE for node in worker_nodes]


def weight_passes(transports: list[str]) -> list[str]:
    """The passes one publish makes over the learner's ``weights()``, in order: the file is written
    from one, the object-store copy made from another. NCCL reads the module itself (vLLM's
    ``ModuleSource``), not ``weights()``."""
    unknown = sorted(set(transports) - set(TRANSPORTS))
    if unknown:
        raise ValueError(f"unknown weight transport(s) {unknown}: expected some of {TRANSPORTS}")
    return [t for t in (FILE, OBJECT_STORE) if t in transports]


def engine_init_info(init_info: dict[str, Any], engine_index: int, ranks_per_engine: int = 1) -> dict[str, Any]:
    """The init info for one of several independent engines. vLLM's trainer engine addresses one
    engine (workers from ``rank_offset=1``); with N engines in one NCCL group each needs its own
    block of ranks after the trainer's rank 0, and the group's ``world_size`` is
    ``1 + N * ranks_per_engine``."""
    return dict(init_info, rank_offset=1 + engine_index * ranks_per_engine)


class EngineWeightSyncClient:
    """vLLM's ``VLLMWeightSyncClient`` protocol over our engines, so that vLLM's own trainer engine
    drives them. ``call(index, method, payload)`` reaches engine ``index``'s ``weight_transfer``
    (a blocking Ray call, or a direct call in one process) and returns when it has finished.

    Calls fan out to all engines concurrently: ``init`` is an NCCL rendezvous and ``update_weights``
    a broadcast, both collective, so a sequential loop would deadlock on the first engine.
    """

    def __init__(self, call: Callable[[int, str, dict | None], Any], num_engines: int,
                 ranks_per_engine: int = 1) -> None:
        self._call = call
        self.num_engines = num_engines
        self.ranks_per_engine = ranks_per_engine

    def _all(self, method: str, payload: Callable[[int], dict | None]) -> None:
        with ThreadPoolExecutor(max_workers=self.num_engines) as pool:
            futures = [pool.submit(self._call, i, method, payload(i)) for i in range(self.num_engines)]
            for future in futures:
                future.result()

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self._all("init_weight_transfer_engine",
                  lambda i: engine_init_info(init_info, i, self.ranks_per_engine))

    def start_weight_update(self) -> None:
        self._all("start_weight_update", lambda i: None)

    def update_weights(self, update_info: dict[str, Any] | list[dict[str, Any]]) -> None:
        self._all("update_weights", lambda i: update_info)  # type: ignore[arg-type,return-value]

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self._all("finish_weight_update", lambda i: None)


def nccl_trainer_init_info(master_address: str, master_port: int, num_engines: int,
                           ranks_per_engine: int = 1) -> dict[str, Any]:
    """The fields of vLLM's ``NCCLTrainerInitInfo`` for a trainer (rank 0) and ``num_engines``
    engines of ``ranks_per_engine`` ranks each (their tensor-parallel size)."""
    return {"master_address": master_address, "master_port": master_port,
            "world_size": 1 + num_engines * ranks_per_engine, "rank": 0}


class NCCLPublisher:
    """The learner's side of vLLM's NCCL weight transfer (GPU clusters): vLLM's documented RL
    pattern unchanged. The trainer builds vLLM's own trainer engine with
    ``WeightTransferTrainerFactory.trainer_init(NCCLTrainerInitInfo(...), client=..., source=
    ModuleSource(model))`` (which rendezvouses with every engine's workers over NCCL) and calls
    ``send_weights()`` after each update. It needs CUDA on both sides; what can be checked without
    GPUs (the init info, the rank table, the metadata sent, the order of calls) is tested."""

    def __init__(self, model: torch.nn.Module, call: Callable[[int, str, dict | None], Any],
                 num_engines: int, master_address: str, master_port: int,
                 ranks_per_engine: int = 1) -> None:
        from vllm.distributed.weight_transfer import ModuleSource, WeightTransferTrainerFactory
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        self.client = EngineWeightSyncClient(call, num_engines, ranks_per_engine)
        info = NCCLTrainerInitInfo(**nccl_trainer_init_info(master_address, master_port, num_engines,
                                                            ranks_per_engine))
        self.engine = WeightTransferTrainerFactory.trainer_init(info, client=self.client,
                                                                source=ModuleSource(model))

    def publish(self) -> None:
        """Broadcast the model's current weights to every engine (blocks until they have them)."""
        self.engine.send_weights()


#: Calls one method on every engine at once and waits for all: ``[(method, args), ...]`` in engine
#: order in, the results in the same order out.
FanOut = Callable[[list[tuple[str, tuple]]], list[Any]]


class WeightPublisher:
    """Sends the learner's current weights to every rollout engine.

    ``weights()`` yields ``(name, tensor)`` pairs of the policy; ``transports[i]`` says how engine
    ``i`` receives them (:func:`choose_transports`): ``file`` through its
    ``update_weights_from_file(path)``, ``object_store`` through ``update_weights(tensors)`` with a
    reference from ``put`` (e.g. ``ray.put``), ``nccl`` through ``nccl`` (every engine then).
    """

    def __init__(self, weights: Callable[[], Iterable[tuple[str, torch.Tensor]]], dtype: torch.dtype,
                 fan_out: FanOut, transports: list[str], put: Callable[[Any], Any] | None = None,
                 nccl: NCCLPublisher | None = None) -> None:
        self.passes = weight_passes(transports)
        if OBJECT_STORE in transports and put is None:
            raise ValueError("engines on other nodes need an object store (put)")
        if NCCL in transports and (nccl is None or set(transports) != {NCCL}):
            raise ValueError("nccl weight transport: every engine uses it, through an NCCLPublisher")
        self.weights, self.dtype, self.fan_out = weights, dtype, fan_out
        self.transports, self.put, self.nccl = list(transports), put, nccl

    def publish(self) -> dict[str, float]:
        """Publish once; returns ``sync/*`` figures (seconds, MB) and ``perf/weight_sync_s``."""
        start = time.perf_counter()
        if self.nccl is not None:
            self.nccl.publish()
            return {names.SYNC_NCCL_S: time.perf_counter() - start,
                    names.WEIGHT_SYNC_S: time.perf_counter() - start}
        stats: dict[str, float] = {}
        path, remote = None, None
        try:
            for kind in self.passes:  # each reads weights() once, in weight_passes' order
                if kind == FILE:
                    path = shm_path()
                    stats[names.SYNC_MB] = write_safetensors(path, self.weights(), dtype=self.dtype) / 1e6
                    stats[names.SYNC_WRITE_S] = time.perf_counter() - start
                else:
                    # Copies: a view of the learner's flat buffer would pickle the whole buffer.
                    remote = self.put([(n, t.to(self.dtype if t.is_floating_point() else t.dtype, copy=True))
                                       for n, t in self.weights()])
            loads = self.fan_out([("update_weights_from_file", (path,)) if kind == FILE
                                  else ("update_weights", (remote,)) for kind in self.transports])
        finally:
            if path is not None and os.path.exists(path):
                os.unlink(path)
        total = time.perf_counter() - start
        stats.update({names.WEIGHT_SYNC_S: total,
                      names.SYNC_LOAD_S: max(x[names.SYNC_LOAD_S] for x in loads)})
        if names.SYNC_MB in stats:
            stats[names.SYNC_MB_PER_S] = stats[names.SYNC_MB] / max(total, 1e-9)
        return stats


class AdapterFolders:
    """The adapter folders a learner has published in ``/dev/shm``, one per weight version, oldest
    first: the newest ``keep`` stay (``trainer.max_staleness + 1``, the adapters an engine may
    still be serving requests with; vLLM reads a folder again if it must reload an adapter), older
    ones are removed. Shared by every publisher of one learner, so a restarted worker gets the
    folder already written for the current version."""

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}: at least the current adapter's folder must stay")
        self.keep = keep
        self.paths: dict[int, str] = {}  # version -> folder, in publishing order

    def add(self, version: int, path: str) -> None:
        self.paths[version] = path
        while len(self.paths) > self.keep:
            shutil.rmtree(self.paths.pop(next(iter(self.paths))), ignore_errors=True)

    def clear(self) -> None:
        """Remove every folder (the end of a run)."""
        for path in self.paths.values():
            shutil.rmtree(path, ignore_errors=True)
        self.paths.clear()


class AdapterPublisher:
    """Sends the learner's LoRA adapter to every rollout engine (``trainer.lora.rank > 0``).

    ``save_adapter(path)`` writes the adapter as a PEFT folder (the learner's ``save_adapter``);
    ``version()`` is the weight version being published (one folder per version, in ``folders``).
    ``transports[i]`` says how engine ``i`` receives it: ``file`` through its
    ``update_adapter_from_folder(path)``, ``object_store`` through ``update_adapter(files)`` with a
    reference from ``put`` to the folder's files as bytes (put once for all such engines).
    """

    nccl = None  #: no NCCL for adapters (the interface of :class:`WeightPublisher`)

    def __init__(self, save_adapter: Callable[[str], Any], version: Callable[[], int], fan_out: FanOut,
                 transports: list[str], put: Callable[[Any], Any] | None = None,
                 folders: AdapterFolders | None = None) -> None:
        weight_passes(transports)  # refuses unknown transports
        if NCCL in transports:
            raise ValueError("LoRA adapters travel through a RAM file or the object store, not nccl "
                             "(rollout.weight_sync: cpu or auto)")
        if OBJECT_STORE in transports and put is None:
            raise ValueError("engines on other nodes need an object store (put)")
        self.save_adapter, self.version, self.fan_out = save_adapter, version, fan_out
        self.transports, self.put = list(transports), put
        self.folders = folders if folders is not None else AdapterFolders(keep=1)

    def publish(self) -> dict[str, float]:
        """Publish the current adapter once; returns ``sync/*`` figures (seconds, MB) and
        ``perf/weight_sync_s``. A version already written (a restarted worker) is sent again
        from its folder."""
        start = time.perf_counter()
        version = self.version()
        stats: dict[str, float] = {}
        folder = self.folders.paths.get(version)
        if folder is None:
            folder = adapter_folder(version)
            try:
                self.save_adapter(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self.folders.add(version, folder)
            stats[names.SYNC_WRITE_S] = time.perf_counter() - start
        stats[names.SYNC_MB] = folder_bytes(folder) / 1e6
        remote = self.put(read_folder_files(folder)) if OBJECT_STORE in self.transports else None
        loads = self.fan_out([("update_adapter_from_folder", (folder,)) if kind == FILE
                              else ("update_adapter", (remote,)) for kind in self.transports])
        total = time.perf_counter() - start
        stats.update({names.WEIGHT_SYNC_S: total, names.SYNC_MB_PER_S: stats[names.SYNC_MB] / max(total, 1e-9),
                      names.SYNC_LOAD_S: max((x[names.SYNC_LOAD_S] for x in loads), default=0.0)})
        return stats
