"""Weight publishing without an engine: the RAM-file format, the publisher's transports, the sweep
of orphaned files, and the NCCL round's metadata."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
import torch

from selfplay.core.weight_publishing import (NCCL_ROUND, EngineWeightSyncClient, WeightPublisher,
                                            engine_init_info, sweep_stale_weight_files,
                                            iter_safetensors, nccl_update_info, shm_path,
                                            write_safetensors)


def _tensors() -> list[tuple[str, torch.Tensor]]:
    embed = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    return [("model.embed_tokens.weight", embed), ("model.norm.weight", torch.ones(3)),
            ("lm_head.weight", embed),  # tied: the same storage as the embedding
            ("steps", torch.tensor([7], dtype=torch.int64))]


def test_safetensors_round_trip_casts_floats_and_writes_tied_weights_once(tmp_path):
    path = str(tmp_path / "w.safetensors")
    nbytes = write_safetensors(path, _tensors(), dtype=torch.bfloat16)
    back = dict(iter_safetensors(path))
    assert sorted(back) == ["model.embed_tokens.weight", "model.norm.weight", "steps"]
    assert back["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert torch.equal(back["model.embed_tokens.weight"].float(), _tensors()[0][1])
    assert back["steps"].dtype == torch.int64 and back["steps"].item() == 7  # ints are not cast
    assert nbytes == 12 * 2 + 3 * 2 + 8  # bf16 embedding + bf16 norm + one int64


def test_written_file_is_standard_safetensors_with_aligned_data(tmp_path):
    from safetensors import safe_open

    path = str(tmp_path / "w.safetensors")
    write_safetensors(path, _tensors())
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        json.loads(f.read(length))
    assert (8 + length) % 8 == 0
    with safe_open(path, framework="pt") as f:
        assert torch.equal(f.get_tensor("model.norm.weight"), torch.ones(3))


def test_shm_path_is_fresh_and_in_ram():
    a, b = shm_path(), shm_path()
    assert a != b and not os.path.exists(a)
    if os.path.isdir("/dev/shm"):
        assert a.startswith("/dev/shm/")


def test_nccl_update_info_matches_vllm_trainer_engine_metadata():
    """Our metadata is field for field what vLLM's trainer engine sends for the same module."""
    from vllm.distributed.weight_transfer import ModuleSource
    from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferUpdateInfo

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2, bias=False)).to(torch.bfloat16)
    info = nccl_update_info(model.named_parameters())
    assert info == {"names": ["0.weight", "0.bias", "1.weight"],
                    "dtype_names": ["bfloat16"] * 3, "shapes": [[4, 3], [4], [2, 4]]}
    meta = ModuleSource(model).metadata()
    assert info["names"] == [m.name for m in meta]
    assert info["shapes"] == [list(m.shape) for m in meta]
    NCCLWeightTransferUpdateInfo(**info)  # the worker side parses it


def test_vllm_trainer_engine_drives_our_client_in_the_documented_order():
    """Run vLLM's own NCCLTrainerWeightTransferEngine.send_weights (broadcast stubbed out, no GPU)
    against our client over two fake engines: start, update (with our metadata), finish."""
    from vllm.distributed.weight_transfer import ModuleSource
    from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerWeightTransferEngine

    calls: list[tuple[int, str, dict | None]] = []
    client = EngineWeightSyncClient(lambda i, method, payload: calls.append((i, method, payload)), 2)
    model = torch.nn.Linear(3, 2)
    trainer = NCCLTrainerWeightTransferEngine(client=client, source=ModuleSource(model))
    trainer._broadcast = lambda source, meta: None  # the NCCL data plane: GPU only
    trainer.send_weights()
    assert [m for _, m, _ in calls] == [m for m in NCCL_ROUND for _ in range(2)]
    assert sorted(i for i, m, _ in calls if m == "update_weights") == [0, 1]
    payload = next(p for _, m, p in calls if m == "update_weights")
    assert payload == nccl_update_info(model.named_parameters())


def test_each_engine_gets_its_own_ranks_after_the_trainer():
    calls: list[tuple[int, str, dict | None]] = []
    client = EngineWeightSyncClient(lambda i, m, p: calls.append((i, m, p)), 3, ranks_per_engine=2)
    client.init_weight_transfer_engine({"master_address": "10.0.0.1", "master_port": 29500,
                                        "world_size": 7, "rank_offset": 1})
    assert sorted((i, p["rank_offset"]) for i, _, p in calls) == [(0, 1), (1, 3), (2, 5)]
    assert engine_init_info({"world_size": 2}, 0) == {"world_size": 2, "rank_offset": 1}


