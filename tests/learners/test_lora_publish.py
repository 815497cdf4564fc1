"""Adapter-only publishing (``trainer.lora.rank > 0``): one PEFT folder per weight version in RAM,
old ones removed, sent by path (same node) or as the folder's files through the object store,
which the rollout worker writes into a folder of its own. Stand-in engines and a local fan-out:
no Ray, no vLLM (fast)."""

from __future__ import annotations

import os
import shutil

import pytest

from actors.rollout_worker import RolloutWorker
from learners.weight_publisher import FILE, NCCL, OBJECT_STORE, AdapterFolders, AdapterPublisher
from selfplay.config import ConfigError, load_config
from selfplay.core.config_schema import EvalConfig, LoraConfig, RolloutConfig
from selfplay.core.lora_format import read_folder_files

CONFIG = b'{"r": 8, "lora_alpha": 16}'


def save_adapter(calls: list[str]):
    """A stand-in for the learner's ``save_adapter``: a PEFT-shaped folder whose weights name it."""
    def save(path: str) -> None:
        calls.append(path)
        os.makedirs(path)
        with open(os.path.join(path, "adapter_config.json"), "wb") as f:
            f.write(CONFIG)
        with open(os.path.join(path, "adapter_model.safetensors"), "wb") as f:
            f.write(f"weights of {len(calls)}".encode())
    return save


class FakeEngine:
    """Records the adapters loaded, with the folder's files as they were at loading."""

    def __init__(self) -> None:
        self.loaded: list[tuple[str, int, dict[str, bytes]]] = []

    def load_adapter(self, path: str, version: int) -> dict[str, float]:
        self.loaded.append((path, version, read_folder_files(path)))
        return {"sync/load_s": 0.01}


def make_worker(max_loras: int) -> RolloutWorker:
    worker = RolloutWorker("unused", RolloutConfig(), [], EvalConfig(), lora=LoraConfig(rank=8),
                           max_loras=max_loras)
    worker.engine = FakeEngine()  # type: ignore[assignment]
    return worker


def local_fan_out(workers: list[RolloutWorker], version: list[int]):
    """What the learner's Ray fan-out does, in-process: each call on its worker, with the version."""
    def fan_out(calls):
        return [getattr(w, method)(*args, weight_version=version[0]) for w, (method, args) in zip(workers, calls)]
    return fan_out


def test_one_folder_per_version_the_newest_kept_and_sent_by_path_or_as_files(tmp_path):
    workers = [make_worker(max_loras=2), make_worker(max_loras=2), make_worker(max_loras=2)]
    version, saved, puts = [0], [], []

    def put(files):
        puts.append(files)
        return files  # the "reference" is the payload itself, as a local object store

    publisher = AdapterPublisher(save_adapter(saved), lambda: version[0], local_fan_out(workers, version),
                                 [FILE, OBJECT_STORE, OBJECT_STORE], put=put, folders=AdapterFolders(keep=2))
    folders = []
    for v in (1, 2, 3):
        version[0] = v
        stats = publisher.publish()
        folder = saved[-1]
        folders.append(folder)
        assert os.path.basename(folder).startswith(f"selfplay-adapter-{os.getpid()}-v{v}-")
        assert stats["sync/mb"] == sum(map(len, read_folder_files(folder).values())) / 1e6
        assert {"sync/write_s", "sync/load_s", "perf/weight_sync_s", "sync/mb_per_s"} <= set(stats)
        assert len(puts) == v  # one put per publish, whatever the number of remote engines
        assert puts[-1] == read_folder_files(folder)
        for w in workers:
            assert w.weight_version == v
            path, loaded_version, files = w.engine.loaded[-1]  # type: ignore[attr-defined]
            assert loaded_version == v and files == read_folder_files(folder)
        assert workers[0].engine.loaded[-1][0] == folder  # type: ignore[attr-defined]  # same node: the path
        remote_paths = {w.engine.loaded[-1][0] for w in workers[1:]}  # type: ignore[attr-defined]
        assert folder not in remote_paths and len(remote_paths) == 2  # each worker its own folder
    # keep=2: the publisher's folder of version 1 is gone; so is each remote worker's (max_loras 2).
    assert [os.path.isdir(f) for f in folders] == [False, True, True]
    for w in workers[1:]:
        paths = [p for p, _, _ in w.engine.loaded]  # type: ignore[attr-defined]
        assert [os.path.isdir(p) for p in paths] == [False, True, True]
    publisher.folders.clear()
    assert not any(os.path.isdir(f) for f in folders)
    for w in workers[1:]:  # the workers' own copies (a worker process's are swept when it has gone)
        for path in w._adapter_folders:
            shutil.rmtree(path)


