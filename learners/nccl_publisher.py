"""The learner's side of vLLM's NCCL weight transfer (GPU clusters, ``rollout.weight_sync: nccl``).

vLLM's documented RL pattern, unchanged: the trainer builds vLLM's own trainer engine with
``WeightTransferTrainerFactory.trainer_init(NCCLTrainerInitInfo(...), client=..., source=
ModuleSource(model))`` (which rendezvouses with every engine's workers over NCCL) and calls
``send_weights()`` after each update (start, update with the parameter metadata, broadcast,
finish). Our part is only the client: :class:`actors.weight_sync.EngineWeightSyncClient`, which
fans each control call out to the rollout workers concurrently.

It needs CUDA on both sides, so it cannot run on a CPU host; what can be checked without GPUs
(the metadata sent, the order of calls, the ranks) is tested in ``tests/actors/test_weight_sync.py``.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

import torch


def free_port() -> int:
    """A TCP port free on this host now, for the NCCL rendezvous store."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class NCCLPublisher:
    """Owns vLLM's NCCL trainer engine for one model and a fixed set of rollout engines."""

    def __init__(self, model: torch.nn.Module, call: Callable[[int, str, dict | None], Any],
                 num_engines: int, master_address: str, master_port: int) -> None:
        from vllm.distributed.weight_transfer import ModuleSource, WeightTransferTrainerFactory
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        from actors.weight_sync import EngineWeightSyncClient

        client = EngineWeightSyncClient(call, num_engines)
        info = NCCLTrainerInitInfo(master_address=master_address, master_port=master_port,
                                   world_size=1 + num_engines, rank=0)
        self.engine = WeightTransferTrainerFactory.trainer_init(info, client=client,
                                                                source=ModuleSource(model))

    def publish(self) -> None:
        """Broadcast the model's current weights to every engine (blocks until they have them)."""
        self.engine.send_weights()