def test_client_surfaces_an_engine_failure():
    def call(i, method, payload):
        if i == 1:
            raise RuntimeError("engine 1 is gone")

    with pytest.raises(RuntimeError, match="engine 1"):
        EngineWeightSyncClient(call, 2).start_weight_update()


def test_importing_actors_and_the_factory_loads_neither_torch_nor_vllm():
    code = ("import sys, actors, actors.engine; "
            "print(any(m in sys.modules for m in ('torch', 'vllm')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reader_accepts_unaligned_files_from_other_writers(tmp_path):
    from safetensors.torch import save_file

    path = str(tmp_path / "other.safetensors")
    tensors = {"a": torch.ones(3, dtype=torch.bfloat16), "b": torch.arange(3, dtype=torch.int64)}
    save_file(tensors, path)
    back = dict(iter_safetensors(path))
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


class _Engine:
    """Records what reaches it, as a rollout worker's engine would load it."""

    def __init__(self) -> None:
        self.received: dict[str, torch.Tensor] = {}
        self.paths: list[str] = []

    def update_weights_from_file(self, path: str) -> dict[str, float]:
        self.paths.append(path)
        self.received = {n: t.clone() for n, t in iter_safetensors(path)}
        return {"sync/load_s": 0.25}

    def update_weights(self, named_tensors) -> dict[str, float]:
        self.received = dict(named_tensors)
        return {"sync/load_s": 0.5}


def test_publisher_reaches_local_engines_by_file_and_remote_ones_through_the_store():
    local, remote = _Engine(), _Engine()
    engines = [local, remote]
    put_calls = []

    def fan_out(calls):
        return [getattr(engine, method)(*args) for engine, (method, args) in zip(engines, calls)]

    def put(value):
        put_calls.append(value)
        return value  # in one process the "object store" is the value itself

    publisher = WeightPublisher(lambda: iter(_tensors()), torch.bfloat16, fan_out, [True, False], put=put)
    stats = publisher.publish()
    for engine in engines:  # the same weights, in the engines' dtype, the tied one once on file
        assert engine.received["model.embed_tokens.weight"].dtype == torch.bfloat16
        assert torch.equal(engine.received["model.embed_tokens.weight"].float(),
                           torch.arange(12, dtype=torch.float32).reshape(4, 3))
        assert engine.received["steps"].dtype == torch.int64
    assert len(put_calls) == 1 and not os.path.exists(local.paths[0])  # the RAM file is gone
    assert stats["sync/load_s"] == 0.5  # the slowest engine's own figure
    # The RAM file's payload: bf16 embedding (tied head once) + bf16 norm + one int64, in MB.
    assert stats["sync/mb"] == (12 * 2 + 3 * 2 + 8) / 1e6
    # The file is written first, then loaded: the whole publish takes at least the writing, and
    # the rate is the file's megabytes over the whole publish.
    assert 0 < stats["sync/write_s"] <= stats["perf/weight_sync_s"]
    assert stats["sync/mb_per_s"] == pytest.approx(stats["sync/mb"] / stats["perf/weight_sync_s"])


def test_publisher_removes_the_file_when_an_engine_fails():
    class Failing(_Engine):
        def update_weights_from_file(self, path):
            self.paths.append(path)
            raise RuntimeError("engine died")

    engine = Failing()
    publisher = WeightPublisher(lambda: iter(_tensors()), torch.float32,
                                lambda calls: [engine.update_weights_from_file(*calls[0][1])], [True])
    with pytest.raises(RuntimeError, match="engine died"):
        publisher.publish()
    assert not os.path.exists(engine.paths[0])


def test_sweep_removes_only_files_whose_writer_is_gone(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # that process has exited
    orphan = tmp_path / f"selfplay-weights-{dead_pid}-0123abcd.safetensors"
    mine = tmp_path / f"selfplay-weights-{os.getpid()}-0123abcd.safetensors"
    other = tmp_path / "someone-else.safetensors"
    for path in (orphan, mine, other):
        path.write_bytes(b"x")
    assert sweep_stale_weight_files(str(tmp_path)) == [str(orphan)]
    assert not orphan.exists() and mine.exists() and other.exists()
