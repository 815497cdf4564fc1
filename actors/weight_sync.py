"""Moving new policy weights into running vLLM engines: the pieces shared by engine, learner and tests.

Two paths, both vLLM's own mechanisms:

* **cpu** (any single node, the default): the learner's tensors are written once, raw, into a
  safetensors file in ``/dev/shm`` (RAM); only the path crosses to vLLM's worker, through
  ``collective_rpc``, and the worker extension below feeds ``reload_weights`` from a zero-copy
  memory map of that file. Serialising the state dict through the RPC channel instead (the naive
  way) costs ~10x more: it is nearly all byte shuffling between processes.
* **nccl** (GPUs): vLLM 0.32's weight-transfer API. The learner holds vLLM's
  ``NCCLTrainerWeightTransferEngine`` (built by ``WeightTransferTrainerFactory.trainer_init``
  over a ``ModuleSource``) and calls ``send_weights()`` each round; that engine drives the
  inference side through a ``VLLMWeightSyncClient``. :class:`EngineWeightSyncClient` is that client
  for our engines (one call per engine, fanned out concurrently because NCCL calls are collective).

Nothing here imports vLLM at module import: the worker process imports this module by name.
"""

from __future__ import annotations

import json
import os
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


def shm_path(prefix: str = "selfplay-weights") -> str:
    """A fresh file name in RAM (``/dev/shm`` where present, else the temp folder)."""
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return os.path.join(folder, f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}.safetensors")


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

    def selfplay_stash(self, path: str) -> int:
        """Copy a file's tensors into this worker's memory (benchmark floor set-up)."""
        self._selfplay_stash = [(n, t.clone()) for n, t in iter_safetensors(path)]
        return len(self._selfplay_stash)

    def selfplay_reload_stash(self) -> float:
        """Reload from tensors already in this process: the floor of any transport."""
        return self._selfplay_reload(iter(self._selfplay_stash))

    def selfplay_reload_from_bytes(self, data: bytes) -> float:
        """The naive path (benchmark only): a whole serialised state dict through the RPC."""
        from safetensors.torch import load

        return self._selfplay_reload(iter(load(data).items()))


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
