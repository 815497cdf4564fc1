"""The sharded learner's step on one GPU, against a bare torch loop on the same card.

Plain torch and transformers only (no Ray, vLLM or gymnasium is imported): a model of
Qwen2.5-0.5B's shape (the shipped ``config.json``, random weights) is trained by
:class:`learners.sharded.ShardedLearner` at world size 1 (FSDP2 over one rank: NCCL group of
one, bf16 compute, float32 master weights and AdamW state), then by a bare loop (the same model
in float32 under bf16 autocast, fused AdamW, the same batch and micro-batches, a plain
policy-gradient loss on the response tokens). Prints one JSON object: tokens/s of both, their
ratio, model-FLOPs utilisation (6 x parameters x tokens / time / the card's dense bf16 peak;
attention FLOPs not counted), peak memory against the memory plan, and a check that the step
moved the weights.

    python cluster/gpu_check_fsdp.py [samples] [seq_len] [micro_batch_tokens] [steps] [shape] [--cpu]

Defaults: 32 samples of 1,024 tokens (half prompt, half response), 8,192-token micro-batches,
3 timed steps after one warm-up step, Qwen2.5-0.5B's shape (``shape``: another folder holding a
``config.json``). Without CUDA, or with ``--cpu``, it runs on the CPU (gloo instead of NCCL): a
smoke run of the whole path, which the test suite makes on the tiny model's shape
(``2 16 32 1 <tiny folder> --cpu``) so that a broken script shows in CI, not on GPU time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's modules by path

from learners.loss import token_logprobs  # noqa: E402
from learners.memory_plan import load_architecture, plan_memory  # noqa: E402
from learners.ranks import leave_rank_group  # noqa: E402
from learners.sharded import ShardedLearner  # noqa: E402
from selfplay.core.config_schema import TrainerConfig  # noqa: E402
from selfplay.core.samples import Sample  # noqa: E402
from learners.ranks import free_port  # noqa: E402

SHAPE = ROOT / "learners" / "model_configs" / "Qwen2.5-0.5B"
#: Dense bf16 tensor-core peak per GPU (vendor datasheets), matched by name; else MFU is omitted.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12,
                   "L40S": 362e12, "L4": 121e12, "A10G": 70e12}


def _peak_flops(name: str) -> float | None:
    for key, flops in PEAK_BF16_FLOPS.items():  # longer keys first where they overlap
        if key in name:
            return flops
    return None


def _samples(vocab: int, n: int, seq_len: int) -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    prompt, resp = seq_len // 2, seq_len - seq_len // 2
    out = []
    for i in range(n):
        ids = torch.randint(0, vocab, (seq_len,), generator=g).tolist()
        out.append(Sample(prompt_ids=ids[:prompt], response_ids=ids[prompt:],
                          logprobs=[-12.0] * resp, loss_mask=[1] * resp, env_id="check",
                          role=i % 2, ret=1.0, episode_id=str(i),
                          advantage=1.0 if i % 2 else -1.0))
    return out


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, steps: int) -> float:
    """Mean seconds of ``steps`` calls after one warm-up call."""
    fn()
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync()
    return (time.perf_counter() - start) / steps


def _peak_memory_gib(reset: bool = False) -> float:
    if not torch.cuda.is_available():
        return 0.0
    value = torch.cuda.max_memory_allocated() / 2**30
    if reset:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return value


def _bare_loop(folder: Path, samples: list[Sample], rows_per_micro: int, steps: int,
               device: str) -> float:
    """Seconds per step of the plainest training loop with the same precision semantics."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    ids = torch.tensor([s.prompt_ids + s.response_ids for s in samples], device=device)
    adv = torch.tensor([s.advantage for s in samples], device=device)
    resp = len(samples[0].response_ids)

    def step() -> None:
        for start in range(0, ids.shape[0], rows_per_micro):
            x, a = ids[start:start + rows_per_micro], adv[start:start + rows_per_micro]
            with torch.autocast(device, dtype=torch.bfloat16):
                logits = model(input_ids=x, use_cache=False, logits_to_keep=resp + 1).logits[:, :-1]
            (-(a[:, None] * token_logprobs(logits, x[:, -resp:])).sum() / adv.numel() / resp).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds = _timed(step, steps)
    del model, opt
    return seconds


def main(n: int = 32, seq_len: int = 1024, micro_batch_tokens: int = 8192, steps: int = 3,
         shape: str = str(SHAPE), cpu: bool = False) -> dict:
    from transformers import AutoConfig, AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() and not cpu else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    out: dict[str, float | str] = {"device": name, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        config = AutoConfig.from_pretrained(shape)
        AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
        samples = _samples(config.vocab_size, n, seq_len)
        tokens = n * seq_len
        trainer = TrainerConfig(device=device, dtype="bfloat16", lr=1e-6,
                                micro_batch_tokens=micro_batch_tokens)
        learner = ShardedLearner(str(folder), trainer, rank=0, world_size=1,
                                 master_port=free_port())
        params = sum(p.numel() for p in learner.model.parameters())
        before = {k: v for k, v in learner.named_weights() if k.endswith("layers.0.mlp.up_proj.weight")}
        _peak_memory_gib(reset=True)
        sharded_s = _timed(lambda: learner.train_step(samples), steps)
        out["sharded_peak_gib"] = _peak_memory_gib()
        after = {k: v for k, v in learner.named_weights() if k in before}
        out["weights_moved"] = float(max((after[k].float() - v.float()).abs().max() for k, v in before.items()))
        device_gib = (torch.cuda.get_device_properties(0).total_memory / 2**30
                      if device == "cuda" else 0.0)
        # An upper bound here: it counts every token of a micro-batch as a loss token (half are).
        plan = plan_memory(load_architecture(shape), 1, micro_batch_tokens, False, device_gib)
        out["memory_plan_gib"] = plan.total_bytes / 2**30
        print(plan.table(), file=sys.stderr)
        del learner
        leave_rank_group()
        _peak_memory_gib(reset=True)
        bare_s = _bare_loop(folder, samples, max(1, micro_batch_tokens // seq_len), steps, device)
        out["bare_peak_gib"] = _peak_memory_gib()
    peak = _peak_flops(name)
    out.update({"parameters": float(params), "tokens_per_step": float(tokens),
                "sharded_step_s": sharded_s, "bare_step_s": bare_s,
                "sharded_tokens_per_s": tokens / sharded_s, "bare_tokens_per_s": tokens / bare_s,
                "sharded_vs_bare": bare_s / sharded_s})
    if peak is not None:
        out["peak_bf16_tflops"] = peak / 1e12
        out["sharded_mfu"] = 6 * params * tokens / sharded_s / peak
        out["bare_mfu"] = 6 * params * tokens / bare_s / peak
    return out


def run(argv: list[str] | None = None) -> dict:
    """The command line (``argv``; None: the process's) parsed and checked; returns the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in (("samples", 32), ("seq_len", 1024), ("micro_batch_tokens", 8192), ("steps", 3)):
        parser.add_argument(name, type=int, nargs="?", default=default)
    parser.add_argument("shape", nargs="?", default=str(SHAPE), help="a folder holding a config.json")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is visible")
    a = parser.parse_args(argv)
    return main(a.samples, a.seq_len, a.micro_batch_tokens, a.steps, a.shape, a.cpu)


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
