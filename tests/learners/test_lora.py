"""LoRA in the learner (``trainer.lora.rank`` > 0) on the tiny model: only the adapter trains, the
adapter folder is peft's, the full weights are the merged ones, checkpoints resume exactly,
``selfplay model merge`` does the arithmetic, the sharded learner and the memory plan know it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from learner_helpers import fp32_trainer, random_samples
from safetensors.torch import load_file

from learners.checkpoint import load_checkpoint, save_checkpoint
from learners.learner import ADAPTER_DIR, Learner
from selfplay.core.config_schema import LoraConfig, TrainerConfig
from selfplay.core.samples import Sample

RANK, ALPHA = 4, 8.0
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_trainer(**overrides) -> TrainerConfig:
    """A float32 CPU trainer with LoRA; lr large enough that one step moves the adapter."""
    return fp32_trainer(**{"lora": LoraConfig(rank=RANK, alpha=ALPHA), "lr": 1e-2, **overrides})


def hf_logprobs(model: torch.nn.Module, samples: list[Sample]) -> list[torch.Tensor]:
    """Each sample's response-token log-probs from a plain forward of ``model``."""
    out = []
    with torch.no_grad():
        for s in samples:
            ids = torch.tensor([s.prompt_ids + s.response_ids])
            logits = model(input_ids=ids).logits[0, len(s.prompt_ids) - 1:-1].float()
            out.append(logits.log_softmax(-1).gather(1, torch.tensor(s.response_ids)[:, None])[:, 0])
    return out


def frozen(learner: Learner) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in learner.model.named_parameters() if not p.requires_grad}


def adapter(learner: Learner) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in learner.model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def trained(tiny_path) -> Learner:
    """A LoRA learner after one step: its B matrices are no longer zero."""
    learner = Learner(tiny_path, lora_trainer())
    learner.train_step(random_samples(6, seed=1))
    return learner


def test_a_fresh_adapter_is_the_base(tiny_path):
    samples = random_samples(3, seed=2)
    lora, full = Learner(tiny_path, lora_trainer()), Learner(tiny_path, fp32_trainer())
    assert lora.lora is not None and full.lora is None
    assert all(p.abs().sum() == 0 for n, p in adapter(lora).items() if "lora_B" in n)  # peft's init
    assert lora.logprobs(samples) == full.logprobs(samples)
    merged, base = dict(lora.named_weights()), dict(full.named_weights())
    assert merged.keys() == base.keys()
    assert all(torch.equal(merged[n], base[n]) for n in base)


def test_only_the_adapter_trains(tiny_path):
    import peft

    learner = Learner(tiny_path, lora_trainer())
    trainable, _ = learner.model.get_nb_trainable_parameters()
    assert learner.flat.master.numel() == trainable  # the optimiser sees the adapter alone
    base, before = frozen(learner), adapter(learner)
    learner.train_step(random_samples(6, seed=1))
    after = adapter(learner)
    # With B = 0, A's gradient is zero: the first step moves every B and no A.
    assert all(torch.equal(after[n], before[n]) != ("lora_B" in n) for n in before)
    learner.train_step(random_samples(6, seed=2))
    after = adapter(learner)
    assert all(not torch.equal(after[n], before[n]) for n in before)
    assert all(torch.equal(p, base[n]) for n, p in frozen(learner).items())  # bit-identical
    assert isinstance(learner.model, peft.PeftModel) and not learner.model.training  # eval: no dropout


def test_the_adapter_folder_loads_in_peft_with_the_learners_logprobs_and_merge(trained, tiny_path, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trained.save_adapter(tmp_path / "a")
    assert {p.name for p in (tmp_path / "a").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(Path(tiny_path).resolve())
    assert (config["r"], config["lora_alpha"]) == (RANK, ALPHA)
    base = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(tmp_path / "a")).eval()
    samples = random_samples(3, seed=3)
    for mine, theirs in zip(trained.logprobs(samples), hf_logprobs(model, samples)):
        torch.testing.assert_close(torch.tensor(mine), theirs, rtol=1e-5, atol=1e-5)
    # named_weights is peft's own merge, under the base's names, the training model untouched.
    merged = model.merge_and_unload().state_dict()
    ours = dict(trained.named_weights())
    assert set(ours) <= set(merged) and "model.layers.0.self_attn.q_proj.weight" in ours
    for name, tensor in ours.items():
        torch.testing.assert_close(tensor, merged[name], rtol=0, atol=1e-6)
    assert not any("base_layer" in n or "lora_" in n for n in ours)


def test_kl_reference_is_the_base_with_the_adapter_disabled(trained, tiny_path):
    samples = random_samples(2, seed=4)
    full = Learner(tiny_path, fp32_trainer())
    kl = Learner(tiny_path, lora_trainer(kl_coef=0.1))
    assert kl.ref_model is None  # no second copy
    kl.flat.flat.copy_(trained.flat.flat)  # the trained adapter
    mb = kl._collate(samples, every_token=True)
    with torch.no_grad():
        reference = kl._reference(mb)
        policy = kl._logprobs(kl.model, mb, with_entropy=False)[0]
    torch.testing.assert_close(reference, torch.cat([torch.tensor(x) for x in full.logprobs(samples)]))
    assert not torch.allclose(reference, policy)
    stats = kl.train_step(samples)
    assert stats["learner/kl"] > 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_checkpoint_resumes_bit_identically(tiny_path, tmp_path, dtype):
    first, second = random_samples(4, seed=5), random_samples(4, seed=6)
    cfg = lora_trainer(dtype=dtype, lr=1e-3)
    straight = Learner(tiny_path, cfg)
    straight.train_step(first)
    folder = save_checkpoint(tmp_path, 1, straight, {})
    assert (folder / ADAPTER_DIR / "adapter_model.safetensors").is_file()
    expected = straight.train_step(second)

    resumed = Learner(tiny_path, cfg, seed=1)  # another seed: another initial adapter A
    load_checkpoint(folder, resumed, restore_rng=False)
    assert resumed.step == 1
    got = resumed.train_step(second)
    assert got["learner/loss/total"] == expected["learner/loss/total"]
    assert torch.equal(resumed.flat.master, straight.flat.master)
    assert torch.equal(resumed.flat.flat, straight.flat.flat)
    # The checkpoint folder is also the merged model as a Hugging Face folder (eval --model).
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=straight.dtype).state_dict()
    base = dict(Learner(tiny_path, cfg).named_weights())  # a fresh adapter: the base
    assert saved.keys() >= base.keys()
    assert not all(torch.equal(saved[n], t) for n, t in base.items())  # merged: it moved