def test_a_restarted_worker_gets_the_folder_already_written():
    workers = [make_worker(1), make_worker(1)]
    version, saved = [5], []
    folders = AdapterFolders(keep=1)
    everyone = AdapterPublisher(save_adapter(saved), lambda: version[0], local_fan_out(workers, version),
                                [FILE, FILE], folders=folders)
    everyone.publish()
    restarted = AdapterPublisher(save_adapter(saved), lambda: version[0], local_fan_out(workers[1:], version),
                                 [FILE], folders=folders)
    stats = restarted.publish()
    assert len(saved) == 1 and "sync/write_s" not in stats  # not written again
    assert workers[1].engine.loaded[-1][0] == saved[0]  # type: ignore[attr-defined]
    folders.clear()


def test_a_failed_save_leaves_no_folder_and_nccl_is_refused(tmp_path):
    written = []

    def broken(path: str) -> None:
        written.append(path)
        os.makedirs(path)
        raise OSError("disk full")

    publisher = AdapterPublisher(broken, lambda: 1, lambda calls: [], [FILE])
    with pytest.raises(OSError, match="disk full"):
        publisher.publish()
    assert not os.path.exists(written[0]) and publisher.folders.paths == {}
    with pytest.raises(ValueError, match="not nccl"):
        AdapterPublisher(broken, lambda: 1, lambda calls: [], [NCCL])
    with pytest.raises(ValueError, match="object store"):
        AdapterPublisher(broken, lambda: 1, lambda calls: [], [OBJECT_STORE])


def test_worker_passes_lora_settings_to_its_engine():
    from actors.rollout_worker import engine_settings

    settings = engine_settings(RolloutConfig(), lora=LoraConfig(rank=16), max_loras=3)
    assert (settings.lora_rank, settings.max_loras) == (16, 3)
    assert engine_settings(RolloutConfig()).lora_rank == 0


def test_nccl_with_lora_is_refused_by_config_validation():
    with pytest.raises(ConfigError, match=r"rollout.weight_sync='nccl'.*trainer.lora.rank > 0"):
        load_config("debug", ["trainer.lora.rank=8", "rollout.weight_sync=nccl", "cluster.worker_gpus=1"])
    load_config("debug", ["trainer.lora.rank=8", "rollout.weight_sync=cpu"])


def test_sweep_removes_adapter_folders_of_dead_writers(tmp_path):
    from selfplay.core.weight_format import sweep_stale_weight_files

    dead = tmp_path / "selfplay-adapter-999999999-v3-0123abcd"
    live = tmp_path / f"selfplay-adapter-{os.getpid()}-v4-0123abcd"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "adapter_config.json").write_bytes(CONFIG)
    assert sweep_stale_weight_files(str(tmp_path)) == [str(dead)]
    assert live.is_dir()


def test_publish_merged_sends_full_weights_and_the_engines_serve_no_adapter():
    """``trainer.lora.publish: merged``: the engines run without LoRA (CPU: vLLM's LoRA kernels are
    slow) and get the merged weights; ``adapter`` (the default) serves adapters."""
    assert load_config("debug", ["trainer.lora.rank=8"]).trainer.lora.adapter_sync
    merged = load_config("debug", ["trainer.lora.rank=8", "trainer.lora.publish=merged"]).trainer.lora
    assert merged.rank == 8 and not merged.adapter_sync
    assert not load_config("debug").trainer.lora.adapter_sync  # full fine-tuning
    with pytest.raises(ConfigError, match=r"^trainer.lora.publish='both': expected adapter or merged"):
        load_config("debug", ["trainer.lora.rank=8", "trainer.lora.publish=both"])
