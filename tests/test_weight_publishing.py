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

from learners.weight_publisher import (FILE, NCCL, OBJECT_STORE, EngineWeightSyncClient, NCCLPublisher,
                                       WeightPublisher, choose_transports, engine_init_info,
                                       weight_passes)
from selfplay.core.weight_format import (NCCL_ROUND, iter_safetensors, nccl_update_info, shm_path,
                                         sweep_stale_weight_files, write_safetensors)


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

    publisher = WeightPublisher(lambda: iter(_tensors()), torch.bfloat16, fan_out, [FILE, OBJECT_STORE], put=put)
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
                                lambda calls: [engine.update_weights_from_file(*calls[0][1])], [FILE])
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


def test_transports_follow_the_nodes_and_the_setting():
    nodes = ["n1", "n2", "n1"]
    assert choose_transports("auto", "n1", nodes) == [FILE, OBJECT_STORE, FILE]
    assert choose_transports("cpu", "n3", nodes) == [OBJECT_STORE] * 3
    assert choose_transports("nccl", "n1", nodes) == [NCCL] * 3
    with pytest.raises(ValueError, match="weight_sync"):
        choose_transports("ncl", "n1", nodes)


@pytest.mark.parametrize("transports", [[FILE], [OBJECT_STORE], [FILE, OBJECT_STORE],
                                        [OBJECT_STORE, FILE, FILE]])
def test_a_publish_reads_the_weights_exactly_as_often_as_weight_passes_says(transports):
    """The sharded learner's other ranks gather once per entry of ``weight_passes``; a publisher
    that read the weights a different number of times would leave them waiting (a deadlock)."""
    reads = []

    def weights():
        reads.append(1)
        return iter(_tensors())

    engines = [_Engine() for _ in transports]

    def fan_out(calls):
        return [getattr(e, method)(*args) for e, (method, args) in zip(engines, calls)]

    WeightPublisher(weights, torch.float32, fan_out, transports, put=lambda v: v).publish()
    assert len(reads) == len(weight_passes(transports)) == len(set(transports))
    assert all(e.received for e in engines)


def _nccl_publisher(monkeypatch, num_engines: int, ranks_per_engine: int):
    """A real NCCLPublisher whose one GPU-only call, vLLM's ``trainer_init`` (an NCCL rendezvous),
    is replaced by a recorder; the engines answer by recording their init info."""
    from vllm.distributed.weight_transfer import WeightTransferTrainerFactory

    seen: dict = {}

    def trainer_init(info, client, source):
        seen.update(info=info, client=client, source=source)
        client.init_weight_transfer_engine({"master_address": info.master_address,
                                            "master_port": info.master_port,
                                            "world_size": info.world_size, "rank_offset": 1})
        return object()

    monkeypatch.setattr(WeightTransferTrainerFactory, "trainer_init", staticmethod(trainer_init))
    calls: list[tuple[int, str, dict | None]] = []
    NCCLPublisher(torch.nn.Linear(3, 2), lambda i, m, p: calls.append((i, m, p)), num_engines,
                  "10.0.0.1", 29500, ranks_per_engine)
    return seen, calls


def test_nccl_publisher_gives_tensor_parallel_engines_disjoint_rank_blocks(monkeypatch):
    seen, calls = _nccl_publisher(monkeypatch, num_engines=2, ranks_per_engine=2)
    info = seen["info"]
    assert (info.master_address, info.master_port, info.rank) == ("10.0.0.1", 29500, 0)
    assert info.world_size == 1 + 2 * 2  # the trainer, then two engines of two ranks each
    offsets = sorted((i, p["rank_offset"]) for i, m, p in calls if m == "init_weight_transfer_engine")
    assert offsets == [(0, 1), (1, 3)]
    ranks = [r for _, off in offsets for r in range(off, off + 2)]
    assert sorted(ranks) == list(range(1, info.world_size))  # every rank once, none shared


def test_nccl_publisher_with_one_rank_per_engine(monkeypatch):
    seen, calls = _nccl_publisher(monkeypatch, num_engines=3, ranks_per_engine=1)
    assert seen["info"].world_size == 4
    assert sorted(p["rank_offset"] for _, m, p in calls) == [1, 2, 3]