def test_a_checkpoint_of_the_other_mode_is_refused(trained, tiny_path, tmp_path):
    trained.save(tmp_path / "lora")
    with pytest.raises(ValueError, match="with LoRA, but trainer.lora.rank=0"):
        Learner(tiny_path, fp32_trainer()).load(tmp_path / "lora")


def test_model_merge_is_base_plus_scaled_b_times_a(trained, tiny_path, tmp_path):
    from selfplay.commands.cli import main

    folder = tmp_path / "ckpt"
    trained.save(folder)
    out = tmp_path / "merged"
    assert main(["model", "merge", str(folder), "--out", str(out)]) == 0
    merged = load_file(out / "model.safetensors")
    base = load_file(Path(tiny_path) / "model.safetensors")
    ab = load_file(folder / ADAPTER_DIR / "adapter_model.safetensors")
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    adapted = 0
    for name, w in base.items():
        prefix = "base_model.model." + name.removesuffix(".weight")
        if f"{prefix}.lora_A.weight" in ab:
            a, b = ab[f"{prefix}.lora_A.weight"].double(), ab[f"{prefix}.lora_B.weight"].double()
            expected = (w.double() + ALPHA / RANK * b @ a).to(w.dtype)  # stored as the base: bf16
            # Within one bf16 step (2^-7 relative at most): the merge sums in float32, whose
            # rounding (its matmul's order differs between AVX2 and AVX-512 kernels) may land on
            # the neighbour of this float64 value.
            torch.testing.assert_close(merged[name], expected, rtol=2**-7, atol=0)
            assert not torch.equal(merged[name], w)
            adapted += 1
        else:
            assert torch.equal(merged[name], w), name
    assert adapted == 2 * len(TARGETS)  # every target module of both layers
    # An adapter folder alone merges the same.
    trained.save_adapter(tmp_path / "a")
    assert main(["model", "merge", str(tmp_path / "a"), "--out", str(tmp_path / "m2")]) == 0
    assert all(torch.equal(t, merged[n]) for n, t in load_file(tmp_path / "m2" / "model.safetensors").items())
    assert main(["model", "merge", str(tmp_path), "--out", str(tmp_path / "m3")]) == 2  # no adapter


def test_the_sharded_learner_refuses_lora(tiny_path):
    from learners.sharded import ShardedLearner
    from selfplay.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"^trainer\.lora\.rank=8: .*cluster\.learner_ranks"):
        load_config("debug", ["cluster.learner_ranks=2", "trainer.lora.rank=8"])
    load_config("debug", ["trainer.lora.rank=8"])  # one rank: fine
    with pytest.raises(ValueError, match="trainer.lora.rank=8"):
        ShardedLearner(tiny_path, TrainerConfig(lora=LoraConfig(rank=8)), rank=0, world_size=2)


def test_the_memory_plan_counts_the_parameters_peft_trains(tiny_path):
    import peft
    from transformers import AutoModelForCausalLM

    from learners.memory_plan import load_architecture

    for rank, targets in ((RANK, TARGETS), (16, ["q_proj", "v_proj"])):
        model = AutoModelForCausalLM.from_pretrained(tiny_path)
        wrapped = peft.get_peft_model(model, peft.LoraConfig(r=rank, target_modules=targets))
        assert load_architecture(tiny_path).lora_params(rank, targets) == wrapped.get_nb_trainable_parameters()[0]


def test_gradient_checkpointing_trains_the_same_adapter(tiny_path):
    samples = random_samples(4, seed=7)
    plain = Learner(tiny_path, lora_trainer())
    checkpointed = Learner(tiny_path, lora_trainer(gradient_checkpointing=True))
    assert checkpointed.model.training  # transformers checkpoints in train mode only
    for _ in range(2):  # the second step has gradients through A too
        a, b = plain.train_step(samples), checkpointed.train_step(samples)
        assert a["learner/loss/total"] == pytest.approx(b["learner/loss/total"], rel=1e-5)
    torch.testing.assert_close(plain.flat.master, checkpointed.flat.master, rtol=1e-5, atol=1e-7)


def test_the_learner_bench_takes_the_lora_override(tiny_path):
    from selfplay.commands.bench.learner import bench_learner

    figures = bench_learner(tiny_path, lora_trainer(), num_samples=2, seq_len=16, steps=1)
    assert figures["lora_rank"] == RANK and figures["learner_tokens_per_s"] > 0 and figures["ratio"] > 0
