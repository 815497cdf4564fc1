"""How long a weight update into a running vLLM engine takes, against the floor and the naive way.

``python -m selfplay.commands.bench.sync [model]`` starts one engine on the model (a built-in name or a
folder; default the built-in SmolLM2-135M), then times three ways to load its full state dict:

* ``fast``: :meth:`actors.vllm_engine.VLLMEngine.update_weights`, the path training uses (tensors
  written once into ``/dev/shm``, the worker reloads from a memory map; only a path crosses);
* ``floor``: ``reload_weights`` inside the worker from tensors already in its memory: what any
  transport adds is the difference to this;
* ``naive``: the whole state dict serialised to bytes and sent through ``collective_rpc``.

With ``--adapter-rank r`` (LoRA, ``trainer.lora.rank``) the same engine is built with LoRA and
also times the adapter-only publish training uses then (:class:`learners.weight_publisher
.AdapterPublisher`): a rank-r adapter on every projection written once as a PEFT folder in
``/dev/shm`` and loaded by the engine as a new adapter version; ``bench/adapter_speedup`` is the
full publish's time over the adapter's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import torch

from actors.engine import EngineSettings
from actors.weight_receiver import WeightSyncExtension
from selfplay.core import metric_names as names
from selfplay.core.metric_names import bench_metric as B
from selfplay.core.precision import cpu_capability, torch_dtype
from selfplay.core.weight_format import iter_safetensors


class BenchSyncExtension(WeightSyncExtension):
    """The worker extension plus what only this benchmark needs: the floor and the naive path."""

    def selfplay_stash(self, path: str) -> int:
        """Copy a file's tensors into this worker's memory (set-up of the floor)."""
        self._selfplay_stash = [(n, t.clone()) for n, t in iter_safetensors(path)]
        return len(self._selfplay_stash)

    def selfplay_reload_stash(self) -> float:
        """Reload from tensors already in this process: the floor of any transport."""
        return self._selfplay_reload(iter(self._selfplay_stash))

    def selfplay_reload_from_bytes(self, data: bytes) -> float:
        """The naive path: a whole serialised state dict through the RPC."""
        from safetensors.torch import load

        return self._selfplay_reload(iter(load(data).items()))


def _state_dict(model_path: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's full state dict as a learner would hold it (fresh tensors, engine dtype)."""
    files = sorted(f for f in os.listdir(model_path) if f.endswith(".safetensors"))
    return {name: tensor.to(dtype).clone() for f in files
            for name, tensor in iter_safetensors(os.path.join(model_path, f))}


def _naive(engine: Any, state: dict[str, torch.Tensor]) -> tuple[float, float]:
    from safetensors.torch import save

    start = time.perf_counter()
    worker_s = engine.rpc("selfplay_reload_from_bytes", save(state))[0]
    return time.perf_counter() - start, worker_s


