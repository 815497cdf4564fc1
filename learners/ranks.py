"""Process-group plumbing for the sharded learner: joining the group, and small collectives.

One learner rank is one process (a Ray actor on a cluster, a spawned process in the tests). All
ranks call :func:`join_rank_group` with the same ``master_addr:master_port`` (rank 0's host and a
free port there, e.g. :func:`free_port` run on rank 0's node) and
their own ``rank``. NCCL on GPUs, gloo on CPUs: FSDP2 runs on both, so the CPU tests exercise the
very code path a GPU cluster runs.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

__all__ = ["join_rank_group", "leave_rank_group", "all_sum", "all_max", "backend_for",
           "spawn_local_ranks", "free_port"]


def free_port() -> int:
    """A TCP port free on this host now, for a rendezvous store (the learner's ranks, NCCL)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def join_rank_group(rank: int, world_size: int, master_addr: str, master_port: int,
                    device: torch.device, timeout_s: float = 600.0) -> DeviceMesh:
    """Join (or reuse) the default process group and return a 1-D device mesh over all ranks.

    Blocks until all ``world_size`` ranks have joined (TCP rendezvous at rank 0's address).
    A process whose default group already exists (e.g. ``torchrun``) keeps it: then the
    arguments must agree with it. On CUDA the process must see its GPU as ``device``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}: expected 0 <= rank < world_size={world_size}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), init_method=f"tcp://{master_addr}:{master_port}",
                                rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    elif (dist.get_rank(), dist.get_world_size()) != (rank, world_size):
        raise ValueError(f"the process group has rank {dist.get_rank()} of {dist.get_world_size()}, "
                         f"not {rank} of {world_size}")
    return init_device_mesh(device.type, (world_size,))


def leave_rank_group() -> None:
    """Destroy the default process group (if any): the process may then exit cleanly."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _all_reduce(values: list[float], op: dist.ReduceOp.RedOpType, device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.tolist()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over all ranks (float64: token counts stay exact)."""
    return _all_reduce(values, dist.ReduceOp.SUM, device)


def all_max(values: list[float], device: torch.device) -> list[float]:
    """Element-wise maximum over all ranks."""
    return _all_reduce(values, dist.ReduceOp.MAX, device)


def from_rank0(obj: object, device: torch.device) -> object:
    """Rank 0's ``obj`` on every rank (pickled; for small control data such as a step's samples
    or a checkpoint's folder). Collective."""
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=device)
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here (e.g. every shard of a checkpoint is written)."""
    dist.barrier()


def spawn_local_ranks(fn, world_size: int, *args, threads_per_rank: int = 1) -> None:
    """Run ``fn(rank, world_size, port, *args)`` in ``world_size`` fresh processes on this host
    (torch's spawn: no Ray), rendezvousing at a free local port; waits for all, and raises if any
    rank failed. ``fn`` must be importable (module level). For tests, benchmarks, GPU checks."""
    import torch.multiprocessing as mp

    mp.spawn(_spawned_rank, args=(fn, world_size, free_port(), threads_per_rank, args),
             nprocs=world_size, join=True)


def _spawned_rank(rank: int, fn, world_size: int, port: int, threads: int, args: tuple) -> None:
    # Threads per rank: ranks sharing a few cores must not oversubscribe them (OpenMP threads
    # spin at every op's barrier while another rank holds the core).
    torch.set_num_threads(threads)
    if torch.cuda.is_available():  # one GPU a rank
        torch.cuda.set_device(rank % torch.cuda.device_count())
    try:
        fn(rank, world_size, port, *args)
    finally:
        leave_rank_group()
    # Done: leave without running C++ static destructors. A gloo or checkpoint thread still
    # joinable at interpreter exit aborts the process ("terminate called without an active
    # exception"), about one run in six on 2 cores, which spawn reports as a failed rank.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
