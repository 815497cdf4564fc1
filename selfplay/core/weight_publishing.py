"""Weight publishing: how a learner's new weights reach the running rollout engines, in one place.

One interface, :class:`WeightPublisher`, whose ``publish()`` the learner's worker calls once per
step, and three transports, all vLLM's own mechanisms on the receiving side:

* **RAM file** (engines on the learner's node, the default): the tensors are written once, raw,
  into a safetensors file in ``/dev/shm``; only the path crosses to each engine, whose vLLM worker
  feeds ``reload_weights`` from a zero-copy memory map of it (:class:`WeightSyncExtension`).
  Serialising the state dict through vLLM's RPC channel instead costs ~10x more: it is nearly all
  byte shuffling between processes. Files left by a killed run are swept at start-up
  (:func:`sweep_stale_weight_files`), only those whose writing process is gone.
* **object store** (engines on other nodes of a CPU cluster): one copy of the tensors is put into
  Ray's object store and each engine loads it through the same RAM-file path on its own node.
* **NCCL** (GPUs, ``rollout.weight_sync: nccl``): vLLM 0.32's weight-transfer API. The learner
  holds vLLM's ``NCCLTrainerWeightTransferEngine`` (built by ``WeightTransferTrainerFactory
  .trainer_init`` over a ``ModuleSource``) and calls ``send_weights()`` each round; that engine
  drives the inference side through a ``VLLMWeightSyncClient``: :class:`EngineWeightSyncClient`
  is that client for our engines (calls fanned out concurrently, since NCCL calls are collective).

No Ray and no vLLM at import: the caller passes functions that reach the engines (Ray calls in
a cluster, direct calls in one process), and vLLM's worker process imports this module by name.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import torch

# safetensors dtype codes (the format's spec) for the dtypes a policy can hold.
_ST_CODES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
             torch.uint8: "U8", torch.bool: "BOOL"}
_ST_DTYPES = {code: dtype for dtype, code in _ST_CODES.items()}

# The order of calls one NCCL round makes on each engine (what vLLM's trainer engine issues in
# ``send_weights``); initialisation (``init_weight_transfer_engine``) happens once before.
NCCL_ROUND = ("start_weight_update", "update_weights", "finish_weight_update")


_PREFIX = "selfplay-weights"
_WEIGHT_FILE = re.compile(rf"^{_PREFIX}-(\d+)-[0-9a-f]+\.safetensors$")


def _shm_folder() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def shm_path(prefix: str = _PREFIX) -> str:
    """A fresh file name in RAM (``/dev/shm`` where present, else the temp folder), carrying the
    writer's pid so that :func:`sweep_stale_weight_files` can tell orphans from live files."""
    return os.path.join(_shm_folder(), f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}.safetensors")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread. Casting a model's few hundred small tensors with two
    OpenMP threads on a busy 2-core host took 1.3-3.5 s (threads wait on each other at every
    op's barrier) against 0.2-0.6 s on one; this process has no other torch work meanwhile."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_safetensors(path: str, named_tensors: Iterable[tuple[str, torch.Tensor]],
                      dtype: torch.dtype | None = None) -> int:
    """Write tensors as a standard safetensors file in one pass; returns the payload bytes.

    Floating tensors are cast to ``dtype`` first (the engine's dtype: sending fp32 to a bf16 engine
    would move twice the bytes). Tensors sharing storage with an earlier one (tied embeddings in a
    ``state_dict``) are written once, under the first name, as a Hugging Face checkpoint does.
    Written by hand rather than with ``safetensors.torch.save_file`` because that copies every
    tensor into a Python ``bytes`` object first; here each tensor's memory goes straight to the file.
    """
    tensors: list[tuple[str, torch.Tensor]] = []
    seen: set[tuple[int, tuple[int, ...], torch.dtype]] = set()
    with _one_thread():
        for name, tensor in named_tensors:
            tensor = tensor.detach()
            key = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
            if tensor.numel() and key in seen:
                continue
            seen.add(key)
            out_dtype = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
            tensors.append((name, tensor if out_dtype == tensor.dtype else tensor.to(out_dtype)))
    # Widest elements first: with the header padded to 8 bytes every tensor then starts at a
    # multiple of its element size, so the reader can view the memory map without copying.
    tensors.sort(key=lambda item: -item[1].element_size())
    header: dict[str, Any] = {}
    offset = 0
    for name, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _ST_CODES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # pad so every tensor starts 8-byte aligned in the memory map
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, tensor in tensors:
            flat = tensor.to("cpu").contiguous().view(-1)
            f.write(memoryview(flat.view(torch.uint8).numpy()))
    return offset