def _adapter_publishes(engine: Any, model_path: str, rank: int, repeats: int) -> list[dict[str, float]]:
    """Publish a rank-``rank`` LoRA adapter of the model ``repeats`` times (a new version each
    time) through the training path, the engine on this node: the publisher's figures per run."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from learners.weight_publisher import FILE, AdapterFolders, AdapterPublisher
    from selfplay.core.config_schema import LoraConfig

    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype(engine.dtype))
    model = get_peft_model(base, PeftLoraConfig(r=rank, lora_alpha=2 * rank,
                                                target_modules=LoraConfig().target_modules))
    with torch.no_grad():  # peft starts B at 0; a trained adapter's B is not, nor are its bytes
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=1e-3)
    version = [0]
    publisher = AdapterPublisher(model.save_pretrained, lambda: version[0],
                                 lambda calls: [engine.load_adapter(args[0], version[0]) for _, args in calls],
                                 [FILE], folders=AdapterFolders(keep=2))
    runs = []
    try:
        for v in range(1, repeats + 1):
            version[0] = v
            runs.append(publisher.publish())
    finally:
        publisher.folders.clear()
    return runs


def bench_sync(model_path: str, repeats: int = 3, dtype: str = "auto", kv_cache_gib: float = 1,
               naive: bool = True, adapter_rank: int = 0) -> dict[str, Any]:
    """Time weight updates of the model's own full state dict into a running engine; returns the
    medians in seconds and MB/s (keys ``bench/<way>_s``, ``bench/<way>_mb_per_s``, ``bench/mb``).
    ``adapter_rank`` > 0: the engine serves LoRA adapters, and adapter publishes of that rank are
    timed on it too (``bench/adapter_*``)."""
    from actors.vllm_engine import VLLMEngine
    from selfplay.core.weight_format import shm_path, write_safetensors

    settings = EngineSettings(dtype=dtype, kv_cache_gib=kv_cache_gib, max_model_len=512,
                              weight_sync="cpu", worker_extension=f"{__name__}.BenchSyncExtension",
                              lora_rank=adapter_rank, max_loras=2)
    engine = asyncio.run(VLLMEngine(model_path, settings).init())
    try:
        state = _state_dict(model_path, torch_dtype(engine.dtype))
        fast = [engine.update_weights(state.items()) for _ in range(repeats)]
        path = shm_path("selfplay-bench")
        try:
            write_safetensors(path, state.items())
            engine.rpc("selfplay_stash", path)
        finally:
            os.unlink(path)
        floor = [engine.rpc("selfplay_reload_stash")[0] for _ in range(repeats)]
        naive_runs = [_naive(engine, state) for _ in range(repeats if naive else 0)]
        adapter_runs = _adapter_publishes(engine, model_path, adapter_rank, repeats) if adapter_rank else []
    finally:
        engine.shutdown()
    mb = fast[0][names.SYNC_MB]
    out: dict[str, Any] = {B("mb"): mb, B("repeats"): float(repeats), "dtype": engine.dtype,
                           "cpu_capability": cpu_capability()}
    # The parts of one run (the run whose total is the median), not a median per part: medians
    # taken part by part need not add up to the median total.
    median_run = sorted(fast, key=lambda f: f[names.SYNC_TOTAL_S])[(len(fast) - 1) // 2]
    for key in (names.SYNC_TOTAL_S, names.SYNC_SERIALIZE_S, names.SYNC_LOAD_S, names.SYNC_WORKER_RELOAD_S):
        out[B("fast_" + names.sync_stat(key))] = median_run[key]
    out[B("floor_s")] = statistics.median(floor)
    if naive_runs:
        out[B("naive_s")] = statistics.median(t for t, _ in naive_runs)
        out[B("naive_worker_reload_s")] = statistics.median(w for _, w in naive_runs)
    for way in ("fast_total", "floor", "naive"):
        if B(f"{way}_s") in out:
            out[B(f"{way}_mb_per_s")] = mb / out[B(f"{way}_s")]
    if adapter_runs:
        run = sorted(adapter_runs, key=lambda f: f[names.WEIGHT_SYNC_S])[(len(adapter_runs) - 1) // 2]
        out.update({B("adapter_rank"): float(adapter_rank), B("adapter_mb"): run[names.SYNC_MB],
                    B("adapter_total_s"): run[names.WEIGHT_SYNC_S], B("adapter_write_s"): run[names.SYNC_WRITE_S],
                    B("adapter_load_s"): run[names.SYNC_LOAD_S],
                    B("adapter_speedup"): out[B("fast_total_s")] / run[names.WEIGHT_SYNC_S]})
    return out


def main() -> None:
    from selfplay.model_cache import DEFAULT_MODEL, resolve_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="built-in name or folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--no-naive", action="store_true", help="skip the slow naive path")
    parser.add_argument("--adapter-rank", type=int, default=0,
                        help="also time LoRA adapter-only publishes of this rank on the same engine")
    args = parser.parse_args()
    report(bench_sync(resolve_model(args.model), args.repeats, args.dtype, naive=not args.no_naive,
                      adapter_rank=args.adapter_rank))


def report(figures: dict[str, Any]) -> None:
    """Print the figures of :func:`bench_sync` for a person."""
    f = {key.removeprefix(B("")): value for key, value in figures.items()}
    mb, repeats = f["mb"], int(f["repeats"])
    print(f"weight sync of {mb:.0f} MB ({f['dtype']}, CPU {f['cpu_capability']}), median of {repeats}:")
    print(f"  fast   {f['fast_total_s']:6.2f} s  {f['fast_total_mb_per_s']:7.0f} MB/s"
          f"  (write {f['fast_serialize_s']:.2f} s, load {f['fast_load_s']:.2f} s,"
          f" of which reload in worker {f['fast_worker_reload_s']:.2f} s)")
    print(f"  floor  {f['floor_s']:6.2f} s  {f['floor_mb_per_s']:7.0f} MB/s"
          "  (reload_weights from tensors already in the worker)")
    if "naive_s" in f:
        print(f"  naive  {f['naive_s']:6.2f} s  {f['naive_mb_per_s']:7.0f} MB/s"
              "  (state dict serialised through collective_rpc)")
    if "adapter_total_s" in f:
        print(f"  LoRA adapter only (rank {f['adapter_rank']:.0f}, {f['adapter_mb']:.1f} MB): "
              f"{f['adapter_total_s']:.2f} s (write {f['adapter_write_s']:.2f} s, load "
              f"{f['adapter_load_s']:.2f} s), {f['adapter_speedup']:.1f}x faster than full weights")


if __name__ == "__main__":
    main()
