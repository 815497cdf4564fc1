"""The wire format of weight publishing: what the learner's end and the engines' end must agree on.

Both ends import this module and nothing of each other:

* the learner's end, :mod:`learners.weight_publisher`, decides the transport and sends;
* the engines' end, :mod:`actors.weight_receiver` (vLLM's worker extension) and the engines'
  ``update_weights*`` methods, receives.

What they share: the ``rollout.weight_sync`` values, the RAM-file format (a standard safetensors
file in ``/dev/shm``, tensors aligned so the reader can map it without copying, the file name
carrying the writer's pid so :func:`sweep_stale_weight_files` can remove a killed run's files),
and the calls and metadata of one NCCL round (vLLM's weight-transfer API).

No Ray and no vLLM at import: vLLM's worker process imports the receiving end by name.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import uuid
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import torch

#: ``rollout.weight_sync`` values: ``auto`` is ``cpu`` (RAM file or object store by node).
WEIGHT_SYNCS = ("auto", "cpu", "nccl")


def resolve_weight_sync(weight_sync: str) -> str:
    """``auto`` means ``cpu``: the file path works on every single node, GPU hosts included, while
    NCCL needs the learner to hold vLLM's trainer engine, so it is chosen explicitly."""
    if weight_sync not in WEIGHT_SYNCS:
        raise ValueError(f"weight_sync={weight_sync!r}: expected one of {WEIGHT_SYNCS}")
    return "cpu" if weight_sync == "auto" else weight_sync



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
#: LoRA adapter folders (:func:`adapter_folder`): the publisher's, and each worker's own copies of
#: adapters that came through the object store.
ADAPTER_PREFIX = "selfplay-adapter"
_ADAPTER_FOLDER = re.compile(rf"^{ADAPTER_PREFIX}-(\d+)-v\d+-[0-9a-f]+$")


def _shm_folder() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def shm_path(prefix: str = _PREFIX) -> str:
    """A fresh file name in RAM (``/dev/shm`` where present, else the temp folder), carrying the
    writer's pid so that :func:`sweep_stale_weight_files` can tell orphans from live files."""
    return os.path.join(_shm_folder(), f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}.safetensors")


def adapter_folder(version: int, prefix: str = ADAPTER_PREFIX) -> str:
    """A fresh folder name in RAM for the LoRA adapter of weight version ``version`` (not created
    here), carrying the writer's pid as :func:`shm_path` does, for the same sweep."""
    return os.path.join(_shm_folder(), f"{prefix}-{os.getpid()}-v{version}-{uuid.uuid4().hex[:8]}")


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


def sweep_stale_weight_files(folder: str | None = None) -> list[str]:
    """Delete weight files and LoRA adapter folders in ``folder`` (``/dev/shm``) whose writing
    process has gone (a killed run leaves a model-sized file in RAM). Those of live processes,
    whoever they belong to, stay, so two runs on one node never delete each other's files.
    Returns the removed paths."""
    import shutil

    folder = folder or _shm_folder()
    removed = []
    for name in os.listdir(folder):
        m = _WEIGHT_FILE.match(name) or _ADAPTER_FOLDER.match(name)
        if m and not _alive(int(m.group(1))):
            path = os.path.join(folder, name)
            try:
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
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
