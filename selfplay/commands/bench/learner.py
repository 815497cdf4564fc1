"""How close ``Learner.train_step`` comes to a bare torch training loop on the same data.

Both run in the same process, on the same synthetic batch, in the same dtype, interleaved step
by step so that load from other processes hits both alike. The bare loop is the fastest plain
way to write the step: forward with ``logits_to_keep`` (logits for the response positions only,
as the learner computes them), a policy-gradient loss, backward, AdamW on the model's own
weights. What the learner adds (packing, masks, the PPO-clip loss and its statistics, gradient
clipping, the float32 master weights in bf16) is the overhead measured (both use fused AdamW); the target ratio is
>= 0.9. With LoRA (``selfplay bench learner trainer.lora.rank=16``) both train the same adapter
(the bare loop's AdamW on peft's trainable parameters), so the ratio compares like with like;
LoRA's own speed-up is the learner's tokens/s against a run without the override.

With a rank count (:func:`bench_sharded`, ``selfplay bench learner --ranks N``) it times the
sharded learner (FSDP2) instead: the same global batch on one rank and on N ranks (spawned local
processes, gloo on CPUs, NCCL on GPUs), each rank with the same share of the host's cores, and
reports tokens/s per rank and the speed-up of N ranks over one (ideal: N).

``python -m selfplay.commands.bench.learner [model] [num_samples] [seq_len] [ranks]`` prints the figures as
JSON.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from learners.learner import Learner, resolve_device_dtype
from learners.loss import token_logprobs
from selfplay.core import metric_names as names
from selfplay.core.config_schema import TrainerConfig
from selfplay.core.precision import cpu_capability
from selfplay.core.samples import Sample

__all__ = ["bench_learner", "bench_sharded"]


def _synthetic_samples(vocab: int, num_samples: int, seq_len: int, seed: int) -> list[Sample]:
    """Half prompt, half response; advantages alternate in sign like two roles of a game."""
    g = torch.Generator().manual_seed(seed)
    prompt, resp = seq_len // 2, seq_len - seq_len // 2
    out = []
    for i in range(num_samples):
        ids = torch.randint(0, vocab, (seq_len,), generator=g).tolist()
        out.append(Sample(prompt_ids=ids[:prompt], response_ids=ids[prompt:], logprobs=[-5.0] * resp,
                          loss_mask=[1] * resp, env_id="bench", role=i % 2,
                          ret=1.0 if i % 2 else -1.0, episode_id=str(i // 2),
                          advantage=1.0 if i % 2 else -1.0))
    return out


def _bare_step(model: torch.nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor,
               adv: torch.Tensor, resp: int, rows_per_micro: int) -> None:
    """Forward, backward (accumulated over the same micro-batch rows) and one AdamW step."""
    for start in range(0, ids.shape[0], rows_per_micro):
        x, a = ids[start:start + rows_per_micro], adv[start:start + rows_per_micro]
        logits = model(input_ids=x, use_cache=False, logits_to_keep=resp + 1).logits[:, :-1]
        logp = token_logprobs(logits, x[:, -resp:])
        (-(a[:, None] * logp).sum() / adv.numel() / resp).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def bench_learner(model_path: str, trainer_cfg: TrainerConfig, num_samples: int = 16,
                  seq_len: int = 256, steps: int = 2, seed: int = 0) -> dict[str, float | str]:
    """Time ``steps`` learner steps and ``steps`` bare steps (after one warm-up step of each) on
    ``num_samples`` sequences of ``seq_len`` tokens; returns tokens/s of both and their ratio."""
    from transformers import AutoModelForCausalLM

    learner = Learner(model_path, trainer_cfg, seed=seed)
    device, dtype, _ = resolve_device_dtype(trainer_cfg)
    bare = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
    lora = trainer_cfg.lora
    if lora.rank > 0:  # the same adapter as the learner's, in the compute dtype
        import peft

        bare = peft.get_peft_model(bare, peft.LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules), bias="none"), autocast_adapter_dtype=False).eval()
    opt = torch.optim.AdamW([p for p in bare.parameters() if p.requires_grad], lr=trainer_cfg.lr,
                            betas=tuple(trainer_cfg.betas), weight_decay=trainer_cfg.weight_decay,
                            fused=True)
    samples = _synthetic_samples(bare.config.vocab_size, num_samples, seq_len, seed)
    ids = torch.tensor([s.prompt_ids + s.response_ids for s in samples], device=device)
    adv = torch.tensor([s.advantage for s in samples], device=device)
    resp = len(samples[0].response_ids)
    rows = max(1, trainer_cfg.micro_batch_tokens // seq_len)  # the learner packs the same way

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    learner_s, bare_s = [], []
    for i in range(steps + 1):  # step 0 warms up both (allocator, kernels, optimiser state)
        t_learner = timed(lambda: learner.train_step(samples))
        t_bare = timed(lambda: _bare_step(bare, opt, ids, adv, resp, rows))
        if i > 0:
            learner_s.append(t_learner)
            bare_s.append(t_bare)
    tokens = num_samples * seq_len
    learner_tps = tokens * len(learner_s) / sum(learner_s)
    bare_tps = tokens * len(bare_s) / sum(bare_s)
    return {
        "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "cpu_capability": cpu_capability(), "lora_rank": float(lora.rank),
        "tokens_per_step": float(tokens), "steps": float(steps),
        "learner_step_s": sum(learner_s) / len(learner_s), "bare_step_s": sum(bare_s) / len(bare_s),
        "learner_tokens_per_s": learner_tps, "bare_tokens_per_s": bare_tps,
        "ratio": learner_tps / bare_tps,
    }


def _sharded_rank(rank: int, world_size: int, port: int, model_path: str, trainer_cfg: TrainerConfig,
                  samples: list[Sample], steps: int, out: str) -> None:
    """One rank of :func:`bench_sharded`: a warm-up step, then ``steps`` timed steps; rank 0
    writes the mean step time and the tokens its learner reports a step to ``out``."""
    from learners.sharded import ShardedLearner

    learner = ShardedLearner(model_path, trainer_cfg, rank=rank, world_size=world_size,
                             master_port=port)
    learner.train_step(samples)
    stats = [learner.train_step(samples) for _ in range(steps)]
    if rank == 0:
        Path(out).write_text(json.dumps({"step_s": sum(s[names.LEARNER_STEP_S] for s in stats) / steps,
                                         "tokens": stats[-1][names.LEARNER_TOKENS]}))


def bench_sharded(model_path: str, trainer_cfg: TrainerConfig, ranks: int, num_samples: int = 16,
                  seq_len: int = 256, steps: int = 2, seed: int = 0) -> dict[str, float | str]:
    """The sharded learner's step on one rank and on ``ranks`` ranks, same batch; each rank gets
    ``cores // ranks`` threads in both runs (on a GPU host: one GPU each), so the ideal speed-up
    is ``ranks``. Returns tokens/s in total and per rank for both, and the speed-up."""
    from learners.ranks import spawn_local_ranks

    device, dtype, _ = resolve_device_dtype(trainer_cfg)
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model_path).vocab_size
    samples = _synthetic_samples(vocab, num_samples, seq_len, seed)
    threads = max(1, (os.cpu_count() or 1) // ranks)
    tokens = num_samples * seq_len
    figures: dict[str, float | str] = {
        "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "cpu_capability": cpu_capability(), "ranks": float(ranks),
        "threads_per_rank": float(threads), "tokens_per_step": float(tokens), "steps": float(steps)}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted({1, ranks}):
            out = os.path.join(tmp, f"ranks-{n}.json")
            spawn_local_ranks(_sharded_rank, n, model_path, trainer_cfg, samples, steps, out,
                              threads_per_rank=threads)
            rank0 = json.loads(Path(out).read_text())
            step_s = rank0["step_s"]
            figures[f"step_s_{n}_ranks"] = step_s
            figures[f"learner_tokens_{n}_ranks"] = rank0["tokens"]  # as the learner counts them
            figures[f"tokens_per_s_{n}_ranks"] = tokens / step_s
            figures[f"tokens_per_s_per_rank_{n}_ranks"] = tokens / step_s / n
    figures["speedup"] = figures[f"tokens_per_s_{ranks}_ranks"] / figures["tokens_per_s_1_ranks"]
    figures["scaling_efficiency"] = figures["speedup"] / ranks
    return figures


if __name__ == "__main__":
    from selfplay.model_cache import resolve_model

    args = sys.argv[1:]
    model = resolve_model(args[0] if args else "smollm2-135m-instruct")
    n, length = (int(args[1]), int(args[2])) if len(args) > 2 else (16, 256)
    if len(args) > 3:
        print(json.dumps(bench_sharded(model, TrainerConfig(), int(args[3]), num_samples=n,
                                       seq_len=length), indent=1))
    else:
        print(json.dumps(bench_learner(model, TrainerConfig(), num_samples=n, seq_len=length), indent=1))