def iter_safetensors(path: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` views into a private memory map of a safetensors file: no copy is
    made here (for aligned tensors, which :func:`write_safetensors` guarantees); the only copy is
    the one ``reload_weights`` makes into the live parameters."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    size = os.path.getsize(path)
    storage = torch.UntypedStorage.from_file(path, shared=False, nbytes=size)
    base = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (size,))
    start = 8 + length
    for name, info in header.items():
        begin, end = info["data_offsets"]
        chunk = base[start + begin:start + end]
        dtype = _ST_DTYPES[info["dtype"]]
        if (start + begin) % chunk.new_empty(0, dtype=dtype).element_size():
            chunk = chunk.clone()  # a file from another writer may be unaligned: copy that tensor
        yield name, chunk.view(dtype).view(info["shape"])


class WeightSyncExtension:
    """Methods vLLM mixes into its worker class (``worker_extension_cls``, vLLM's pattern for RL
    weight updates), called through ``collective_rpc``. ``self`` is vLLM's worker.

    Only ``reload_weights`` (checkpoint-format tensors, then vLLM's own re-processing) works on the
    CPU backend: it repacks weights after loading, so copying into parameters by name does not.
    """

    def _selfplay_reload(self, weights: Iterable[tuple[str, torch.Tensor]]) -> float:
        start = time.perf_counter()
        self.reload_weights(weights_iterator=weights)  # type: ignore[attr-defined]
        self._selfplay_refresh_tied_head()
        return time.perf_counter() - start

    def _selfplay_refresh_tied_head(self) -> None:
        """Work around a vLLM 0.32 CPU bug: a tied LM head receives no weights of its own, so the
        layerwise reload never re-runs its ``process_weights_after_loading``, and the CPU GEMM
        keeps the oneDNN handle packed from the *old* embedding (logits drift from the new model
        by ~0.1 nats). Re-running it re-packs from the reloaded tensor; off the CPU it is a no-op."""
        runner = self.model_runner  # type: ignore[attr-defined]
        if not getattr(runner.model_config.hf_text_config, "tie_word_embeddings", False):
            return
        head = getattr(runner.get_model(), "lm_head", None)
        method = getattr(head, "quant_method", None)
        if method is not None:
            method.process_weights_after_loading(head)

    def selfplay_reload_from_file(self, path: str) -> float:
        """Reload all weights from a safetensors file on this node; returns seconds spent."""
        return self._selfplay_reload(iter_safetensors(path))


def nccl_update_info(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, list]:
    """The per-round metadata of an NCCL update, in send order: the fields of vLLM's
    ``NCCLWeightTransferUpdateInfo`` exactly as ``NCCLTrainerWeightTransferEngine.send_weights``
    builds them from its ``WeightSource.metadata()`` (dtype names without the ``torch.`` prefix)."""
    names, dtype_names, shapes = [], [], []
    for name, tensor in named_tensors:
        names.append(name)
        dtype_names.append(str(tensor.dtype).split(".")[-1])
        shapes.append(list(tensor.shape))
    return {"names": names, "dtype_names": dtype_names, "shapes": shapes}


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


# ----- the publisher: one call per step ----------------------------------------------------------

#: ``rollout.weight_sync`` values: ``auto`` is ``cpu`` (RAM file or object store by node).
WEIGHT_SYNCS = ("auto", "cpu", "nccl")


def resolve_weight_sync(weight_sync: str) -> str:
    """``auto`` means ``cpu``: the file path works on every single node, GPU hosts included, while
    NCCL needs the learner to hold vLLM's trainer engine, so it is chosen explicitly."""
    if weight_sync not in WEIGHT_SYNCS:
        raise ValueError(f"weight_sync={weight_sync!r}: expected one of {WEIGHT_SYNCS}")
    return "cpu" if weight_sync == "auto" else weight_sync


#: Calls one method on every engine at once and waits for all: ``[(method, args), ...]`` in engine
#: order in, the results in the same order out.
FanOut = Callable[[list[tuple[str, tuple]]], list[Any]]


class WeightPublisher:
    """Sends the learner's current weights to every rollout engine.

    ``weights()`` yields ``(name, tensor)`` pairs of the policy; ``local[i]`` says whether engine
    ``i`` shares the learner's node (RAM file) or not (object store, through ``put``, e.g.
    ``ray.put``); ``nccl`` replaces both when given. Engines receive with their
    ``update_weights_from_file(path)`` and ``update_weights(tensors)`` methods.
    """

    def __init__(self, weights: Callable[[], Iterable[tuple[str, torch.Tensor]]], dtype: torch.dtype,
                 fan_out: FanOut, local: list[bool], put: Callable[[Any], Any] | None = None,
                 nccl: "NCCLPublisher | None" = None) -> None:
        if not all(local) and put is None and nccl is None:
            raise ValueError("engines on other nodes need an object store (put) or NCCL")
        self.weights, self.dtype, self.fan_out = weights, dtype, fan_out
        self.local, self.put, self.nccl = local, put, nccl

    def publish(self) -> dict[str, float]:
        """Publish once; returns ``sync/*`` figures (seconds, MB) and ``perf/weight_sync_s``."""
        start = time.perf_counter()
        if self.nccl is not None:
            self.nccl.publish()
            return {"sync/nccl_s": time.perf_counter() - start,
                    "perf/weight_sync_s": time.perf_counter() - start}
        stats: dict[str, float] = {}
        path, remote = None, None
        try:
            if any(self.local):
                path = shm_path()
                stats["sync/mb"] = write_safetensors(path, self.weights(), dtype=self.dtype) / 1e6
                stats["sync/write_s"] = time.perf_counter() - start
            if not all(self.local):
                # Copies: a view of the learner's flat buffer would pickle the whole buffer.
                remote = self.put([(n, t.to(self.dtype if t.is_floating_point() else t.dtype, copy=True))
                                   for n, t in self.weights()])
            loads = self.fan_out([("update_weights_from_file", (path,)) if local
                                  else ("update_weights", (remote,)) for local in self.local])
        finally:
            if path is not None and os.path.exists(path):
                os.unlink(path)
        total = time.perf_counter() - start
        stats.update({"perf/weight_sync_s": total,
                      "sync/load_s": max(x["sync/load_s"] for x in loads)})
        if "sync/mb" in stats:
            stats["sync/mb_per_s"] = stats["sync/mb"] / max(total, 1e-9)
        return stats


def sweep_stale_weight_files(folder: str | None = None) -> list[str]:
    """Delete weight files in ``folder`` (``/dev/shm``) whose writing process has gone (a killed
    run leaves a model-sized file in RAM). Files of live processes, whoever they belong to, stay,
    so two runs on one node never delete each other's files. Returns the removed paths."""
    folder = folder or _shm_folder()
    removed = []
    for name in os.listdir(folder):
        m = _WEIGHT_FILE.match(name)
        if m and not _alive(int(m.group(1))):
            path = os.path.join(folder, name)
            try:
                os.unlink(path)
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def free_port() -> int:
    """A TCP port free on this host now, for the NCCL rendezvous store."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class NCCLPublisher:
    """The learner's side of vLLM's NCCL weight transfer (GPU clusters): vLLM's documented RL
    pattern unchanged. The trainer builds vLLM's own trainer engine with
    ``WeightTransferTrainerFactory.trainer_init(NCCLTrainerInitInfo(...), client=..., source=
    ModuleSource(model))`` (which rendezvouses with every engine's workers over NCCL) and calls
    ``send_weights()`` after each update. It needs CUDA on both sides; what can be checked without
    GPUs (the metadata sent, the order of calls, the ranks) is tested on the client."""

    def __init__(self, model: torch.nn.Module, call: Callable[[int, str, dict | None], Any],
                 num_engines: int, master_address: str, master_port: int) -> None:
        from vllm.distributed.weight_transfer import ModuleSource, WeightTransferTrainerFactory
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        client = EngineWeightSyncClient(call, num_engines)
        info = NCCLTrainerInitInfo(master_address=master_address, master_port=master_port,
                                   world_size=1 + num_engines, rank=0)
        self.engine = WeightTransferTrainerFactory.trainer_init(info, client=client,
                                                                source=ModuleSource(model))

    def publish(self) -> None:
        """Broadcast the model's current weights to every engine (blocks until they have them)."""
        self.engine.send_weights()
